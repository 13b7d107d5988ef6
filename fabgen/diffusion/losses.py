"""DefectFill's three losses (and the plain inpainting loss of pre-training).

  L_def  = E || M  * (eps - eps_theta(x_t^def, t, "A photo of [V*]")) ||^2    inpaint region M
  L_obj  = E || M' * (eps - eps_theta(x_t^obj, t, "A [object] with [V*]")) ||^2  random boxes
  L_attn = E || A_t^[V*] - M ||^2    decoder cross-attention of [V*] during the L_obj pass
  M' = M + alpha (1 - M), alpha 0.3; total = l_def L_def + l_obj L_obj + l_attn L_attn.

All masks here are latent-resolution [B, h, w, 1] in {0, 1}; the mean is over every latent
element, as the formula's expectation (not renormalised by the mask area).
"""

from __future__ import annotations

import jax.numpy as jnp


def defect_loss(pred, target, mask):
  """L_def: squared error only inside the defect mask (zero gradient outside it)."""
  return jnp.mean(mask * jnp.square(target - pred))


def object_weights(mask, alpha: float):
  """M' = M + alpha (1 - M): the defect counts fully, the rest of the object with alpha."""
  return mask + alpha * (1.0 - mask)


def object_loss(pred, target, mask, alpha: float):
  """L_obj: squared error over the whole latent, weighted by M'."""
  return jnp.mean(object_weights(mask, alpha) * jnp.square(target - pred))


def attention_loss(attn_map, mask):
  """L_attn: the [V*] decoder attention map [B, h, w] against the defect mask [B, h, w, 1]."""
  return jnp.mean(jnp.square(attn_map - mask[..., 0]))


def inpainting_loss(pred, target):
  """Pre-training: plain squared error everywhere (SD-inpainting's objective)."""
  return jnp.mean(jnp.square(target - pred))
