"""Method `inpainter`: the single-stage inpainting generator paints each defect in place.

`--checkpoint` is a workdir trained with `configs/inpainter.py` (task "inpainter"). Per
sample we draw a real defect shape of the requested class from the checkpoint's mask bank (with
a random flip), cut the `image_size` window at the placed offset, let G (EMA weights) paint
inside dilate(mask, margin) and put the window back. No fusion stage: G paints the seam itself.
"""

from __future__ import annotations

import jax

from fabgen.stage2.inpainter_task import InpainterTask
from fabgen.nn import masks as mask_ops
from fabgen.synthesis import base
from fabgen.synthesis import mask_bank


class InpainterSynthesizer(base.Synthesizer):
  """Wraps a trained `InpainterTask` state."""

  name = "inpainter"

  def __init__(self, task: InpainterTask, task_state):
    self.task = task
    self.patch_size = int(task.config.image_size)
    bank = task_state["mask_bank"]
    self.class_ids = tuple(sorted(set(int(c) for c in jax.device_get(bank["classes"]) if c >= 0)))
    self.state = {"g": task_state["g_ema"], "masks": bank["masks"], "classes": bank["classes"]}

  @classmethod
  def from_checkpoint(cls, checkpoint: str, **unused) -> "InpainterSynthesizer":
    del unused
    task, state = base.restore_trained(checkpoint, expect="inpainter")
    return cls(task, state)

  def apply(self, state, backgrounds, class_ids, offsets, keys):
    p = self.patch_size

    masks, noise_keys = mask_bank.draw(keys, state["masks"], state["classes"], class_ids)
    windows = mask_ops.to_signed(mask_ops.crop_windows(backgrounds, offsets, p))
    painted = jax.vmap(
        lambda w, m, c, k: self.task.generate(state["g"], w[None], m[None], c[None], k)[0]
    )(windows, masks, class_ids, noise_keys)
    return mask_ops.put_windows(backgrounds, mask_ops.signed_to_uint8(painted), offsets)
