"""Interpolative 2x resampling with the [1, 2, 1] low-pass filter (R3GAN's resampling).

R3GAN replaces strided/transposed convolutions by fixed low-pass resampling, so that changes of
resolution do not alias and add no parameters; a 1x1 conv beside it changes the width. Both
operations here are written as shifted slices and adds (not as depthwise convolutions): on
XLA:CPU a depthwise conv is a grouped conv with the slow gradient `grouped_conv` works around,
while slices and adds differentiate to slices and adds, to any order (R1/R2 need the second).

* `downsample2x`: y[i] = (x[2i-1] + 2 x[2i] + x[2i+1]) / 4 per axis, edge-replicated border.
* `upsample2x`:   y[2i] = x[i], y[2i+1] = (x[i] + x[i+1]) / 2 per axis (zero-insertion filtered
  by [1, 2, 1] / 2, i.e. linear interpolation), edge-replicated border.
NHWC throughout; H and W must be even for the downsampler.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _down_axis(x: jax.Array, axis: int) -> jax.Array:
  n = x.shape[axis]
  if n % 2:
    raise ValueError(f"downsample2x needs an even size, got {n} on axis {axis} of {x.shape}")
  even = jax.lax.slice_in_dim(x, 0, n, 2, axis)
  odd = jax.lax.slice_in_dim(x, 1, n, 2, axis)
  # x[2i-1] for i = 0 is replicated from x[0].
  prev_odd = jnp.concatenate([jax.lax.slice_in_dim(x, 0, 1, 1, axis),
                              jax.lax.slice_in_dim(odd, 0, n // 2 - 1, 1, axis)], axis)
  return 0.25 * prev_odd + 0.5 * even + 0.25 * odd


def _up_axis(x: jax.Array, axis: int) -> jax.Array:
  n = x.shape[axis]
  nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, 1, axis),
                         jax.lax.slice_in_dim(x, n - 1, n, 1, axis)], axis)
  mid = 0.5 * (x + nxt)
  out = jnp.stack([x, mid], axis=axis + 1)
  shape = list(x.shape)
  shape[axis] = 2 * n
  return out.reshape(shape)


def downsample2x(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, C], low-pass filtered by [1, 2, 1] / 4 per axis."""
  return _down_axis(_down_axis(x, 1), 2)


def upsample2x(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C] by linear ([1, 2, 1]-filtered) interpolation."""
  return _up_axis(_up_axis(x, 1), 2)


def resize_to(x: jax.Array, size: int) -> jax.Array:
  """Repeated 2x down/up-sampling of a square NHWC map to `size` (a power-of-two ratio)."""
  while x.shape[1] > size:
    x = downsample2x(x)
  while x.shape[1] < size:
    x = upsample2x(x)
  if x.shape[1] != size:
    raise ValueError(f"resize_to: {x.shape[1]} -> {size} is not a power-of-two ratio")
  return x
