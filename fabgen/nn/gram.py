"""Gram matrices of feature maps: the texture statistics that condition stage 1.

`G_j(x) = psi_j psi_j^T / (C_j H_j W_j)` with `psi_j` the layer-j activation reshaped to
`C_j x H_j W_j` (the design brief's equation). Spatial averaging removes *where* things are and
keeps *which features co-occur*, which is what texture is; that is why a defect patch can be
conditioned on the Gram of the surrounding defect-free fabric.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange

from fabgen.nn import vgg


def gram(feat: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, C, C] = psi psi^T / (C H W)."""
  b, h, w, c = feat.shape
  psi = rearrange(feat.astype(jnp.float32), "b h w c -> b c (h w)")
  return jnp.einsum("bci,bdi->bcd", psi, psi) / (c * h * w)


def grams(params: Mapping, images: jax.Array,
          taps: Sequence[str] = vgg.DEFAULT_TAPS) -> dict[str, jax.Array]:
  """{tap: [B, C_j, C_j]} Gram matrices of VGG19 features of images [B, H, W, 3] in [0, 1]."""
  return {t: gram(f) for t, f in vgg.features(params, images, taps).items()}


def layer_scales(grams: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Mean Frobenius norm per layer over a set of Grams: a common yardstick for distances."""
  return {k: jnp.mean(jnp.sqrt(jnp.sum(jnp.square(g), axis=(1, 2)))) for k, g in grams.items()}


def gram_distance(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array],
                  scales: Mapping[str, jax.Array] | None = None) -> jax.Array:
  """Per-example texture distance [B]: sum over layers of ||G_a - G_b||_F / scale_layer.

  Dividing makes layers of different magnitude count alike (Gram entries shrink with depth).
  The default scale is ||G_b||_F per example (relative distance to b); to *compare* distances
  to different targets (is x closer to A or to B?), pass one common `scales` (`layer_scales`),
  or the comparison is biased towards the target with the larger norm.
  """
  total = 0.0
  for k in a:
    diff = jnp.sqrt(jnp.sum(jnp.square(a[k] - b[k]), axis=(1, 2)))
    scale = (jnp.sqrt(jnp.sum(jnp.square(b[k]), axis=(1, 2))) if scales is None
             else scales[k])
    total = total + diff / jnp.maximum(scale, 1e-12)
  return total


def _pool_gram(g: jax.Array, pool: int) -> jax.Array:
  c = g.shape[-1]
  if pool <= 0 or c <= pool:  # 0: the seed's full Gram
    return g
  if c % pool:
    raise ValueError(f"Gram of {c} channels cannot be pooled into {pool} blocks")
  f = c // pool
  return g.reshape(g.shape[0], pool, f, pool, f).mean(axis=(2, 4))


def features_from_grams(grams: dict, pool: int, kind: str) -> jax.Array:
  """{tap: [B, C, C]} -> [B, dim]: per tap the (block-pooled, `pool` 0 = the full) Gram's
  upper triangle (`kind` "full") or diagonal ("diag"), square-rooted (the condition features)."""
  parts = []
  for tap in sorted(grams):
    g = _pool_gram(grams[tap], pool)
    c = g.shape[-1]
    if kind == "diag":
      v = jnp.diagonal(g, axis1=1, axis2=2)
    else:
      iu = np.triu_indices(c)
      v = g[:, iu[0], iu[1]]
    parts.append(jnp.sqrt(jnp.maximum(v, 0.0) + 1e-8))
  return jnp.concatenate(parts, -1)
