"""DGT's training step: paired data alignment, and every downstream loss reaches G."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import dgt as dgt_config
from fabgen.data.readers import fabricsim_source
from fabgen.dgt import data as data_lib
from fabgen.dgt.task import DGTTask


def test_fabricsim_pairs_are_exactly_aligned():
  sim = fabricsim_source.get_sim("tiny", 0)
  n = 32  # the batch paired_set renders with (one compile for both)
  specs = np.stack([np.arange(n) % 4, 100 + np.arange(n), np.arange(n) % 6], 1)
  out = jax.device_get(sim.render_pairs(specs[:, 0], specs[:, 1], specs[:, 2]))
  m = out["instance_mask"] > 0
  assert m.any(axis=(1, 2)).sum() > n // 2
  np.testing.assert_array_equal(out["image"][~m], out["clean"][~m])        # D == N outside M
  diff = np.abs(out["image"].astype(int) - out["clean"].astype(int)).max(-1)
  assert (diff[m] >= 2).all()                                               # M is what changed
  twin = jax.device_get(sim.render_batch(specs[:4, 0], specs[:4, 1], np.full(4, -1)))
  np.testing.assert_array_equal(twin["image"], out["clean"][:4])           # == render(f, i, -1)


def test_paired_set_crops_keep_the_alignment_and_the_known_classes():
  pairs = data_lib.paired_set("fabricsim:tiny:train:0", ("knot", "oil_stain"), 12, 32)
  assert pairs["image"].shape[1:] == (32, 32, 3) and pairs["mask"].shape[1:] == (32, 32)
  outside = pairs["mask"] == 0
  np.testing.assert_array_equal(pairs["image"][outside], pairs["clean"][outside])
  assert (pairs["mask"].sum((1, 2)) > 0).all()
  assert set(pairs["label"]) <= {0, 1} and set(pairs["class_id"]) <= {2, 1}
  np.testing.assert_array_equal(np.array([2, 1])[pairs["label"]], pairs["class_id"])


def _pairs(n=4, s=16, seed=0):
  rng = np.random.default_rng(seed)
  clean = rng.integers(60, 200, (n, s, s, 3)).astype(np.uint8)
  mask = np.zeros((n, s, s), np.float32)
  for i in range(n):
    mask[i, 4 + i:10, 5:11 + i] = 1
  image = np.where(mask[..., None] > 0, 30, clean).astype(np.uint8)
  label = (np.arange(n) % 3).astype(np.int32)
  return {"clean": clean, "image": image, "mask": mask, "label": label, "class_id": label}


def _task(**weights):
  c = dgt_config.get_config("tiny")
  c.image_size = 16
  c.model.g_widths, c.model.dis_widths, c.model.dfc_widths = (8, 8), (8, 8), (8, 8)
  c.model.dis_head_width = 8
  c.data.classes = ("color_spot", "oil_stain", "knot")
  for k, v in weights.items():
    c.loss.weights[k] = v
  task = DGTTask(c)
  task.pairs = _pairs()
  return task


# The pixel terms obviously depend on G; the five downstream ones reach it through DIS and DFC
# (the real-image ones through the look-ahead step, see fabgen/dgt/task.py).
DOWNSTREAM = ("seg_fake", "seg_real_fore", "seg_real_back", "cls_fake", "cls_real")


def test_each_downstream_loss_alone_gives_g_a_nonzero_gradient():
  task = _task()
  state = task.init_state(jax.random.key(0))
  batch = {k: jnp.asarray(v) for k, v in task.pairs.items() if k != "class_id"}
  clean, defect, mask, label = task.unit_batch(batch)
  keys = jax.random.split(jax.random.key(1), 4)

  @jax.jit
  def grad_norms(g, dis, dfc):
    # One Jacobian row per term (one compiled program): row k is the gradient of term k alone.
    def terms(gp):
      t = task.g_terms(gp, dis, dfc, clean, defect, mask, label, keys)[0]
      return jnp.stack([t[k] for k in DOWNSTREAM])
    jac = jax.jacrev(terms)(g)
    return jnp.sqrt(sum(jnp.sum(x.reshape(len(DOWNSTREAM), -1) ** 2, 1)
                        for x in jax.tree.leaves(jac)))

  norms = dict(zip(DOWNSTREAM, jax.device_get(grad_norms(state["g"], state["dis"], state["dfc"]))))
  for name in DOWNSTREAM:
    assert np.isfinite(norms[name]) and norms[name] > 1e-8, (name, norms)
  # A zero weight removes its term from L_G (the ablation switch).
  off = _task(cls_real=0.0, seg_real_fore=0.0)
  terms, _ = off.g_terms(state["g"], state["dis"], state["dfc"], clean, defect, mask, label, keys)
  assert "cls_real" not in terms and "seg_real_fore" not in terms and "seg_real_back" in terms
