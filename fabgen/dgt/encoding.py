"""DGT's generator input: class and position encodings, smoothed by random Gaussian kernels.

From the note: E_fore = one-hot y in R^{1xS} broadcast to H x W x S, E_back = ones H x W x 1,
both multiplied by the binary defect mask M; then E~_fore = w_d (G(k_d) (.) E^_fore) and
E~_back = w_n (G(k_n) (.) E^_back), where G(k) is a Gaussian filter with a random kernel and
w_d, w_n are random weights. The generator sees [E~_fore, E~_back, N] (S + 1 + 3 channels).

Reading chosen (the note gives no ranges): per sample, each of the two encodings gets its own
kernel width sigma ~ U(sigma_min, sigma_max) pixels (a fixed support of 2*ceil(3*sigma_max)+1
taps, so shapes stay static under jit) and its own weight w ~ U(w_min, w_max). Randomness comes
from per-sample keys, so a sample's encoding does not depend on the batch it is in.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Smoothing:
  """Ranges of the random Gaussian width (pixels) and of the weights w_d, w_n."""
  sigma_min: float = 0.5
  sigma_max: float = 2.0
  w_min: float = 0.8
  w_max: float = 1.0

  def __post_init__(self):
    if not 0.0 < self.sigma_min <= self.sigma_max:
      raise ValueError(f"smoothing: need 0 < sigma_min <= sigma_max, got {self.sigma_min}, "
                       f"{self.sigma_max}")
    if not 0.0 <= self.w_min <= self.w_max <= 1.0:
      raise ValueError(f"smoothing: need 0 <= w_min <= w_max <= 1, got {self.w_min}, "
                       f"{self.w_max}")

  @property
  def radius(self) -> int:
    return int(math.ceil(3.0 * self.sigma_max))


def label_encodings(mask: jax.Array, class_index: jax.Array, num_classes: int):
  """E^_fore = M * onehot(y) [B, H, W, S] and E^_back = M * 1 [B, H, W, 1].

  `mask` [B, H, W] in {0, 1}; `class_index` int [B] in [0, num_classes).
  """
  onehot = jax.nn.one_hot(class_index, num_classes, dtype=jnp.float32)  # [B, S]
  m = mask.astype(jnp.float32)[..., None]
  return m * onehot[:, None, None, :], m


def gaussian_kernel(sigma: jax.Array, radius: int) -> jax.Array:
  """Normalised 1-D Gaussian taps [2r+1] of width `sigma` (traceable in sigma)."""
  x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (x / sigma) ** 2)
  return k / jnp.sum(k)


def blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
  """Separable Gaussian blur of one [H, W, C] map (zero padding: outside the frame is no defect)."""
  k = gaussian_kernel(sigma, radius)
  c = image.shape[-1]
  x = image[None]
  dn = ("NHWC", "HWIO", "NHWC")
  kh = jnp.tile(k[:, None, None, None], (1, 1, 1, c))
  kw = jnp.tile(k[None, :, None, None], (1, 1, 1, c))
  pad = [(radius, radius)]
  x = jax.lax.conv_general_dilated(x, kh, (1, 1), pad + [(0, 0)], dimension_numbers=dn,
                                   feature_group_count=c)
  x = jax.lax.conv_general_dilated(x, kw, (1, 1), [(0, 0)] + pad, dimension_numbers=dn,
                                   feature_group_count=c)
  return x[0]


def draw(key: jax.Array, smoothing: Smoothing) -> dict[str, jax.Array]:
  """One sample's random smoothing: sigma_d, sigma_n, w_d, w_n (scalars)."""
  ks, kw = jax.random.split(key)
  sig = jax.random.uniform(ks, (2,), minval=smoothing.sigma_min, maxval=smoothing.sigma_max)
  w = jax.random.uniform(kw, (2,), minval=smoothing.w_min, maxval=smoothing.w_max)
  return {"sigma_d": sig[0], "sigma_n": sig[1], "w_d": w[0], "w_n": w[1]}


def smooth_encodings(e_fore: jax.Array, e_back: jax.Array, keys: jax.Array,
                     smoothing: Smoothing):
  """E~_fore = w_d G(k_d)(.)E^_fore, E~_back = w_n G(k_n)(.)E^_back with per-sample `keys` [B]."""
  r = smoothing.radius

  def one(ef, eb, key):
    p = draw(key, smoothing)
    return p["w_d"] * blur(ef, p["sigma_d"], r), p["w_n"] * blur(eb, p["sigma_n"], r)

  return jax.vmap(one)(e_fore, e_back, keys)


def generator_input(clean: jax.Array, mask: jax.Array, class_index: jax.Array, keys: jax.Array,
                    num_classes: int, smoothing: Smoothing):
  """X^ = [E~_fore, E~_back, N] [B, H, W, S+1+3] and the smoothed encodings themselves.

  `clean` is N in [0, 1], [B, H, W, 3]. Returns (x_hat, e_fore_s, e_back_s).
  """
  ef, eb = label_encodings(mask, class_index, num_classes)
  ef_s, eb_s = smooth_encodings(ef, eb, keys, smoothing)
  return jnp.concatenate([ef_s, eb_s, clean.astype(jnp.float32)], -1), ef_s, eb_s
