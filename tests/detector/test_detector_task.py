"""DetectorTask: targets and augmentation, a tiny detector overfits a handful of images (COCO
mAP@0.5 through pycocotools). Sharded training: test_detector_sharded.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.detector import task as task_lib
from fabgen.detector.coco_eval import CocoBoxEvaluator
from detector_fixtures import synthetic_records
from detector_fixtures import stack_records as _stack
from detector_fixtures import tiny_config as _config


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
