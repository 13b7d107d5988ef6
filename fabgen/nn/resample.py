"""Interpolative 2x resampling with R3GAN's [1, 3, 3, 1] low-pass filter, half-pixel centred.

R3GAN replaces strided/transposed convolutions by fixed low-pass resampling, so that changes of
resolution do not alias and add no parameters; a 1x1 conv beside it changes the width. Its filter
is [1, 2, 1] convolved with [1, 1] = [1, 3, 3, 1] (normalised; outer product in 2D), applied as
upfirdn: every output pixel sits *between* two input pixels, so a level of down- then upsampling
moves nothing (the old [1, 2, 1]-at-even-pixels filter shifted the image half a pixel per level).
Per axis:

* `downsample2x`: y[i] = (x[2i-1] + 3 x[2i] + 3 x[2i+1] + x[2i+2]) / 8, centred at 2i + 1/2;
* `upsample2x`:   y[2i] = (x[i-1] + 3 x[i]) / 4, y[2i+1] = (3 x[i] + x[i+1]) / 4, i.e. output
  pixel j sits at input coordinate (j - 1/2) / 2 (bilinear, half-pixel centred).

In the interior `upsample2x` is exactly 4 x the adjoint of `downsample2x` (2 per axis), which
is how upfirdn2d relates them. Borders: the reference pads with zeros (the CUDA upfirdn2d) or
reflects (its pure-PyTorch reference); here the edge pixel is replicated, so a constant image
stays constant at every scale. Interior values are the reference's exactly.

Written as shifted slices and adds (not as depthwise convolutions): on XLA:CPU a depthwise conv
is a grouped conv with the slow gradient `grouped_conv` works around, while slices and adds
differentiate to slices and adds, to any order (R1/R2 need the second). NHWC; H and W must be
even for the downsampler.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

FILTER = (1.0, 3.0, 3.0, 1.0)  # [1, 2, 1] * [1, 1], normalised by its sum per axis


def _shift(x: jax.Array, axis: int, by: int) -> jax.Array:
  """x[i + by] along `axis` with the edge pixel replicated past either end (|by| = 1)."""
  n = x.shape[axis]
  if by == 1:
    return jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, 1, axis),
                            jax.lax.slice_in_dim(x, n - 1, n, 1, axis)], axis)
  return jnp.concatenate([jax.lax.slice_in_dim(x, 0, 1, 1, axis),
                          jax.lax.slice_in_dim(x, 0, n - 1, 1, axis)], axis)


def _down_axis(x: jax.Array, axis: int) -> jax.Array:
  n = x.shape[axis]
  if n % 2:
    raise ValueError(f"downsample2x needs an even size, got {n} on axis {axis} of {x.shape}")
  even = jax.lax.slice_in_dim(x, 0, n, 2, axis)   # x[2i]
  odd = jax.lax.slice_in_dim(x, 1, n, 2, axis)    # x[2i+1]
  a, b, c, d = FILTER
  # x[2i-1] = odd[i-1] and x[2i+2] = even[i+1], edge-replicated at i = 0 and the last i.
  return (a * _shift(odd, axis, -1) + b * even + c * odd + d * _shift(even, axis, 1)) / sum(FILTER)


def _up_axis(x: jax.Array, axis: int) -> jax.Array:
  n = x.shape[axis]
  a, b, c, d = FILTER
  # Zero-insertion then the filter (gain 2): the two phases of the 4-tap filter.
  first = (a * _shift(x, axis, -1) + c * x) / (a + c)    # output 2i
  second = (b * x + d * _shift(x, axis, 1)) / (b + d)    # output 2i + 1
  out = jnp.stack([first, second], axis=axis + 1)
  shape = list(x.shape)
  shape[axis] = 2 * n
  return out.reshape(shape)


def downsample2x(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, C], low-pass filtered by [1, 3, 3, 1] / 8 per axis."""
  return _down_axis(_down_axis(x, 1), 2)


def upsample2x(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], [1, 3, 3, 1]-filtered (half-pixel-centred bilinear)."""
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
