"""Restoring a trained task (its config, networks and state) for synthesis.

A synthesis method needs the task object (for the network structure) and its state (weights,
mask bank). Two layouts are accepted, tried in order:

  <dir>/export/{config.json, state/}   written by `export_task` (orbax + the config as JSON):
                                        self-contained, what tests and the demo write;
  <dir> a training workdir              restored with the platform's checkpoint module
                                        (`fabgen.platform.checkpoint.restore_latest`).

A directory of the wrong kind (another task, no checkpoint) is a `SynthesisError` naming it.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import numpy as np
import ml_collections
import orbax.checkpoint as ocp

from fabgen.platform import registry
from fabgen.synthesis.base import SynthesisError


def export_task(directory: str, config: ml_collections.ConfigDict, state) -> str:
  """Writes `<directory>/export/` with the config (JSON) and the state (orbax); returns it."""
  out = os.path.abspath(os.path.join(directory, "export"))
  os.makedirs(out, exist_ok=True)
  tmp = os.path.join(out, ".config.json.tmp")
  with open(tmp, "w") as f:
    f.write(config.to_json())
  os.replace(tmp, os.path.join(out, "config.json"))
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(os.path.join(out, "state"), jax.device_get(state), force=True)
  ckpt.wait_until_finished()
  return out


def _load_config(path: str) -> ml_collections.ConfigDict:
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, json.JSONDecodeError) as e:
    raise SynthesisError(f"cannot read {path}: {e}") from e


def restore_task(directory: str, expect: str):
  """(task, state) of the `expect` task trained in `directory`."""
  if not os.path.isdir(directory):
    raise SynthesisError(f"checkpoint {directory!r} is not a directory")
  export = os.path.join(directory, "export")
  if os.path.exists(os.path.join(export, "config.json")):
    config = _load_config(os.path.join(export, "config.json"))
    _check_kind(directory, config, expect)
    task = registry.get_task_class(expect)(config)
    # No target: the arrays come back as saved (synthesis reads weights and banks, never the
    # optimizer state), so restoring needs no training data to rebuild shapes.
    state = ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(export), "state"))
    _warn_if_newer_checkpoints(directory, state)
    return task, state
  try:
    from fabgen.platform import checkpoint as platform_ckpt  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SynthesisError(f"checkpoint {directory!r} has no export/ and the platform checkpoint "
                         f"module is not available to restore a workdir") from None
  try:
    config, task, state = platform_ckpt.restore_latest(directory)
  except Exception as e:
    raise SynthesisError(f"cannot restore a trained model from {directory!r}: {e}") from e
  _check_kind(directory, config, expect)
  return task, state


def _warn_if_newer_checkpoints(directory: str, state) -> None:
  """Says so when `export/` is older than the workdir's newest checkpoint (never silently)."""
  ckpt_dir = os.path.join(directory, "checkpoints")
  steps = [int(n) for n in os.listdir(ckpt_dir) if n.isdigit()] if os.path.isdir(ckpt_dir) else []
  exported = int(np.asarray(state.get("step", -1))) if isinstance(state, dict) else -1
  if steps and max(steps) > exported:
    logging.warning("%s: restoring export/ (step %d) although checkpoints/ holds step %d; "
                    "re-export to use the newer weights", directory, exported, max(steps))


def _check_kind(directory, config, expect):
  kind = config.get("task")
  if kind != expect:
    raise SynthesisError(f"checkpoint {directory!r} holds a {kind!r} model, but this method "
                         f"needs a {expect!r} one")
