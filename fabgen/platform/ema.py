"""Exponential moving average of parameters with a half-life counted in images.

Counting the half-life in images (not steps) makes the averaging horizon independent of the
batch size, as in StyleGAN/R3GAN; the ramp shortens it early in training, when old weights are
worthless, to at most `ramp * images_seen`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ema_decay(step, batch_size: int, half_life_images: float, ramp: float | None = 0.05):
  """Per-step decay beta = 0.5 ** (batch_size / half_life), half-life ramped by images seen."""
  half_life = jnp.asarray(half_life_images, jnp.float32)
  if ramp is not None:
    seen = (jnp.asarray(step, jnp.float32) + 1.0) * batch_size
    half_life = jnp.minimum(half_life, seen * ramp)
  return 0.5 ** (batch_size / jnp.maximum(half_life, 1e-8))


def ema_update(ema_params, params, decay):
  """ema <- decay * ema + (1 - decay) * params, leaf by leaf (non-float leaves are copied)."""
  def update(e, p):
    if not jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating):
      return p
    return (decay * e + (1.0 - decay) * p).astype(e.dtype)
  return jax.tree.map(update, ema_params, params)
