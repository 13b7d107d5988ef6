"""What is stage-2 specific in the losses: seam-band weighting and the out-of-window terms.

The adversarial objectives and the R1/R2 penalties are the shared ones (`fabgen.gan.losses`:
the paper's log-loss `nsgan`, R3GAN's `rpgan`, `hinge`, `wgan`), called with per-location
weights. This module supplies those weights and the terms that keep T's change where it belongs:

* `seam_weights`: D_T returns a logit map; each location's loss is weighted in proportion to
  `1 + seam_weight * (share of the seam band in its cell)`, so D (and hence T) attends to the
  band around the window border, where pasted defects are visible.
* `outside_l1`: mean |T(x) - x| outside dilate(window, radius): T must not repaint the fabric.
* `out_of_mask_share`: the share of T's total change that lies outside that dilated window,
  the quantity held below `task.OUT_OF_MASK_BOUND`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import reduce

from fabgen.nn import masks as mask_ops


def seam_weights(window: jax.Array, logits_shape, radius: int, seam_weight: float) -> jax.Array:
  """[B, h, w] weights at logit resolution, proportional to 1 + seam_weight * (seam share)."""
  band = mask_ops.seam_band(window, radius)
  _, h, w = logits_shape
  fy, fx = window.shape[1] // h, window.shape[2] // w
  band = reduce(band, "b (h fy) (w fx) -> b h w", "mean", fy=fy, fx=fx)
  w = 1.0 + seam_weight * band
  # Each image's weights sum to 1: weighted means are unchanged, and R1/R2 (whose cotangents are
  # these weights) penalise the gradient of one weighted-mean logit per image, as for an R3GAN
  # D with a single logit, whatever the size of the logit map.
  return w / jnp.sum(w, axis=(1, 2), keepdims=True)


def outside(window: jax.Array, radius: int) -> jax.Array:
  """[B, H, W] float: 1 outside dilate(window > 0.5, radius), where T must leave x unchanged."""
  return 1.0 - mask_ops.defect_region(window, radius)


def outside_l1(out: jax.Array, x: jax.Array, window: jax.Array, radius: int) -> jax.Array:
  """Mean |out - x| per channel over the pixels outside the dilated window."""
  o = outside(window, radius)
  return jnp.sum(jnp.abs(out - x) * o[..., None]) / (
      out.shape[-1] * jnp.maximum(jnp.sum(o), 1.0))


def out_of_mask_share(change: jax.Array, window: jax.Array, radius: int) -> jax.Array:
  """Share of sum|change| (change [B,H,W,C]) outside dilate(window, radius)."""
  total = jnp.sum(jnp.abs(change))
  return jnp.sum(jnp.abs(change) * outside(window, radius)[..., None]) / jnp.maximum(total, 1e-8)
