"""Method `defectfill`: a DefectFill-fine-tuned latent inpainting model paints each defect.

`--checkpoint` is a workdir (or export) trained with `configs/defectfill.py` (task "defectfill":
one model per (fabric, defect class)). Per sample: a reference defect mask from the checkpoint's
mask bank (random pick, random flip) is placed in the `image_size` window at the given offset,
K candidates are inpainted there ("a <object> with [V*]", DDIM + guidance, paste-back), Low-
Fidelity Selection keeps the one least like the background inside the mask, and the window goes
back into the image with every pixel outside the mask untouched - so the changed-pixel labels
stay inside the mask. Options: steps, guidance, candidates (default: the config's `sampling`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fabgen.diffusion import sampling
from fabgen.synthesis import base
from fabgen.nn import masks as mask_ops


class DefectFillSynthesizer(base.Synthesizer):
  name = "defectfill"

  def __init__(self, task, task_state, steps=None, guidance=None, candidates=None):
    self.task = task
    s = task.config.get("sampling", None)
    self.steps = int(steps or (s.steps if s else 50))
    self.guidance = float(guidance if guidance is not None else (s.guidance if s else 7.5))
    self.candidates = int(candidates or (s.candidates if s else 8))
    self.patch_size = int(task.config.data.image_size)
    self.class_ids = (int(task.class_id),)
    self.model, params, v_star = task.inference_params(task_state)
    self.state = {"params": params, "v_star": v_star, "masks": task_state["mask_bank"]}

  @classmethod
  def from_checkpoint(cls, checkpoint: str, steps=None, guidance=None, candidates=None,
                      **unused) -> "DefectFillSynthesizer":
    del unused
    task, state = base.restore_trained(checkpoint, "defectfill")
    return cls(task, state, steps, guidance, candidates)

  def static_options(self):
    return {**super().static_options(), "steps": self.steps, "guidance": self.guidance,
            "candidates": self.candidates}

  def paint_window(self, state, window_u8, key):
    """One uint8 window [S, S, 3] -> (painted uint8 window, mask [S, S])."""
    task = self.task
    k_mask, k_flip, k_cand = jax.random.split(key, 3)
    masks = state["masks"]
    m = masks[jax.random.randint(k_mask, (), 0, masks.shape[0])]
    m = jnp.where(jax.random.bernoulli(k_flip), m[:, ::-1], m)
    y = window_u8.astype(jnp.float32) / 127.5 - 1.0
    keys = jax.random.split(k_cand, self.candidates)
    cands = jax.vmap(lambda k: sampling.inpaint(
        self.model, state["params"], state["v_star"], y[None], m[None],
        jnp.asarray(task.obj_ids)[None], jnp.asarray(task.uncond_ids)[None], k, self.steps,
        self.guidance)[0])(keys)
    chosen, _, _ = sampling.low_fidelity_select(cands[:, None], y[None], m[None])
    painted = mask_ops.to_uint8((chosen[0] + 1.0) / 2.0)
    return jnp.where(m[..., None] > 0.5, painted, window_u8), m

  def apply(self, state, backgrounds, class_ids, offsets, keys):
    del class_ids  # one class per fine-tune
    windows = mask_ops.crop_windows(backgrounds, offsets, self.patch_size)
    painted, _ = jax.vmap(lambda w, k: self.paint_window(state, w, k))(windows, keys)
    return mask_ops.put_windows(backgrounds, painted, offsets)
