"""The stage-1 condition: Gram matrices of defect-free texture -> a fixed-size feature vector
-> a learned embedding (plus the defect class) that G and D are conditioned on.

Two steps, split so the expensive one runs once per training example on the host:

1. `GramFeatures` (fixed, no learning): VGG19 taps -> Gram per layer -> each Gram average-pooled
   to at most `pool` x `pool` channel blocks (full Grams of relu4_1 are 512 x 512; pooling keeps
   the co-occurrence structure between channel groups and makes the vector a few thousand long
   instead of 300k) -> upper triangle -> sqrt (Gram entries of ReLU features are >= 0 and span
   orders of magnitude; the square root makes them comparable) -> concatenated.
   `kind="diag"` keeps only each Gram's diagonal (per-channel energy), a cheaper ablation.
2. `ConditionEmbedding` (learned, part of G and of D): a two-layer MLP of the features plus a
   class embedding, concatenated. G and D each own one (as R3GAN's G and D own their class
   embeddings).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fabgen.nn import gram as gram_lib
from fabgen.nn import masks as mask_ops
from fabgen.nn import r3gan
from fabgen.nn import vgg

KINDS = ("triangle", "diag")


class GramFeatures:
  """Fixed map uint8/float images [B, H, W, 3] -> float32 features [B, dim] (jittable)."""

  def __init__(self, taps: Sequence[str] = vgg.DEFAULT_TAPS, pool: int = 32,
               kind: str = "triangle", weights: str | None = None, seed: int = 0,
               width_scale: float = 1.0):
    if kind not in KINDS:
      raise ValueError(f"condition kind {kind!r} is not one of {KINDS}")
    self.taps, self.pool, self.kind = tuple(taps), int(pool), kind
    self.params = jax.tree.map(jnp.asarray, vgg.load_params(weights, self.taps, seed, width_scale))
    self.description = vgg.describe(weights, seed, width_scale)
    self.pretrained = bool(weights)
    self._jitted = jax.jit(self.__call__)
    self.dim = int(jax.eval_shape(self.__call__, jax.ShapeDtypeStruct((1, 16, 16, 3),
                                                                      jnp.uint8)).shape[-1])

  def grams(self, images) -> dict:
    return gram_lib.grams(self.params, mask_ops.to_unit(images), self.taps)

  def __call__(self, images) -> jax.Array:
    return features_from_grams(self.grams(images), self.pool, self.kind)

  def batched(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Host helper: features of many images, `batch` at a time (pads the last batch)."""
    out = []
    for i in range(0, len(images), batch):
      chunk = np.asarray(images[i:i + batch])
      n = len(chunk)
      if n < batch and len(images) > batch:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
      out.append(np.asarray(self._jitted(chunk))[:n])
    return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def _pool_gram(g: jax.Array, pool: int) -> jax.Array:
  c = g.shape[-1]
  if c <= pool:
    return g
  if c % pool:
    raise ValueError(f"Gram of {c} channels cannot be pooled into {pool} blocks")
  f = c // pool
  return g.reshape(g.shape[0], pool, f, pool, f).mean(axis=(2, 4))


def features_from_grams(grams: dict, pool: int, kind: str) -> jax.Array:
  """{tap: [B, C, C]} -> [B, dim] (see the module docstring)."""
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


class ConditionEmbedding(nnx.Module):
  """(gram features [B, F], class ids [B]) -> [B, gram_dim + class_dim] conditioning vector."""

  def __init__(self, feature_dim: int, gram_dim: int = 128, num_classes: int = 6,
               class_dim: int = 32, hidden: int = 256, *, rngs: nnx.Rngs):
    self.fc1 = r3gan.Conv1x1(feature_dim, hidden, rngs=rngs)
    self.fc2 = r3gan.Conv1x1(hidden, gram_dim, rngs=rngs)
    self.num_classes = num_classes
    self.classes = nnx.Param(jax.random.normal(rngs.params(), (num_classes, class_dim)))
    self.dim = gram_dim + class_dim

  def __call__(self, feats, class_ids):
    h = self.fc2(r3gan.act(self.fc1(feats)))
    return jnp.concatenate([h, jnp.take(jnp.asarray(self.classes[...]), class_ids, 0)], -1)
