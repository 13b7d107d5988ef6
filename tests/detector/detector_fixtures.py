"""Shared by the detector tests: the smallest real detector config and tiny synthetic records."""

import os
import sys

import numpy as np

from fabgen.data.readers import records

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from configs import detector as detector_config  # pylint: disable=g-import-not-at-top,wrong-import-position


def tiny_config(**overrides):
  c = detector_config.get_config("tiny")
  c.model.decoder_layers = 1      # the smallest real detector: keeps compile time down
  c.model.num_queries = 10
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return c


def synthetic_records(n: int, size: int = 64, seed: int = 0):
  """Noisy grey 'fabric' with dark square spots (class 0) and bright thin lines (class 3)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    image = (120 + rng.normal(0, 8, (size, size, 3))).clip(0, 255)
    mask = np.zeros((size, size), np.int32)
    classes = []
    y, x = rng.integers(4, size - 20, 2)
    image[y:y + 14, x:x + 14] = 40
    mask[y:y + 14, x:x + 14] = 1
    classes.append(0)
    if rng.random() < 0.75:
      x2 = int(rng.integers(4, size - 8))
      if abs(x2 - x) > 18:
        y2 = int(rng.integers(0, size - 36))
        image[y2:y2 + 34, x2:x2 + 4] = 230
        mask[y2:y2 + 34, x2:x2 + 4] = 2
        classes.append(3)
    sample, _ = records.make_sample(image.astype(np.uint8), mask, classes)
    out.append(sample)
  return out


def stack_records(samples):
  keys = ("image", "instance_mask", "instance_class", "boxes", "box_class")
  return {k: np.stack([s[k] for s in samples]) for k in keys}


def write_broken_set(root: str) -> tuple[str, str, str]:
  """A 9-record sample set at `root` with one zero-byte and one truncated image.

  Returns (root, zero-byte image path, truncated image path): the skip/error policy's fixture.
  """
  from fabgen.data import classes, writer  # pylint: disable=g-import-not-at-top
  writer.write_sample_set(synthetic_records(9, size=64, seed=1), root, classes.CLASSES)
  zero = os.path.join(root, "images", "00000002.png")
  truncated = os.path.join(root, "images", "00000005.png")
  with open(zero, "wb"):
    pass
  with open(truncated, "rb") as f:
    data = f.read()
  with open(truncated, "wb") as f:
    f.write(data[:len(data) // 2])
  return root, zero, truncated
