"""DetectorTask: targets and augmentation, a tiny detector overfits a handful of images (COCO
mAP@0.5 through pycocotools), sharded (8 devices) equals unsharded, train -> restore -> fine-tune.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.data.readers import records
from fabgen.detector import task as task_lib
from fabgen.detector.coco_eval import CocoBoxEvaluator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from configs import detector as detector_config  # pylint: disable=g-import-not-at-top,wrong-import-position


def _config(**overrides):
  c = detector_config.get_config("tiny")
  c.model.decoder_layers = 1      # the smallest real detector: keeps compile time down
  c.model.num_queries = 10
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return c


def synthetic_records(n: int, size: int = 64, seed: int = 0):
  """Noisy grey 'fabric' with dark square spots (class 0) and bright thin lines (class 3)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    image = (120 + rng.normal(0, 8, (size, size, 3))).clip(0, 255)
    mask = np.zeros((size, size), np.int32)
    classes = []
    y, x = rng.integers(4, size - 20, 2)
    image[y:y + 14, x:x + 14] = 40
    mask[y:y + 14, x:x + 14] = 1
    classes.append(0)
    if rng.random() < 0.75:
      x2 = int(rng.integers(4, size - 8))
      if abs(x2 - x) > 18:
        y2 = int(rng.integers(0, size - 36))
        image[y2:y2 + 34, x2:x2 + 4] = 230
        mask[y2:y2 + 34, x2:x2 + 4] = 2
        classes.append(3)
    sample, _ = records.make_sample(image.astype(np.uint8), mask, classes)
    out.append(sample)
  return out


def _stack(samples):
  keys = ("image", "instance_mask", "instance_class", "boxes", "box_class")
  return {k: np.stack([s[k] for s in samples]) for k in keys}


def test_targets_map_global_ids_to_head_and_build_class_map():
  task = task_lib.DetectorTask(_config(**{"model.class_ids": (3, 0)}))
  batch = _stack(synthetic_records(2, seed=3))
  t = task.targets(jax.tree.map(jnp.asarray, batch))
  for i in range(2):
    n = int((batch["box_class"][i] >= 0).sum())
    want = [{3: 0, 0: 1}[int(c)] for c in batch["box_class"][i][:n]]
    np.testing.assert_array_equal(t["classes"][i][:n], want)
    assert np.all(np.asarray(t["classes"][i][n:]) == -1)
    inst = batch["instance_mask"][i]
    head = np.array([{3: 0, 0: 1}.get(int(c), -1) for c in batch["instance_class"][i]])
    np.testing.assert_array_equal(t["class_map"][i], np.where(inst > 0, head[inst - 1] + 1, 0))
  box = batch["boxes"][0][0] / 64
  np.testing.assert_allclose(t["boxes"][0][0], [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                                                box[2] - box[0], box[3] - box[1]], rtol=1e-6)


def test_flips_keep_boxes_on_the_flipped_mask():
  samples = synthetic_records(3, seed=4)
  batch = _stack(samples)
  batch["box_instance"] = np.stack([s["box_instance"] for s in samples])
  out = task_lib.flip_batch(jax.tree.map(jnp.asarray, batch), jnp.array([True, False, True]),
                            jnp.array([False, True, True]))
  checked = 0
  for i in range(3):
    mask = np.asarray(out["instance_mask"][i])
    for k, box in zip(batch["box_instance"][i], np.asarray(out["boxes"][i])):
      if k <= 0:
        continue
      ys, xs = np.nonzero(mask == k)
      np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
      checked += 1
  assert checked >= 3
  np.testing.assert_array_equal(out["image"][0], batch["image"][0][:, ::-1])
  np.testing.assert_array_equal(out["image"][1], batch["image"][1][::-1])
  np.testing.assert_array_equal(out["image"][2], batch["image"][2][::-1, ::-1])


def _map50(task, state, samples):
  pred = jax.jit(task.predict)(state, jnp.asarray(np.stack([s["image"] for s in samples])))
  ev = CocoBoxEvaluator()
  for i, s in enumerate(samples):
    ev.add(s, np.asarray(pred["boxes"][i]), np.asarray(pred["scores"][i]),
           np.asarray(pred["labels"][i]))
  return ev.compute()["map_50"]


@pytest.mark.slow
def test_tiny_detector_overfits_a_handful_of_images():
  samples = synthetic_records(4, seed=0)
  steps = 250
  config = _config(**{"batch_size": 4, "total_steps": steps, "optim.lr": 2e-3,
                      "optim.warmup_steps": 10, "data.hflip": False, "data.vflip": False,
                      "model.class_ids": (0, 3)})
  task = task_lib.DetectorTask(config)
  state = jax.jit(task.init_state)(jax.random.key(0))
  before = _map50(task, state, samples)
  batch = jax.tree.map(jnp.asarray, _stack(samples))
  step = jax.jit(task.train_step, donate_argnums=0)
  first = None
  for i in range(steps):
    state, metrics = step(state, batch, jax.random.key(i))
    first = first if first is not None else float(metrics["loss"])
  assert float(metrics["loss"]) < 0.5 * first
  after = _map50(task, state, samples)
  assert after > 0.9, f"mAP@0.5 {before:.3f} -> {after:.3f}"


@pytest.mark.slow
def test_sharded_training_equals_unsharded_then_restore_and_finetune(tmp_path):
  """`fabgen train` on 8 devices (batch sharded) == the same steps on one device; the restored
  checkpoint is that state; predict works on it; finetune_config starts from it."""
  from fabgen.platform import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  assert len(jax.devices()) == 8
  config = _config(**{"batch_size": 8, "total_steps": 2, "checkpoint.every_steps": 1,
                      "checkpoint.asynchronous": False, "log_every_steps": 1})
  # Unsharded reference: the platform's own step on a one-device mesh, same input and rngs.
  task = task_lib.DetectorTask(config)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  init_rng, step_rng, abstract = trainer.abstract_state(task, config)
  shardings = sharding_lib.state_shardings(abstract, mesh, config)
  state = jax.jit(task.init_state, out_shardings=shardings)(init_rng)
  data = iter(task.dataset(0, 1, config.seed))
  step = None
  for _ in range(2):
    batch = next(data)
    step = step or trainer.build_step(task, shardings, mesh,
                                      trainer.batch_shardings(task, mesh, batch))
    state, metrics = step(state, sharding_lib.global_batch(batch, mesh, task.batch_axes()),
                          step_rng)
  ref_params, ref_loss = jax.device_get(state["params"]), float(metrics["loss"])

  workdir = str(tmp_path / "det")
  result = trainer.train(config, workdir)                      # all 8 devices
  assert result["step"] == 2
  np.testing.assert_allclose(result["loss"], ref_loss, rtol=1e-4)
  task, restored = task_lib.DetectorTask.restore(workdir)
  assert task.class_ids == tuple(config.model.class_ids) and int(restored["step"]) == 2
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               jax.device_get(restored["params"]), ref_params)

  pred = jax.jit(task.predict)(restored, jnp.zeros((2, 64, 64, 3), jnp.uint8))
  assert pred["boxes"].shape == (2, 10, 4) and pred["seg_probs"].shape == (2, 64, 64, 7)
  ft = task_lib.finetune_config(config, workdir, total_steps=5)
  assert ft.optim.lr == pytest.approx(config.optim.lr * 0.1) and ft.total_steps == 5
  ft_state = task_lib.DetectorTask(ft).init_state(jax.random.key(5))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(ft_state["params"]),
               jax.device_get(restored["params"]))
  bad = task_lib.finetune_config(_config(**{"model.dim": 16}), workdir)
  with pytest.raises(ValueError, match="another size"):
    task_lib.DetectorTask(bad)
