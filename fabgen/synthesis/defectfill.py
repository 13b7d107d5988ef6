"""Method `defectfill`: a DefectFill-fine-tuned latent inpainting model paints each defect.

`--checkpoint` is a workdir (or export) trained with `configs/defectfill.py` (task "defectfill":
one model per (fabric, defect class)). Per sample: a reference defect mask from the checkpoint's
mask bank (random pick, random flip) is placed in the `image_size` window at the given offset,
K candidates are inpainted there ("a <object> with [V*]", DDIM + guidance, paste-back), Low-
Fidelity Selection keeps the one least like the background inside the mask, and the window goes
back into the image with every pixel outside the mask untouched - so the changed-pixel labels
stay inside the mask. Options: steps, guidance, candidates (default: the config's `sampling`).

Several classes: `--checkpoint A,B,...` names one fine-tune per class (the adaptation protocol
trains one per defect class). Their merged weights, [V*] embeddings and mask banks are stacked
on a leading class axis and each sample paints with its class's slice; the fine-tunes must share
sizes and sampling settings (checked, naming the checkpoint that differs). Each sample gathers
its class's weights, so a batch holds up to batch-size copies of the U-Net: fine for the CPU
models; at SD-2 size synthesize one class per run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.diffusion import sampling
from fabgen.synthesis import base
from fabgen.nn import masks as mask_ops


class DefectFillSynthesizer(base.Synthesizer):
  name = "defectfill"

  def __init__(self, task, task_state, steps=None, guidance=None, candidates=None,
               more=()):
    """`task`, `task_state`: a fine-tune; `more`: (task, state) of further classes."""
    self.task = task
    s = task.config.get("sampling", None)
    self.steps = int(steps or (s.steps if s else 50))
    self.guidance = float(guidance if guidance is not None else (s.guidance if s else 7.5))
    self.candidates = int(candidates or (s.candidates if s else 8))
    self.patch_size = int(task.config.data.image_size)
    fine_tunes = [(task, task_state)] + list(more)
    self.class_ids = tuple(int(t.class_id) for t, _ in fine_tunes)
    if len(set(self.class_ids)) != len(self.class_ids):
      raise base.SynthesisError(f"defectfill: two fine-tunes of the same class among "
                                f"{self.class_ids}; give one checkpoint per class")
    states = []
    for t, st in fine_tunes:
      _, params, v_star = t.inference_params(st)
      states.append({"params": params, "v_star": v_star, "masks": st["mask_bank"]})
    self.model = task.inference_params(task_state)[0]
    self.state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)

  @classmethod
  def from_checkpoint(cls, checkpoint: str, steps=None, guidance=None, candidates=None,
                      **unused) -> "DefectFillSynthesizer":
    del unused
    dirs = [d for d in checkpoint.split(",") if d]
    loaded = [base.restore_trained(d, "defectfill") for d in dirs]
    first = loaded[0][0].config
    for d, (t, st) in zip(dirs[1:], loaded[1:]):
      for key in ("model", "sampling"):
        settings = lambda c, k=key: c.get(k).to_dict() if c.get(k) is not None else None
        if settings(t.config) != settings(first):
          raise base.SynthesisError(f"defectfill: {d} has other {key} settings than {dirs[0]}; "
                                    f"the fine-tunes of one set must share them")
      if (int(t.config.data.image_size), st["mask_bank"].shape) != (
          int(first.data.image_size), loaded[0][1]["mask_bank"].shape):
        raise base.SynthesisError(f"defectfill: {d} has another window size or mask bank than "
                                  f"{dirs[0]}")
    (task, state), more = loaded[0], loaded[1:]
    return cls(task, state, steps, guidance, candidates, more=more)

  def static_options(self):
    return {**super().static_options(), "steps": self.steps, "guidance": self.guidance,
            "candidates": self.candidates}

  def paint_window(self, state, window_u8, key):
    """One uint8 window [S, S, 3] -> (painted uint8 window, mask [S, S]); `state` is one
    class's slice (params, v_star, masks)."""
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
    windows = mask_ops.crop_windows(backgrounds, offsets, self.patch_size)
    if len(self.class_ids) == 1:   # one fine-tune: its weights, no per-sample gather
      one = jax.tree.map(lambda x: x[0], state)
      painted, _ = jax.vmap(lambda w, k: self.paint_window(one, w, k))(windows, keys)
    else:
      index = jnp.argmax(class_ids[:, None] == jnp.asarray(np.asarray(self.class_ids))[None], 1)
      painted, _ = jax.vmap(lambda w, c, k: self.paint_window(
          jax.tree.map(lambda x: x[c], state), w, k))(windows, index, keys)
    return mask_ops.put_windows(backgrounds, painted, offsets)
