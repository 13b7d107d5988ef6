"""Where the stage-1 conditioner's trained texture filters come from: a texture workdir, or a
texture config trained once into the fabgen cache.

A spec is either
  * a path: a `fabgen train --config configs/texture.py...` workdir (its newest checkpoint), or
  * `train:<config file>:<arg>` (e.g. `train:configs/texture.py:tiny`): that config's checkpoint
    in `$FABGEN_CACHE/texture/<name>-<hash of the config>/` (default cache ~/.cache/fabgen),
    trained there through the platform the first time it is asked for. The hash covers the
    whole config, so a changed texture config trains a new network instead of reusing a stale
    one; training writes to a temporary folder renamed into place, so concurrent runs cannot
    read half a checkpoint (the slower one's result is discarded).

`load_vgg(spec)` returns the `fabgen.nn.vgg` params dict (`{conv: {kernel, bias}}`), the running
mean/variance of its Gram features on the training fabrics, and the texture config, which the
conditioner checks against its own taps, width and Gram pooling.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile

import jax
import ml_collections
import numpy as np

from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import trainer

TRAIN_PREFIX = "train:"
# Part of the cache key: bump when `TextureTask`'s state layout changes, so an old cached
# checkpoint is retrained instead of failing to restore.
STATE_FORMAT = 2


def cache_root() -> str:
  return os.environ.get("FABGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                        "fabgen")


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _texture_config(config_spec: str) -> ml_collections.ConfigDict:
  """The config of `path.py:arg`, the path relative to the working directory or else to the
  fabgen checkout (a stage-1 checkpoint names it and may be restored from anywhere)."""
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  path, sep, arg = config_spec.partition(":")
  if not os.path.isabs(path) and not os.path.exists(path):
    candidate = os.path.join(REPO_ROOT, path)
    if os.path.exists(candidate):
      config_spec = candidate + sep + arg
  config = config_lib.get(config_spec)
  if config.task != "texture":
    raise ValueError(f"texture features {TRAIN_PREFIX}{config_spec}: that config trains a "
                     f"{config.task!r} task, not 'texture'")
  return config


def cached_workdir(config_spec: str) -> str:
  """The cache folder of `config_spec`'s trained network (trained now if it is missing)."""
  config = _texture_config(config_spec)
  key = f"{STATE_FORMAT}:{config.to_json(sort_keys=True)}"
  digest = hashlib.sha256(key.encode()).hexdigest()[:12]
  name = os.path.basename(config_spec.split(":")[0]).removesuffix(".py")
  variant = config_spec.split(":", 1)[1].replace(",", "_").replace("=", "-") if ":" in \
      config_spec else "default"
  workdir = os.path.join(cache_root(), "texture", f"{name}-{variant}-{digest}")
  if not _has_checkpoint(workdir):
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".train-", dir=os.path.dirname(workdir))
    logging.info("texture features: training %s into %s (once; cached)", config_spec, workdir)
    result = _train(config, tmp)
    logging.info("texture features: %s trained: %s", config_spec, result)
    try:
      os.rename(tmp, workdir)
    except OSError:  # another process finished first: use its network
      shutil.rmtree(tmp, ignore_errors=True)
  return workdir


def _train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  return trainer.train(config, workdir, devices=jax.local_devices()[:1])


def _has_checkpoint(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(n.isdigit() for n in os.listdir(directory))


def resolve(spec: str) -> str:
  """The texture workdir a spec names (training it into the cache for `train:` specs)."""
  if spec.startswith(TRAIN_PREFIX):
    return cached_workdir(spec[len(TRAIN_PREFIX):])
  if not os.path.isdir(spec):
    raise FileNotFoundError(f"texture features checkpoint {spec!r} is not a directory (a "
                            f"`fabgen train --config configs/texture.py` workdir or "
                            f"'{TRAIN_PREFIX}configs/texture.py:<variant>')")
  return spec


def load_vgg(spec: str) -> tuple[dict, dict, ml_collections.ConfigDict, str]:
  """(vgg params, feature stats {mean, var}, texture config, workdir), numpy, of `spec`."""
  workdir = resolve(spec)
  try:
    config, _, state = checkpoint_lib.restore(workdir)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"texture features checkpoint {spec!r}: {e}") from None
  if config.task != "texture":
    raise ValueError(f"texture features checkpoint {workdir!r} holds a {config.task!r} model, "
                     f"not a 'texture' one")
  params = jax.tree.map(np.asarray, jax.device_get(state["params"]["vgg"]))
  stats = jax.tree.map(np.asarray, jax.device_get(state["feature_stats"]))
  return params, stats, config, workdir
