"""The exported artifact gives the training code's outputs, loads without it, and fails clearly."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fabgen.detector import export


class TinyHead(nnx.Module):
  """A small conv net with the detector's output names (not the detector: the generic path)."""

  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 4, (3, 3), strides=(2, 2), rngs=rngs)
    self.box = nnx.Linear(4, 4, rngs=rngs)

  def __call__(self, images):
    x = self.conv(images.astype(jnp.float32) / 255.0)
    seg = jax.nn.softmax(jax.image.resize(x[..., :3], images.shape[:3] + (3,), "bilinear"), -1)
    pooled = x.reshape(x.shape[0], -1, 4)[:, :5]
    logits = self.box(pooled)
    return {"boxes": jax.nn.sigmoid(logits) * images.shape[1], "scores": jax.nn.sigmoid(logits[..., 0]),
            "labels": jnp.argmax(logits, -1).astype(jnp.int32), "seg_probs": seg}


def test_exported_matches_and_batch_is_symbolic(tmp_path):
  model = TinyHead(nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  fn = lambda images: nnx.merge(graphdef, params)(images)
  out_dir = str(tmp_path / "exp")
  export.export_function(fn, out_dir, 32, 64, [0, 3], ["color_spot", "broken_end"])
  assert export.is_export_dir(out_dir)
  loaded = export.load(out_dir)
  assert loaded.tile == (32, 64) and loaded.class_ids == [0, 3]
  rng = np.random.default_rng(0)
  for b in (1, 3):
    images = rng.integers(0, 256, (b, 32, 64, 3), dtype=np.uint8)
    want = jax.jit(fn)(images)
    got = loaded(images)
    assert sorted(got) == ["boxes", "labels", "scores", "seg_probs"]
    for k in want:
      np.testing.assert_allclose(got[k], np.asarray(want[k]), rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="uint8"):
    loaded(np.zeros((1, 32, 32, 3), np.uint8))


def test_artifact_runs_in_a_process_without_fabgen(tmp_path):
  model = TinyHead(nnx.Rngs(1))
  graphdef, params = nnx.split(model)
  fn = lambda images: nnx.merge(graphdef, params)(images)
  out_dir = str(tmp_path / "exp")
  export.export_function(fn, out_dir, 32, 32, [0], ["color_spot"], batch=2)
  images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  np.save(tmp_path / "x.npy", images)
  want = np.asarray(jax.jit(fn)(images)["scores"])
  # Only jax + numpy: block every fabgen/flax import in the child to prove independence.
  code = f"""
import sys, json, numpy as np
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('fabgen', 'flax', 'optax', 'orbax'):
      raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
from jax import export
exp = export.deserialize(bytearray(open({os.path.join(out_dir, export.ARTIFACT)!r}, 'rb').read()))
out = exp.call(np.load({str(tmp_path / 'x.npy')!r}))
np.save({str(tmp_path / 'y.npy')!r}, np.asarray(out['scores']))
"""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-6)


def test_bad_artifacts_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="detector.json"):
    export.load(str(tmp_path))
  (tmp_path / export.META).write_text(json.dumps({"format": "other"}))
  (tmp_path / export.ARTIFACT).write_bytes(b"junk")
  with pytest.raises(ValueError, match="format 'other'"):
    export.load(str(tmp_path))
  (tmp_path / export.META).write_text(json.dumps({"format": export.FORMAT}))
  with pytest.raises(ValueError, match="could not be deserialized"):
    export.load(str(tmp_path))


@pytest.mark.slow
def test_exported_detector_equals_training_code(tmp_path):
  """The real detector: export_detector(workdir) == jit(task.predict) on the restored state."""
  from fabgen.detector import task as task_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.get(os.path.join(os.path.dirname(__file__), "..", "..", "configs",
                                       "detector.py") + ":tiny")
  task = task_lib.DetectorTask(config)
  state = jax.jit(task.init_state)(jax.random.key(0))
  ckpt = str(tmp_path / "det")
  checkpoint_lib.write(ckpt, config, state)
  out_dir = str(tmp_path / "exported")
  export.export_detector(ckpt, out_dir)
  loaded = export.load(out_dir)
  size = loaded.tile
  assert loaded.class_ids == list(task.class_ids)
  images = np.random.default_rng(2).integers(0, 256, (2, size[0], size[1], 3), dtype=np.uint8)
  want = jax.jit(task.predict)(state, images)
  got = loaded(images)
  for k in ("boxes", "scores", "labels", "seg_probs"):
    np.testing.assert_allclose(got[k], np.asarray(want[k]), rtol=1e-5, atol=1e-5)
