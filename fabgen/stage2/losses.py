"""Seam-weighted adversarial objectives for patch discriminators (stage 2 and single-stage).

D_T returns a logit map; each location's loss is weighted by `1 + seam_weight` inside the band
around the window border and 1 elsewhere, so the discriminator (and hence T) attends to the seam,
where pasted defects are visible. Two objectives, switched by name:

* `"nsgan"` - the paper's objective, E[log D(y)] + E[log(1 - D(T(x)))], written with
  softplus on logits; T minimises the non-saturating form -log D(T(x)).
* `"rpgan"` - R3GAN's relativistic pairing, f(D(fake) - D(real)) with f = softplus, paired per
  location, plus zero-centred gradient penalties R1 (real) and R2 (fake) applied by the task.

The per-location functions are the standard ones; what is stage-2 specific is the weighting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import reduce

from fabgen.synthesis import compose

OBJECTIVES = ("nsgan", "rpgan")


def seam_weights(window: jax.Array, logits_shape, radius: int, seam_weight: float) -> jax.Array:
  """[B, h, w] weights at logit resolution: 1 + seam_weight * (fraction of seam band in cell)."""
  band = compose.seam_band(window, radius)
  b, h, w = logits_shape
  fy, fx = window.shape[1] // h, window.shape[2] // w
  band = reduce(band, "b (h fy) (w fx) -> b h w", "mean", fy=fy, fx=fx)
  return 1.0 + seam_weight * band


def _wmean(values, weights):
  return jnp.sum(values * weights) / jnp.sum(weights)


def d_loss(objective: str, real_logits, fake_logits, weights) -> jax.Array:
  """The discriminator's loss (to minimise)."""
  if objective == "nsgan":
    return _wmean(jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits), weights)
  if objective == "rpgan":
    return _wmean(jax.nn.softplus(fake_logits - real_logits), weights)
  raise ValueError(f"unknown adversarial objective {objective!r}; known: {OBJECTIVES}")


def g_loss(objective: str, real_logits, fake_logits, weights) -> jax.Array:
  """The generator's (T's) adversarial loss (to minimise)."""
  if objective == "nsgan":
    return _wmean(jax.nn.softplus(-fake_logits), weights)
  if objective == "rpgan":
    return _wmean(jax.nn.softplus(real_logits - fake_logits), weights)
  raise ValueError(f"unknown adversarial objective {objective!r}; known: {OBJECTIVES}")


def gradient_penalty(d_fn, images, weights) -> jax.Array:
  """Zero-centred penalty E ||d/dx sum(w * D(x))||^2 (R1 on reals, R2 on fakes), per image."""
  grads = jax.grad(lambda im: jnp.sum(d_fn(im) * weights))(images)
  return jnp.mean(jnp.sum(grads ** 2, axis=(1, 2, 3)))
