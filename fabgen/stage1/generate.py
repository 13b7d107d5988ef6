"""`Stage1Generator`: a trained stage-1 model as the function synthesis calls.

  gen = Stage1Generator.from_checkpoint(workdir_or_ckpt_dir)  # EMA G + conditioner + config
  gen.patch_size; gen.class_ids
  out = gen.generate(backgrounds, class_ids, rng)   # jittable, vmappable
  out["patch"]  float32 [B, P, P, 3] in [0, 1]
  out["mask"]   float32 [B, P, P] in [0, 1] (soft)

`backgrounds` are defect-free crops (uint8 or float in [0, 1]) of the fabric to paint on; their
Gram features are the condition (and, with `model.background_input`, G also sees them). A crop
larger than P is centre-cropped to P. The VGG of the condition is rebuilt from the config (the
same fixed random filters, or the same weights file, which must still exist).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fabgen.nn import masks as mask_ops
from fabgen.platform import checkpoint as checkpoint_lib


class Stage1Generator:
  """EMA generator + conditioner of a trained `Stage1Task`."""

  def __init__(self, task, g_params):
    self.task = task
    self.params = jax.tree.map(jnp.asarray, g_params)
    self.patch_size = int(task.config.patch_size)
    self.class_ids = task.class_ids()
    self.noise_dim = int(task.config.model.noise_dim)
    # The condition's feature network loads lazily (a trained texture network is restored from
    # its checkpoint); load it now, on the host, so that `generate` under jit / vmap only reads it.
    _ = task.conditioner.params

  @classmethod
  def from_checkpoint(cls, path: str) -> "Stage1Generator":
    """From a training workdir (its newest step) or one of its `checkpoints/<step>` folders."""
    _, task, state = checkpoint_lib.restore(path, expect="stage1")
    return cls(task, state["g_ema"])

  def generate(self, backgrounds, class_ids, rng):
    """Defect patches + soft masks conditioned on the texture of `backgrounds` (see module doc)."""
    x = mask_ops.to_unit(backgrounds)
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"backgrounds must be [B, H, W, 3], got {x.shape}")
    p = self.patch_size
    h, w = x.shape[1], x.shape[2]
    if h < p or w < p:
      raise ValueError(f"backgrounds of {h}x{w} are smaller than the {p}px patches this "
                       f"stage-1 model makes")
    y0, x0 = (h - p) // 2, (w - p) // 2
    x = x[:, y0:y0 + p, x0:x0 + p]
    feats = self.task.conditioner(x)
    z = jax.random.normal(rng, (x.shape[0], self.noise_dim))
    cls = jnp.asarray(class_ids, jnp.int32).reshape(x.shape[0])
    rgb, mask = self.task.generate(self.params, z, feats, cls, x * 2.0 - 1.0)
    return {"patch": (rgb + 1.0) * 0.5, "mask": mask}
