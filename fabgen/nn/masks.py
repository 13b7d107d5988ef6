"""Mask and window operations on images: every model and synthesis method uses these.

A defect is painted into a square window of a larger image at a per-sample offset. Cutting and
putting back windows with `lax.dynamic_slice` under `vmap` keeps shapes static (one jit serves
every offset) and lets networks run on the small window instead of the whole image. Around a
defect mask the models need its margin (`dilate`), the band around its border (`seam_band`) and
the region a generator may repaint (`defect_region`); composites are hard (`paste`).

Value ranges: images are uint8 [0, 255] on disk, float [0, 1] (`to_unit`) for features and
[-1, 1] (`to_signed`) inside the GANs; `to_uint8` rounds back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage


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


def defect_region(mask, margin: int):
  """R = (mask > 0.5) dilated by a (2*margin+1)^2 square: where a defect may be repainted.

  The one definition of the region the fusion network and the inpainter work in, used both by
  the host-side training examples (numpy in, numpy out: grain workers stay free of JAX) and by
  synthesis under jit (jax in, jax out), so a model sees at synthesis the region shape it was
  trained on. Masks are [..., H, W]; the result is float32 in {0, 1}.
  """
  if isinstance(mask, np.ndarray):
    m = (mask > 0.5).astype(np.float32)
    if margin <= 0:
      return m
    k = 2 * margin + 1
    return ndimage.maximum_filter(m, size=(1,) * (m.ndim - 2) + (k, k), mode="constant", cval=0.0)
  m = (mask > 0.5).astype(jnp.float32)
  squeeze = m.ndim == 2
  out = dilate(m[None] if squeeze else m, margin)
  return out[0] if squeeze else out


def paste(background: jax.Array, patch: jax.Array, region: jax.Array) -> jax.Array:
  """Hard composite: `patch` where `region` (in [0, 1], [B, S, S]) else `background`."""
  r = region[..., None].astype(jnp.float32)
  return background.astype(jnp.float32) * (1.0 - r) + patch.astype(jnp.float32) * r


def to_unit(images) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1]; float images (already [0, 1]) pass as float32."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def to_signed(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1] (the GANs' range)."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images: jax.Array) -> jax.Array:
  """float [0, 1] -> uint8, rounded (not truncated) so that unchanged pixels stay unchanged."""
  return jnp.clip(jnp.round(images * 255.0), 0, 255).astype(jnp.uint8)


def signed_to_uint8(images: jax.Array) -> jax.Array:
  """float [-1, 1] -> uint8 (the inverse of `to_signed`, rounded)."""
  return to_uint8((images + 1.0) / 2.0)
