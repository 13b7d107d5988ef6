"""Where a synthesized defect goes: uniformly, or where defects of its class occur in source data.

Real fabric defects are not uniform over an image: broken ends run along the warp from the
image edge, stains sit anywhere, selvedge faults hug a border. A placement prior is a per-class
histogram of defect *centres* over a `grid x grid` partition of the normalised image, fitted
from labelled source data (any `fabgen.data.sample` records). Sampling picks a cell from the
class's histogram (smoothed with a pseudo-count, so no cell is impossible), a uniform point in
it, and converts that centre into the top-left offset of the `patch_size` window, clipped so the
window lies inside the image. Sampling is pure JAX on per-sample keys, so it jits with the rest.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.data import classes as classes_lib


def uniform_offsets(keys: jax.Array, height: int, width: int, patch_size: int) -> jax.Array:
  """int32 [B, 2] (y0, x0) uniform over all windows that fit inside the image."""
  def one(key):
    ky, kx = jax.random.split(key)
    y0 = jax.random.randint(ky, (), 0, height - patch_size + 1)
    x0 = jax.random.randint(kx, (), 0, width - patch_size + 1)
    return jnp.stack([y0, x0]).astype(jnp.int32)
  return jax.vmap(one)(keys)


class PlacementPrior:
  """Per-class histogram of defect centres on a grid over the unit square."""

  def __init__(self, counts: np.ndarray, pseudo_count: float = 0.5):
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 3 or counts.shape[1] != counts.shape[2]:
      raise ValueError(f"placement counts must be [classes, grid, grid], got {counts.shape}")
    self.counts = counts
    self.pseudo_count = float(pseudo_count)

  @property
  def grid(self) -> int:
    return self.counts.shape[1]

  @classmethod
  def fit(cls, records: Iterable[Mapping[str, np.ndarray]], grid: int = 8,
          num_classes: int = classes_lib.NUM_CLASSES) -> "PlacementPrior":
    """Counts instance centres (mask centroid, normalised by image size) per class."""
    counts = np.zeros((num_classes, grid, grid))
    for rec in records:
      inst = np.asarray(rec["instance_mask"])
      h, w = inst.shape
      for k, cid in enumerate(np.asarray(rec["instance_class"])):
        if cid < 0 or cid >= num_classes:
          continue
        ys, xs = np.nonzero(inst == k + 1)
        if len(ys) == 0:
          continue
        gy = min(int(ys.mean() / h * grid), grid - 1)
        gx = min(int(xs.mean() / w * grid), grid - 1)
        counts[cid, gy, gx] += 1
    return cls(counts)

  def probabilities(self) -> np.ndarray:
    """[classes, grid*grid] smoothed cell probabilities."""
    p = self.counts.reshape(self.counts.shape[0], -1) + self.pseudo_count
    return p / p.sum(axis=1, keepdims=True)

  def sample_offsets(self, keys: jax.Array, class_ids: jax.Array, height: int, width: int,
                     patch_size: int) -> jax.Array:
    """int32 [B, 2] window offsets whose centres follow the class's histogram."""
    logp = jnp.log(jnp.asarray(self.probabilities(), jnp.float32))
    g = self.grid

    def one(key, cid):
      kc, ky, kx = jax.random.split(key, 3)
      cell = jax.random.categorical(kc, logp[cid])
      cy = (cell // g + jax.random.uniform(ky)) / g * height
      cx = (cell % g + jax.random.uniform(kx)) / g * width
      y0 = jnp.clip(jnp.round(cy - patch_size / 2), 0, height - patch_size)
      x0 = jnp.clip(jnp.round(cx - patch_size / 2), 0, width - patch_size)
      return jnp.stack([y0, x0]).astype(jnp.int32)
    return jax.vmap(one)(keys, class_ids)

  def save(self, path: str) -> None:
    """JSON (readable, diffable), written to a temporary name then renamed."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
      json.dump({"grid": self.grid, "pseudo_count": self.pseudo_count,
                 "counts": self.counts.tolist()}, f)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> "PlacementPrior":
    """Reads `save`'s JSON, naming the file and key on malformed input."""
    try:
      with open(path) as f:
        data = json.load(f)
      return cls(np.asarray(data["counts"]), data.get("pseudo_count", 0.5))
    except (OSError, json.JSONDecodeError, KeyError) as e:
      raise ValueError(f"cannot read placement prior {path}: {e!r}") from e


def make_offsets(placement: "PlacementPrior | None", keys: jax.Array, class_ids: jax.Array,
                 height: int, width: int, patch_size: int) -> jax.Array:
  """Uniform offsets when `placement` is None, else the prior's."""
  if placement is None:
    return uniform_offsets(keys, height, width, patch_size)
  return placement.sample_offsets(keys, class_ids, height, width, patch_size)
