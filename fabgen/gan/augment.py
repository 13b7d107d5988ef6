"""ADA-style differentiable augmentation of everything a discriminator sees (Karras et al. 2020,
"Training GANs with limited data"; R3GAN trains its small-data configs with it).

On a few thousand defect patches D memorises the training set; augmenting *both* real and fake
images with the same random distribution, before D and inside the gradient path, hides that
without leaking into G (G is pushed to match the un-augmented distribution as long as the
probability stays well below ~0.8). Each transform is applied to each sample independently with
probability `p`, which follows a schedule (`probability_schedule`; R3GAN at 64x64: cosine 0 -> 0.3).

Geometric transforms (x-flip, 90-degree rotations, integer translation, isotropic scaling,
arbitrary rotation, anisotropic scaling, fractional translation) compose one 2x3 affine map per
sample, applied by one bilinear resampling with mirrored borders to *every* channel (image and
mask move together). Colour transforms (brightness, contrast, saturation) change only the first
`color_channels` channels (the signed RGB), never a mask. A sample drawn no transform is returned
bit-exactly, so p = 0 is the identity. Everything is jittable and differentiable in the images
(R1/R2 and G's gradient flow through it, to second order: the resampling is linear in the image).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import optax
from jax.scipy import ndimage

GEOMETRIC = ("xflip", "rotate90", "translate", "scale", "rotate", "aniso", "fraction")
COLOR = ("brightness", "contrast", "saturation")
TRANSFORMS = GEOMETRIC + COLOR
DEFAULT = TRANSFORMS  # ADA's "bgc" set, without hue rotation and luma flip (colour identity is
                      # what the texture condition describes)

# Strengths as in ADA: translations in fractions of the image size, log-normal scales.
TRANSLATE_MAX = 0.125
SCALE_STD = 0.2          # log2 of the isotropic scale
ANISO_STD = 0.2          # log2 of the anisotropic scale
FRACTION_STD = 0.125     # fractional translation, fraction of the size
BRIGHTNESS_STD = 0.2     # additive, in the signed [-1, 1] range
CONTRAST_STD = 0.5       # log2 of the contrast factor
SATURATION_STD = 1.0     # log2 of the saturation factor


def check_transforms(transforms: Sequence[str]) -> tuple[str, ...]:
  transforms = tuple(transforms)
  bad = [t for t in transforms if t not in TRANSFORMS]
  if bad:
    raise ValueError(f"unknown augmentation {bad}; known: {', '.join(TRANSFORMS)}")
  return transforms


def probability_schedule(start: float, end: float, steps: int) -> optax.Schedule:
  """p(step): half-cosine from `start` to `end` over `steps`, then `end` (R3GAN: 0 -> 0.3)."""
  if steps <= 0:
    raise ValueError(f"augmentation schedule needs steps > 0, got {steps}")

  def schedule(step):
    t = jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))

  return schedule


def _affine(key, p, size, transforms):
  """Per-sample 2x3 map from output pixel (y, x) to input pixel, and whether it is non-trivial."""
  keys = jax.random.split(key, 2 * len(GEOMETRIC))
  draw = lambda i: jax.random.uniform(keys[2 * i]) < p        # is transform i applied?
  val = lambda i, fn: fn(keys[2 * i + 1])
  m = jnp.eye(3)
  used = jnp.zeros((), bool)

  def compose(m, used, on, t):
    return jnp.where(on, t @ m, m), used | on

  for i, name in enumerate(GEOMETRIC):
    if name not in transforms:
      continue
    on = draw(i)
    if name == "xflip":
      t = jnp.diag(jnp.array([1.0, -1.0, 1.0]))
    elif name == "rotate90":
      k = val(i, lambda k: jax.random.randint(k, (), 1, 4)).astype(jnp.float32)
      c, s = jnp.round(jnp.cos(k * math.pi / 2)), jnp.round(jnp.sin(k * math.pi / 2))
      t = jnp.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    elif name == "translate":
      d = jnp.round(val(i, lambda k: jax.random.uniform(k, (2,), minval=-1, maxval=1))
                    * TRANSLATE_MAX * size)
      t = jnp.array([[1.0, 0.0, d[0]], [0.0, 1.0, d[1]], [0.0, 0.0, 1.0]])
    elif name == "scale":
      s = 2.0 ** (val(i, jax.random.normal) * SCALE_STD)
      t = jnp.diag(jnp.array([s, s, 1.0]))
    elif name == "rotate":
      a = val(i, lambda k: jax.random.uniform(k, minval=-math.pi, maxval=math.pi))
      t = jnp.array([[jnp.cos(a), -jnp.sin(a), 0.0], [jnp.sin(a), jnp.cos(a), 0.0],
                     [0.0, 0.0, 1.0]])
    elif name == "aniso":
      s = 2.0 ** (val(i, jax.random.normal) * ANISO_STD)
      t = jnp.diag(jnp.array([s, 1.0 / s, 1.0]))
    else:  # fraction
      d = val(i, lambda k: jax.random.normal(k, (2,))) * FRACTION_STD * size
      t = jnp.array([[1.0, 0.0, d[0]], [0.0, 1.0, d[1]], [0.0, 0.0, 1.0]])
    m, used = compose(m, used, on, t)
  return m, used


def _warp(x, m):
  """x [S, S, C] sampled at m (output -> input, about the image centre), bilinear, mirrored."""
  s = x.shape[0]
  centre = (s - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(s, dtype=jnp.float32) - centre,
                        jnp.arange(s, dtype=jnp.float32) - centre, indexing="ij")
  src = m[:2, :2] @ jnp.stack([yy.ravel(), xx.ravel()]) + m[:2, 2:]
  coords = [src[0].reshape(s, s) + centre, src[1].reshape(s, s) + centre]
  sample = lambda ch: ndimage.map_coordinates(ch, coords, order=1, mode="mirror")
  return jax.vmap(sample, in_axes=-1, out_axes=-1)(x)


def _color(key, x, p, transforms, channels):
  rgb, rest = x[..., :channels], x[..., channels:]
  keys = jax.random.split(key, 2 * len(COLOR))
  for i, name in enumerate(COLOR):
    if name not in transforms:
      continue
    on = jax.random.uniform(keys[2 * i]) < p
    v = jax.random.normal(keys[2 * i + 1])
    if name == "brightness":
      new = rgb + v * BRIGHTNESS_STD
    elif name == "contrast":
      mean = jnp.mean(rgb, keepdims=True)
      new = mean + (rgb - mean) * 2.0 ** (v * CONTRAST_STD)
    else:  # saturation: about each pixel's grey value
      grey = jnp.mean(rgb, -1, keepdims=True)
      new = grey + (rgb - grey) * 2.0 ** (v * SATURATION_STD)
    rgb = jnp.where(on, new, rgb)
  return jnp.concatenate([rgb, rest], -1)


def augment(key: jax.Array, x: jax.Array, p, transforms: Sequence[str] = DEFAULT,
            color_channels: int = 3) -> jax.Array:
  """x [B, S, S, C] (signed image channels first, then e.g. a mask) -> augmented, same shape.

  `p` (traced) is the per-transform, per-sample probability. One key gives one augmentation of
  the batch: pass the same key to see the same transforms (e.g. real and fake halves of a batch
  get independent draws because they are different rows).
  """
  transforms = check_transforms(transforms)
  if x.ndim != 4 or x.shape[1] != x.shape[2]:
    raise ValueError(f"augment expects square NHWC images, got {x.shape}")
  keys = jax.random.split(key, x.shape[0])
  geometric = any(t in GEOMETRIC for t in transforms)
  color = any(t in COLOR for t in transforms)

  def one(k, img):
    k_geo, k_col = jax.random.split(k)
    if geometric:
      m, used = _affine(k_geo, p, img.shape[0], transforms)
      img = jnp.where(used, _warp(img, m), img)
    if color:
      img = _color(k_col, img, p, transforms, min(color_channels, img.shape[-1]))
    return img

  return jax.vmap(one)(keys, x)
