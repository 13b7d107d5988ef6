"""Generated defects take real box sizes: the fit into a box, and multistage end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import fusion as fusion_config
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.stage2 import fusion_task
from fabgen.synthesis import backgrounds as backgrounds_lib
from fabgen.synthesis import base
from fabgen.synthesis import box_fit
from fabgen.synthesis import box_stats
from fabgen.synthesis import multistage
from fabgen.synthesis import stream


@pytest.mark.parametrize("box", [(3, 40), (40, 3), (12, 12), (30, 18)])
def test_fit_puts_the_mask_box_exactly_on_the_real_box(box):
  mask = np.zeros((16, 16), np.float32)
  mask[5:11, 6:9] = 1.0  # a 6 x 3 blob, not centred
  patch = np.random.default_rng(0).uniform(size=(16, 16, 3)).astype(np.float32)
  top_left = jnp.asarray([7, 5], jnp.int32)
  out_patch, out_mask, domain = jax.jit(box_fit.fit_into_box, static_argnums=4)(
      patch, mask, jnp.asarray(box, jnp.int32), top_left, 64)
  ys, xs = np.nonzero(np.asarray(out_mask) > 0.5)
  assert (ys.min(), ys.max() + 1) == (7, 7 + box[0])
  assert (xs.min(), xs.max() + 1) == (5, 5 + box[1])
  assert out_patch.shape == (64, 64, 3) and float(domain.min()) == 0.0  # beyond the patch: empty
  assert float(domain[7 + box[0] // 2, 5 + box[1] // 2]) == 1.0


def test_bank_sampling_draws_only_the_class_boxes():
  bank = box_fit.BoxBank([3, 100, 12], [90, 4, 12], [3, 3, 2])
  draw = jax.jit(lambda k, c: box_fit.sample_box(k, c, bank.state(), 64))
  got = {tuple(np.asarray(draw(jax.random.key(i), 3)).tolist()) for i in range(30)}
  assert got == {(3, 64), (64, 4)}  # both class-3 boxes, clipped to the window
  assert {tuple(np.asarray(draw(jax.random.key(i), 2)).tolist()) for i in range(5)} == {(12, 12)}


class _ThreadStage1:
  """A Stage1Generator double painting a thin dark thread (mask 2 x 12 px in a 16-px patch)."""
  patch_size = 16
  class_ids = (3, 0)

  def generate(self, backgrounds, class_ids, rng):
    del rng
    b = backgrounds.shape[0]
    mask = jnp.zeros((b, 16, 16)).at[:, 2:14, 7:9].set(1.0)
    patch = backgrounds[..., :16, :16, :].astype(jnp.float32) / 255 * (1 - 0.7 * mask[..., None])
    return {"patch": patch, "mask": mask}


def _records():
  """Real defects: long thin broken ends (class 3) and small colour spots (class 0)."""
  rng = np.random.default_rng(1)
  out = []
  for i in range(12):
    inst = np.zeros((96, 96), np.int32)
    if i % 2:
      h, w, cid = int(rng.integers(50, 80)), int(rng.integers(6, 10)), 3  # FabricSim: ~9 px
    else:
      h = w = int(rng.integers(6, 12))
      cid = 0
    inst[10:10 + h, 20:20 + w] = 1
    out.append({"instance_mask": inst, "instance_class": np.array([cid, -1, -1, -1]),
                "boxes": np.array([[20, 10, 20 + w, 10 + h]], np.float32),
                "box_class": np.array([cid], np.int32)})
  return out


def _fabric(seed, size=96):
  rng = np.random.default_rng(seed)
  x = np.arange(size)
  img = 140 + 40 * np.sin(2 * np.pi * x / 6)[None, :, None] * np.ones((size, 1, 3))
  return np.clip(img + rng.normal(0, 2, (size, size, 3)), 0, 255).astype(np.uint8)


@pytest.mark.e2e  # ~75 s on 2 cores: compiling T and stage 1 on a 96-px window
def test_multistage_synthesized_boxes_follow_the_real_sizes_per_class(tmp_path):
  config = fusion_config.get_config("tiny")
  task = fusion_task.FusionTask(config)
  checkpoint_lib.write(str(tmp_path / "fusion"), config, task.init_state(jax.random.key(0)))
  records = _records()
  synth = multistage.MultistageSynthesizer(
      _ThreadStage1(), *base.restore_trained(str(tmp_path / "fusion"), "fusion"),
      boxes=box_fit.BoxBank.from_records(records), max_window=96)
  assert synth.patch_size == 96  # room for the 80-px broken ends
  bgs = backgrounds_lib.open_backgrounds([_fabric(i) for i in range(3)])
  out = str(tmp_path / "out")
  stream.SynthesisRun(synth, bgs, 16, out, batch_size=8).run()
  report = box_stats.write_report(out, records)
  assert os.path.isfile(os.path.join(out, "box_stats.md"))
  for name in ("color_spot", "broken_end"):
    row = report["classes"][name]
    assert row["synthesized"]["n"] > 0
    # T at init is the identity, so the labelled box is the real box plus what is kept of the
    # pasted margin: at most seam_radius (2 px) on each side
    assert 0.5 < row["median_area_ratio"] < 2.0, row
  long = report["classes"]["broken_end"]["synthesized"]
  assert long["h"]["q50"] > 5 * long["w"]["q50"]  # long and thin, not a 16-px square
  assert json.load(open(os.path.join(out, "box_stats.json")))["classes"].keys() == \
      report["classes"].keys()
