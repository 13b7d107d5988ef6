"""The stage-1 condition: Gram matrices of defect-free texture -> a fixed-size feature vector
-> a learned embedding (plus the defect class) that G and D are conditioned on.

Two steps, split so the expensive one runs once per training example on the host:

1. `GramFeatures` (fixed, no learning): VGG19 taps -> Gram per layer -> each Gram average-pooled
   to at most `pool` x `pool` channel blocks (full Grams of relu4_1 are 512 x 512; pooling keeps
   the co-occurrence structure between channel groups and makes the vector a few thousand long
   instead of 300k; `pool=0` keeps the seed's full Gram) -> upper triangle -> sqrt (Gram
   entries of ReLU features are >= 0 and span orders of magnitude; the square root makes them
   comparable) -> concatenated.
   `kind="diag"` keeps only each Gram's diagonal (per-channel energy), a cheaper ablation.
   The filters: a texture network fabgen trains on FabricSim (`fabgen.texture`), a torchvision
   VGG19 file, or fixed random filters.
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
from fabgen.texture import features as texture_lib

KINDS = ("triangle", "diag")


class GramFeatures:
  """Fixed map uint8/float images [B, H, W, 3] -> float32 features [B, dim] (jittable).

  Filters, best first: `checkpoint` (a texture network trained by fabgen, see
  `fabgen.texture.features`: a workdir or `train:configs/texture.py:<variant>`), `weights` (a
  torchvision VGG19 file), or fixed random filters from `seed`. A checkpoint is read (and for a
  `train:` spec trained) on first use of `params`, so building a task to learn its shapes costs
  nothing.
  """

  def __init__(self, taps: Sequence[str] = vgg.DEFAULT_TAPS, pool: int = 32,
               kind: str = "triangle", weights: str | None = None, seed: int = 0,
               width_scale: float = 1.0, checkpoint: str | None = None):
    if kind not in KINDS:
      raise ValueError(f"condition kind {kind!r} is not one of {KINDS}")
    if weights and checkpoint:
      raise ValueError(f"condition.weights={weights!r} and condition.features_checkpoint="
                       f"{checkpoint!r} both name the feature network; set one")
    if pool < 0:
      raise ValueError(f"condition.pool={pool} must be >= 0 (0 = the full Gram)")
    self.taps, self.pool, self.kind = tuple(taps), int(pool), kind
    self.checkpoint, self.width_scale = checkpoint or "", width_scale
    if self.checkpoint:
      self._params = None  # loaded on first use
      self.description = f"texture:{self.checkpoint}"
    else:
      self._params = jax.tree.map(jnp.asarray,
                                  vgg.load_params(weights, self.taps, seed, width_scale))
      self.description = vgg.describe(weights, seed, width_scale)
    self.pretrained = bool(weights) or bool(self.checkpoint)
    self._jitted = jax.jit(lambda params, x: self.features(params, x))
    # Shapes only: a trained network has the random one's layout (checked when it is loaded).
    shape_params = vgg.random_params(self.taps, seed, width_scale) if self.checkpoint else None
    self.dim = int(jax.eval_shape(
        lambda x: self.features(shape_params or self._params, x),
        jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.uint8)).shape[-1])

  @property
  def params(self) -> dict:
    if self._params is None:
      params, stats, config, workdir = texture_lib.load_vgg(self.checkpoint)
      if (int(config.model.pool), config.model.kind) != (self.pool, self.kind):
        raise ValueError(f"texture features checkpoint {workdir!r} was trained on Gram "
                         f"features pool={config.model.pool}, kind={config.model.kind!r}; "
                         f"this condition uses pool={self.pool}, kind={self.kind!r}")
      expected = vgg.random_params(self.taps, 0, self.width_scale)
      for name, layer in expected.items():
        got = params.get(name)
        if got is None or got["kernel"].shape != layer["kernel"].shape:
          raise ValueError(
              f"texture features checkpoint {workdir!r} (taps {tuple(config.model.taps)}, "
              f"width_scale {config.model.width_scale}) has no {name} of shape "
              f"{layer['kernel'].shape} for condition.taps={self.taps}, "
              f"width_scale={self.width_scale}")
      if tuple(config.model.taps) != self.taps:
        raise ValueError(f"texture features checkpoint {workdir!r} was trained on taps "
                         f"{tuple(config.model.taps)}; this condition uses {self.taps}")
      self._params = jax.tree.map(jnp.asarray, {k: params[k] for k in expected})
      # Standardised with the training fabrics' statistics: the condition embedding then sees
      # unit-scale inputs whatever scale training gave the filters.
      self._params["_standardize"] = {"mean": jnp.asarray(stats["mean"]),
                                      "std": jnp.sqrt(jnp.asarray(stats["var"]) + 1e-6)}
      self.description = f"texture:{workdir}"
    return self._params

  def features(self, params, images) -> jax.Array:
    feats = gram_lib.features_from_grams(
        gram_lib.grams(params, mask_ops.to_unit(images), self.taps), self.pool, self.kind)
    if "_standardize" in params:
      s = params["_standardize"]
      feats = (feats - s["mean"]) / s["std"]
    return feats

  def grams(self, images) -> dict:
    return gram_lib.grams(self.params, mask_ops.to_unit(images), self.taps)

  def __call__(self, images) -> jax.Array:
    return self.features(self.params, images)

  def batched(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Host helper: features of many images, `batch` at a time (pads the last batch)."""
    out = []
    for i in range(0, len(images), batch):
      chunk = np.asarray(images[i:i + batch])
      n = len(chunk)
      if n < batch and len(images) > batch:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
      out.append(np.asarray(self._jitted(self.params, chunk))[:n])
    return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


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
