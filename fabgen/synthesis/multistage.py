"""Method `multistage`: the paper's pipeline, stage-1 defect patch + stage-2 fusion network T.

`--checkpoint` names two trained models: a parent directory holding `stage1/` and `fusion/`
(training workdirs), or a comma-separated pair `STAGE1_DIR,FUSION_DIR`.

Per sample: draw a real defect box (h, w) of the sample's class from a `box_fit.BoxBank` of the
labelled source data the fusion network was trained on, and a position for it inside a window
large enough for the class's longest real boxes; stage 1 generates a `patch_size` defect patch
and mask conditioned on the texture at that position (its Gram matrix); the patch is scaled so
its mask's box lands on the drawn box (the paper resizes stage-1 patches into a real defect's
window; see `box_fit`) and `FusionTask.fuse` pastes it over its fusion region (hard seams,
exactly as T's training inputs are built), runs T and keeps T's output within seam_radius of
the defect's mask (`keep_near_mask`); the window goes back. T is convolutional, so it runs on the larger window.
Without a bank (`boxes=None`: tests, the native-size ablation) the patch is pasted at its own
size, centred in T's `image_size` window.

End to end with real tiny checkpoints (tests/synthesis/test_synthesis_multistage_e2e.py):

  fabgen train --config configs/stage1.py:tiny,steps=20 --workdir /tmp/s1
  fabgen train --config configs/fusion.py:tiny,steps=10 --workdir /tmp/fu
  fabgen synthesize --method multistage --checkpoint /tmp/s1,/tmp/fu \\
      --backgrounds fabricsim:tiny:target_good --num 8 --out /tmp/synth
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from fabgen.data.readers import open_source, skips, spread_indices
from fabgen.nn import masks as mask_ops
from fabgen.stage1.generate import Stage1Generator
from fabgen.synthesis import base
from fabgen.synthesis import box_fit


def split_checkpoint(checkpoint: str) -> tuple[str, str]:
  """(stage1 dir, fusion dir) from `PARENT` or `STAGE1,FUSION`."""
  if "," in checkpoint:
    stage1, fusion = (p.strip() for p in checkpoint.split(",", 1))
  else:
    stage1, fusion = os.path.join(checkpoint, "stage1"), os.path.join(checkpoint, "fusion")
  for path, what in ((stage1, "stage-1"), (fusion, "fusion")):
    if not os.path.isdir(path):
      raise base.SynthesisError(
          f"multistage --checkpoint {checkpoint!r}: no {what} model at {path!r} (give a parent "
          f"directory holding stage1/ and fusion/, or 'STAGE1_DIR,FUSION_DIR')")
  return stage1, fusion


class MultistageSynthesizer(base.Synthesizer):
  """Stage-1 generator (`fabgen.stage1.generate.Stage1Generator`) + FusionTask's EMA T."""

  name = "multistage"

  def __init__(self, stage1, fusion_task, fusion_state, boxes: box_fit.BoxBank | None = None,
               max_window: int = 256):
    self.stage1, self.fusion = stage1, fusion_task
    c = fusion_task.config
    self.patch_size = int(c.image_size)
    if stage1.patch_size > self.patch_size:
      raise base.SynthesisError(f"stage-1 patches ({stage1.patch_size}px) do not fit the fusion "
                                f"window ({self.patch_size}px)")
    self.class_ids = tuple(int(c) for c in stage1.class_ids)
    self.state = {"t": fusion_state["t_ema"]}
    self.boxes = boxes
    if boxes is not None:
      if not len(boxes):
        raise base.SynthesisError("multistage: the box bank has no real defect boxes")
      # room for the margin R adds, the seam band T may change, and one pixel of resampling
      self.pad = fusion_task.fusion_reach() + 1
      self.patch_size = max(box_fit.window_for(boxes, self.pad, max_window), self._floor())
      self.state.update(boxes.state())

  def _floor(self) -> int:
    """The smallest window: T's own size, or a stage-1 patch plus the pad (a multiple of 16)."""
    need = max(int(self.fusion.config.image_size), self.stage1.patch_size + 2 * self.pad)
    return -(-need // box_fit.WINDOW_MULTIPLE) * box_fit.WINDOW_MULTIPLE

  def fit_window(self, side: int) -> None:
    """Shrinks the window to backgrounds of `side` px (boxes are clipped to what fits)."""
    if self.boxes is not None:
      fits = int(side) // box_fit.WINDOW_MULTIPLE * box_fit.WINDOW_MULTIPLE
      self.patch_size = max(min(self.patch_size, fits), self._floor())

  def static_options(self):
    return {**super().static_options(),
            "box_sizes": "native" if self.boxes is None else "real boxes"}

  @classmethod
  def from_checkpoint(cls, checkpoint: str, box_source: str = "", box_records: int = 200,
                      max_window: int = 256, **unused) -> "MultistageSynthesizer":
    """Loads both models; the box bank comes from `box_source` (default: T's training source).

    `box_source="native"` keeps stage-1 patches at their own size (the ablation).
    """
    del unused
    stage1_dir, fusion_dir = split_checkpoint(checkpoint)
    try:
      stage1 = Stage1Generator.from_checkpoint(stage1_dir)
    except Exception as e:
      raise base.SynthesisError(f"cannot load a stage-1 generator from {stage1_dir!r}: {e}") from e
    task, state = base.restore_trained(fusion_dir, expect="fusion")
    boxes, sources = None, ()
    if box_source != "native":
      boxes, src = real_box_bank(box_source or task.config.data.source, box_records,
                                 stage1.class_ids)
      sources = (src,)
    synth = cls(stage1, task, state, boxes, max_window)
    synth.input_sources = sources
    return synth

  def apply(self, state, backgrounds, class_ids, offsets, keys):
    if self.boxes is None:
      return self._apply_native(state, backgrounds, class_ids, offsets, keys)
    s, p, pad = self.patch_size, self.stage1.patch_size, self.pad
    windows = mask_ops.crop_windows(backgrounds, offsets, s)

    def one(window, cid, key):
      k_box, k_pos, k_gen = jax.random.split(key, 3)
      box = box_fit.sample_box(k_box, cid, state, s - 2 * pad)
      top_left = box_fit.place_box(k_pos, box, s, pad)
      # condition on the texture where the defect goes
      centre = top_left + box // 2
      t0 = jnp.clip(centre - p // 2, 0, s - p)
      texture = jax.lax.dynamic_slice(window, (t0[0], t0[1], 0), (p, p, window.shape[-1]))
      out = self.stage1.generate(texture[None], cid[None], k_gen)
      return box_fit.fit_into_box(out["patch"][0], out["mask"][0], box, top_left, s)

    patch, pmask, domain = jax.vmap(one)(windows, class_ids, keys)
    fused = self.fusion.fuse(state["t"], mask_ops.to_signed(windows), patch * 2.0 - 1.0, pmask,
                             domain=domain, keep_near_mask=True)
    return mask_ops.put_windows(backgrounds, mask_ops.signed_to_uint8(fused), offsets)

  def _apply_native(self, state, backgrounds, class_ids, offsets, keys):
    s, p = self.patch_size, self.stage1.patch_size
    windows = mask_ops.crop_windows(backgrounds, offsets, s)
    lo = (s - p) // 2
    # Per-sample keys: each sample's patch depends only on its own key.
    out = jax.vmap(lambda w, cid, k: self.stage1.generate(
        w[None, lo:lo + p, lo:lo + p], cid[None], k))(windows, class_ids, keys)
    patch = out["patch"][:, 0] * 2.0 - 1.0
    pmask = out["mask"][:, 0]
    pad = ((0, 0), (lo, s - p - lo), (lo, s - p - lo))
    patch = jnp.pad(patch, pad + ((0, 0),))
    pmask = jnp.pad(pmask, pad)
    fused = self.fusion.fuse(state["t"], mask_ops.to_signed(windows), patch, pmask)
    return mask_ops.put_windows(backgrounds, mask_ops.signed_to_uint8(fused), offsets)


def real_box_bank(source: str, max_records: int, class_ids):
  """(bank, opened source): the boxes of real defects of `class_ids` in `max_records` records
  spread over `source`; the source is returned for the manifest's report of what it skipped."""
  try:
    src = open_source(source)
  except Exception as e:  # the reader's message names the path
    raise base.SynthesisError(f"multistage: cannot open the box source {source!r}: {e}") from e
  # A record only a full decode finds broken is left out, logged with its path and counted.
  records = skips.read_records(src, spread_indices(len(src), max_records))
  bank = box_fit.BoxBank.from_records(records, class_ids)
  if not len(bank):
    raise base.SynthesisError(f"multistage: {source!r} has no labelled defect of the classes "
                              f"{list(class_ids)} to take real box sizes from")
  return bank, src
