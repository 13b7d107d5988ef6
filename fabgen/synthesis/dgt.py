"""Method `dgt`: the DGT generator transfers a real defect shape of the asked class onto a fabric.

`--checkpoint` is a workdir trained with `configs/dgt.py` (task "dgt"). Per sample: draw a defect
shape M of the requested class from the checkpoint's mask bank (random flip), cut the
`image_size` window at the placed offset, build G's input [E~_fore, E~_back, N] with the
sample's own smoothing key, and composite G's output into the window inside
dilate(M, margin): outside that region the background stays bit-identical, so the label (the
pixels that changed) is exact, as for every other method. The class a sample gets is a class
the generator was trained on (its `data.classes`), which is what `class_ids` declares.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fabgen.dgt.task import DGTTask
from fabgen.synthesis import base
from fabgen.synthesis import mask_bank
from fabgen.nn import masks as mask_ops

MARGIN = 2  # pixels around the shape where G's output replaces the background


class DGTSynthesizer(base.Synthesizer):
  """Wraps a trained `DGTTask` state."""

  name = "dgt"

  def __init__(self, task: DGTTask, task_state):
    self.task = task
    self.patch_size = int(task.config.image_size)
    from fabgen.dgt import data as data_lib  # pylint: disable=g-import-not-at-top
    self.known = tuple(int(c) for c in data_lib.class_indices(task.class_names))
    bank_labels = set(int(x) for x in jax.device_get(task_state["mask_bank"]["labels"]) if x >= 0)
    self.class_ids = tuple(sorted(self.known[i] for i in bank_labels))
    self.state = {"g": task_state["g"], "masks": task_state["mask_bank"]["masks"],
                  "labels": task_state["mask_bank"]["labels"],
                  "known": jnp.asarray(self.known, jnp.int32)}

  @classmethod
  def from_checkpoint(cls, checkpoint: str, **unused) -> "DGTSynthesizer":
    del unused
    task, state = base.restore_trained(checkpoint, "dgt")
    return cls(task, state)

  def apply(self, state, backgrounds, class_ids, offsets, keys):
    p = self.patch_size
    local = jnp.argmax(state["known"][None, :] == class_ids[:, None], axis=-1).astype(jnp.int32)

    masks, smooth_keys = mask_bank.draw(keys, state["masks"], state["labels"], local)
    windows = mask_ops.to_unit(mask_ops.crop_windows(backgrounds, offsets, p))
    fake, _, _ = self.task.generate(state["g"], windows, masks, local, smooth_keys)
    region = mask_ops.defect_region(masks, MARGIN)
    painted = mask_ops.paste(windows, fake, region)
    return mask_ops.put_windows(backgrounds, mask_ops.to_uint8(painted), offsets)
