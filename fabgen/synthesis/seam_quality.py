"""How visible is the seam? Gradient energy and feature statistics in a band around the mask border.

A pasted defect betrays itself at its border: a hard seam adds gradient energy there that real
defects do not have, and the local texture statistics across the border change abruptly. We
measure both, on synthesized images *against real defect images*, so the numbers say "how far
from real", not "how smooth" (a blurred blob would be smooth and still wrong):

* `grad_ratio`: per image, mean squared image gradient in the seam band (pixels within `radius`
  of the mask border) divided by that in the background ring just outside it. Real defects have
  their own typical ratio; we report the synthetic mean log-ratio, the real one, and their gap.
* `band_fd`: Frechet distance between Gaussians fitted to per-pixel band features (RGB, gradient
  magnitudes at two scales, Laplacian) of the synthetic and the real set. A fixed filter bank,
  not VGG, so the metric needs no weights and means the same on every machine.

Lower gap and lower band_fd are better; the seam-quality table in the synthesis benchmark reports
them for multistage, cutpaste and inpainter.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
from scipy import linalg
from scipy import ndimage


def _band_and_ring(mask: np.ndarray, radius: int):
  m = mask > 0
  grown = ndimage.binary_dilation(m, iterations=radius)
  shrunk = ndimage.binary_erosion(m, iterations=radius)
  band = grown & ~shrunk
  ring = ndimage.binary_dilation(m, iterations=3 * radius) & ~grown
  return band, ring


def _features(image: np.ndarray) -> np.ndarray:
  """[H, W, 8] per-pixel features: RGB, |grad| at sigma 1 and 2, Laplacian at sigma 1, 2, 4."""
  x = image.astype(np.float32) / 255.0
  grey = x.mean(-1)
  feats = [x[..., c] for c in range(3)]
  for sigma in (1.0, 2.0):
    feats.append(ndimage.gaussian_gradient_magnitude(grey, sigma))
  for sigma in (1.0, 2.0, 4.0):
    feats.append(ndimage.gaussian_laplace(grey, sigma))
  return np.stack(feats, -1)


def image_statistics(image: np.ndarray, mask: np.ndarray, radius: int = 3,
                     max_pixels: int = 512, seed: int = 0):
  """(log gradient ratio, [k, F] band features) of one image, or None when it has no seam."""
  band, ring = _band_and_ring(mask, radius)
  if band.sum() < 4 or ring.sum() < 4:
    return None
  grey = image.astype(np.float32).mean(-1) / 255.0
  gy, gx = np.gradient(grey)
  energy = gx ** 2 + gy ** 2
  log_ratio = float(np.log((energy[band].mean() + 1e-8) / (energy[ring].mean() + 1e-8)))
  feats = _features(image)[band]
  if len(feats) > max_pixels:
    feats = feats[np.random.default_rng(seed).choice(len(feats), max_pixels, replace=False)]
  return log_ratio, feats


def set_statistics(pairs: Iterable[tuple[np.ndarray, np.ndarray]], radius: int = 3):
  """Statistics of a set of (image uint8 [H,W,3], mask [H,W]) pairs with non-empty masks."""
  ratios, feats = [], []
  for k, (image, mask) in enumerate(pairs):
    stats = image_statistics(np.asarray(image), np.asarray(mask), radius, seed=k)
    if stats is not None:
      ratios.append(stats[0])
      feats.append(stats[1])
  if not ratios:
    raise ValueError("seam quality: no image in the set has a defect mask with a border")
  feats = np.concatenate(feats)
  return {"log_ratio": np.asarray(ratios), "mean": feats.mean(0),
          "cov": np.cov(feats, rowvar=False)}


def frechet(mu1, cov1, mu2, cov2) -> float:
  """Frechet distance between two Gaussians (as in FID)."""
  covmean = linalg.sqrtm(cov1 @ cov2)
  covmean = np.real(covmean)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2.0 * covmean))


def seam_quality(synthetic: Iterable, real: "Iterable | Mapping", radius: int = 3) -> dict:
  """The seam-quality row of one method: synthetic (image, mask) pairs against real ones.

  `real` may be a precomputed `set_statistics` dict, so several methods share one reference.
  """
  ref = real if isinstance(real, Mapping) else set_statistics(real, radius)
  syn = set_statistics(synthetic, radius)
  return {
      "grad_log_ratio": float(syn["log_ratio"].mean()),
      "grad_log_ratio_real": float(ref["log_ratio"].mean()),
      "grad_gap": float(abs(syn["log_ratio"].mean() - ref["log_ratio"].mean())),
      "band_fd": frechet(syn["mean"], syn["cov"], ref["mean"], ref["cov"]),
      "images": int(len(syn["log_ratio"])),
  }


def source_pairs(src, limit: int | None = None):
  """(image, any-defect mask) pairs from a reader source or a list of sample records."""
  n = len(src) if limit is None else min(len(src), limit)
  for i in range(n):
    rec = src[i]
    yield np.asarray(rec["image"]), np.asarray(rec["instance_mask"]) > 0
