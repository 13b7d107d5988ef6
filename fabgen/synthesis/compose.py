"""Window operations shared by every method: cut a window, paste into it, put it back.

All methods paint a defect into a `patch_size` square of a larger background at a per-sample
offset. Doing that with `lax.dynamic_slice` under `vmap` keeps shapes static (so one jit serves
every offset) and lets networks run on the small window instead of the whole image, which is
most of the speed of synthesis at 256x256 and above.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def crop_windows(images: jax.Array, offsets: jax.Array, size: int) -> jax.Array:
  """[B, H, W, C] images, int32 [B, 2] (y0, x0) -> [B, size, size, C] windows."""
  def one(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                 (size, size, image.shape[-1]))
  return jax.vmap(one)(images, offsets)


def put_windows(images: jax.Array, windows: jax.Array, offsets: jax.Array) -> jax.Array:
  """Writes [B, S, S, C] windows back into [B, H, W, C] images at (y0, x0) offsets."""
  def one(image, window, offset):
    return jax.lax.dynamic_update_slice(image, window.astype(image.dtype),
                                        (offset[0], offset[1], 0))
  return jax.vmap(one)(images, windows, offsets)


def dilate(mask: jax.Array, radius: int) -> jax.Array:
  """Max-filter a [B, H, W] mask with a (2r+1)^2 square: the seam band / margin of a defect."""
  if radius <= 0:
    return mask
  k = 2 * radius + 1
  return jax.lax.reduce_window(mask, jnp.array(-jnp.inf, mask.dtype), jax.lax.max,
                               (1, k, k), (1, 1, 1), "SAME")


def erode(mask: jax.Array, radius: int) -> jax.Array:
  """Min-filter counterpart of `dilate` (the inner edge of a seam band)."""
  if radius <= 0:
    return mask
  return -dilate(-mask, radius)


def seam_band(mask: jax.Array, radius: int) -> jax.Array:
  """Pixels within `radius` of the border of a binary [B, H, W] mask (inside or outside)."""
  m = (mask > 0.5).astype(jnp.float32)
  return dilate(m, radius) - erode(m, radius)


def paste(background: jax.Array, patch: jax.Array, region: jax.Array) -> jax.Array:
  """Hard composite: `patch` where `region` (in [0, 1], [B, S, S]) else `background`."""
  r = region[..., None].astype(jnp.float32)
  return background.astype(jnp.float32) * (1.0 - r) + patch.astype(jnp.float32) * r


def to_unit(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def to_uint8(images: jax.Array) -> jax.Array:
  """float [0, 1] -> uint8, rounded (not truncated) so that unchanged pixels stay unchanged."""
  return jnp.clip(jnp.round(images * 255.0), 0, 255).astype(jnp.uint8)


def resize_patches(patches: jax.Array, size: int) -> jax.Array:
  """Bilinear resize of [B, P, P, C] patches to [B, size, size, C] (no-op when already there)."""
  if patches.shape[1] == size and patches.shape[2] == size:
    return patches
  b, _, _, c = patches.shape
  return jax.image.resize(patches, (b, size, size, c), "bilinear")
