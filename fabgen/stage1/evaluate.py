"""Stage-1 evaluation: KID, Gram distance to the condition, the conditioning check, sample grids.

* KID (kernel inception distance, unbiased MMD^2 with the cubic polynomial kernel) between
  generated and held-out real patches, overall and per class. No Inception weights can be had
  here, so the feature network is the project's own: the stage-1 conditioner's VGG19 (the fixed
  random-filter one unless a weights file was given; `cond/pretrained_vgg` says which), each tap's
  spatial mean and standard deviation concatenated. Numbers are comparable between runs that
  share that network, not with published KIDs.
* Gram distance (`fabgen.nn.gram.gram_distance`) between each generated patch and the
  defect-free texture it was conditioned on, next to the same distance for the real patch
  (`gram_dist/real`): the generator should land near what real defect patches score.
* Conditioning check: for pairs of examples from different fabrics A, B, generate with A's
  condition; the share of pairs where the patch is closer in Gram space to A's texture than to
  B's (`cond_check`, 1.0 = always, 0.5 = chance).
* Sample grid: one row per fabric: the defect-free texture, a real patch, then noise draws
  (patch over mask strip), as a uint8 image for PNG and TensorBoard.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from fabgen.data import classes as classes_lib
from fabgen.nn import gram as gram_lib
from fabgen.nn import vgg


def kid(a: np.ndarray, b: np.ndarray) -> float:
  """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (Binkowski et al., 2018)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or len(b) < 2:
    return float("nan")
  d = a.shape[1]
  kxx, kyy, kxy = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
  m, n = len(a), len(b)
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) +
               (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def kid_features(conditioner, images_unit) -> jax.Array:
  """[B, F]: per-tap spatial mean and std of the conditioner's VGG19 features."""
  feats = vgg.features(conditioner.params, images_unit, conditioner.taps)
  parts = []
  for t in sorted(feats):
    f = feats[t]
    parts += [jnp.mean(f, (1, 2)), jnp.std(f, (1, 2))]
  return jnp.concatenate(parts, -1)


def generate_batched(task, params, cond, class_ids, clean, rng, batch: int):
  """Generated (rgb in [0, 1], mask) for every row of cond/class_ids/clean, `batch` at a time."""
  m = task.config.model

  @jax.jit
  def run(cond, cls, clean, key):
    z = jax.random.normal(key, (cond.shape[0], m.noise_dim))
    rgb, mask = task.generate(params, z, cond, cls, clean.astype(jnp.float32) / 127.5 - 1.0)
    if mask is None:  # R3GAN's own generator paints no mask
      mask = jnp.zeros(rgb.shape[:3])
    return (rgb + 1.0) * 0.5, mask

  rgbs, masks = [], []
  n = len(cond)
  for i in range(0, n, batch):
    idx = np.arange(i, i + batch) % n  # fixed shapes: wrap the last batch
    rgb, mask = run(cond[idx], class_ids[idx], clean[idx], jax.random.fold_in(rng, i))
    k = min(batch, n - i)
    rgbs.append(np.asarray(rgb)[:k])
    masks.append(np.asarray(mask)[:k])
  return np.concatenate(rgbs), np.concatenate(masks)


def _grams(task, images_unit):
  return jax.jit(lambda x: gram_lib.grams(task.conditioner.params, x, task.conditioner.taps))(
      images_unit)


def conditioning_check(task, params, examples, rng, batch: int, max_pairs: int = 256) -> float:
  """Share of cross-fabric pairs (A, B) where G(cond_A) is closer in Gram space to A than B."""
  fabrics = examples.fabric_ids
  pairs = [(i, j) for i in range(len(fabrics)) for j in range(len(fabrics))
           if fabrics[i] != fabrics[j] and fabrics[i] >= 0 and fabrics[j] >= 0]
  if not pairs:
    return float("nan")
  pairs = [pairs[k] for k in np.random.default_rng(0).permutation(len(pairs))[:max_pairs]]
  a = np.array([p[0] for p in pairs])
  b = np.array([p[1] for p in pairs])
  rgb, _ = generate_batched(task, params, examples.cond[a], examples.class_ids[a],
                            examples.clean[a], rng, batch)
  g = _grams(task, jnp.asarray(rgb))
  ga = _grams(task, jnp.asarray(examples.clean[a], jnp.float32) / 255.0)
  gb = _grams(task, jnp.asarray(examples.clean[b], jnp.float32) / 255.0)
  scales = gram_lib.layer_scales(_grams(task, jnp.asarray(examples.clean, jnp.float32) / 255.0))
  closer = gram_lib.gram_distance(g, ga, scales) < gram_lib.gram_distance(g, gb, scales)
  return float(np.mean(np.asarray(closer)))


def sample_grid(task, params, examples, rng, rows: int, draws: int) -> np.ndarray:
  """uint8 grid: per fabric row [texture | real patch | draws...], masks in a strip below."""
  p = examples.patches.shape[1]
  picks, seen = [], set()
  for i, f in enumerate(examples.fabric_ids):
    if int(f) not in seen:
      seen.add(int(f))
      picks.append(i)
    if len(picks) == rows:
      break
  idx = np.repeat(np.array(picks), draws)
  rgb, mask = generate_batched(task, params, examples.cond[idx], examples.class_ids[idx],
                               examples.clean[idx], rng, max(1, len(idx)))
  scale = max(1, 64 // p)
  tiles = []
  for r, i in enumerate(picks):
    top = [examples.clean[i], examples.patches[i]]
    bottom = [np.zeros_like(examples.clean[i]),
              np.repeat((examples.masks[i] * 255).astype(np.uint8)[..., None], 3, -1)]
    for k in range(draws):
      top.append((np.clip(rgb[r * draws + k], 0, 1) * 255).astype(np.uint8))
      bottom.append(np.repeat((mask[r * draws + k] * 255).astype(np.uint8)[..., None], 3, -1))
    tiles.append(np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0))
  grid = np.concatenate(tiles, 0)
  return np.repeat(np.repeat(grid, scale, 0), scale, 1)


def evaluate_all(task, params, examples, eval_config, seed: int = 0) -> dict:
  """Every stage-1 metric on `examples` (a PatchSet with conditions) + the sample grid."""
  rng = jax.random.key(seed + 1)
  n = min(len(examples), eval_config.kid_samples)
  ex = examples.subset(np.arange(n))
  batch = int(eval_config.batch)
  rgb, _ = generate_batched(task, params, ex.cond, ex.class_ids, ex.clean, rng, batch)
  feat = jax.jit(lambda x: kid_features(task.conditioner, x))
  fake_f = np.asarray(feat(jnp.asarray(rgb)))
  real_f = np.asarray(feat(jnp.asarray(ex.patches, jnp.float32) / 255.0))
  out = {"kid": kid(fake_f, real_f)}
  for c in np.unique(ex.class_ids):
    sel = ex.class_ids == c
    if sel.sum() >= 4:
      name = classes_lib.CLASSES[c] if c < len(classes_lib.CLASSES) else str(c)
      out[f"kid/{name}"] = kid(fake_f[sel], real_f[sel])
  clean_g = _grams(task, jnp.asarray(ex.clean, jnp.float32) / 255.0)
  out["gram_dist/fake"] = float(np.mean(gram_lib.gram_distance(
      _grams(task, jnp.asarray(rgb)), clean_g)))
  out["gram_dist/real"] = float(np.mean(gram_lib.gram_distance(
      _grams(task, jnp.asarray(ex.patches, jnp.float32) / 255.0), clean_g)))
  out["cond_check"] = conditioning_check(task, params, ex, jax.random.fold_in(rng, 7), batch)
  out["grid"] = sample_grid(task, params, ex, jax.random.fold_in(rng, 9),
                            eval_config.num_fabrics, eval_config.num_draws)
  return out


def save_png(image: np.ndarray, path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(image).save(path)
  return path
