"""Shared by the stage-2 tests: a tiny labelled source (striped fabric with dark blobs)."""

import numpy as np


def striped_records(n=8, size=40, seed=0):
  """Striped fabric with dark blobs: a tiny stand-in for a labelled source."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:size, :size]
  out = []
  for i in range(n):
    img = 110 + 50 * np.sin(2 * np.pi * x / 5)[..., None] * np.array([1, .8, .6])
    img = np.clip(img + rng.normal(0, 4, (size, size, 3)), 0, 255)
    m = (y - 20) ** 2 / (9 + i) + (x - 18 - i) ** 2 / 16 < 1
    img[m] *= 0.35
    out.append({"image": img.astype(np.uint8), "instance_mask": m.astype(np.int32),
                "instance_class": np.array([1, -1, -1, -1], np.int32)})
  return out
