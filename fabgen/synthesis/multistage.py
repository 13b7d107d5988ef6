"""Method `multistage`: the paper's pipeline, stage-1 defect patch + stage-2 fusion network T.

`--checkpoint` names two trained models: a parent directory holding `stage1/` and `fusion/`
(training workdirs), or a comma-separated pair `STAGE1_DIR,FUSION_DIR`.

Per sample: cut the fusion window (T's `image_size`) at the placed offset; stage 1 generates a
`patch_size` defect patch and mask conditioned on the window's texture (its Gram matrix); the
patch is centred in the window and `FusionTask.fuse` pastes it over the fusion region (hard
seams, exactly as T's training inputs are built), runs T and keeps T's output near the region;
the window goes back.

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

from fabgen.nn import masks as mask_ops
from fabgen.stage1.generate import Stage1Generator
from fabgen.synthesis import base


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

  def __init__(self, stage1, fusion_task, fusion_state):
    self.stage1, self.fusion = stage1, fusion_task
    self.patch_size = int(fusion_task.config.image_size)
    if stage1.patch_size > self.patch_size:
      raise base.SynthesisError(f"stage-1 patches ({stage1.patch_size}px) do not fit the fusion "
                                f"window ({self.patch_size}px)")
    self.class_ids = tuple(int(c) for c in stage1.class_ids)
    self.state = {"t": fusion_state["t_ema"]}

  @classmethod
  def from_checkpoint(cls, checkpoint: str, **unused) -> "MultistageSynthesizer":
    del unused
    stage1_dir, fusion_dir = split_checkpoint(checkpoint)
    try:
      stage1 = Stage1Generator.from_checkpoint(stage1_dir)
    except Exception as e:
      raise base.SynthesisError(f"cannot load a stage-1 generator from {stage1_dir!r}: {e}") from e
    task, state = base.restore_trained(fusion_dir, expect="fusion")
    return cls(stage1, task, state)

  def apply(self, state, backgrounds, class_ids, offsets, keys):
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
