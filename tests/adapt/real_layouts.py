"""Real-layout target folders built by the tests: AITEX strips and a generic folder set.

Images are a grey weave texture (a few-pixel period, like a line-scan camera sees) with dark or
light rectangles as defects, so a reader, synthesis and evaluation see what real folders give
them: greyscale PNGs of any size, AITEX file names with defect and fabric codes, one mask file
per defect, and classes the detector has never heard of.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image


def weave(h: int, w: int, seed: int) -> np.ndarray:
  """Greyscale uint8 [h, w] plain-weave-like texture, yarn period 4 px."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w]
  base = 120 + 25 * np.sin(2 * np.pi * x / 4.0) * np.sin(2 * np.pi * y / 4.0)
  return np.clip(base + rng.normal(0, 4, (h, w)), 0, 255).astype(np.uint8)


def _save(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _paint(image: np.ndarray, box, value: int) -> np.ndarray:
  x0, y0, x1, y1 = box
  image[y0:y1, x0:x1] = value
  mask = np.zeros(image.shape, np.uint8)
  mask[y0:y1, x0:x1] = 255
  return mask


# AITEX codes used: 027 knots -> knot (a detector class), 019 fuzzyball and 023 crease (classes
# no fabgen class stands for: unknown to every detector).
AITEX_DEFECTS = (("027", (100, 100, 116, 116)), ("019", (900, 60, 940, 100)),
                 ("023", (2000, 10, 2600, 30)), ("027", (3000, 200, 3012, 212)))


def aitex_root(root: str, num_good: int = 4, size=(256, 4096)) -> dict:
  """An AITEX folder: len(AITEX_DEFECTS) defect strips (one with two masks) + `num_good` good.

  Returns the expected counts by class name.
  """
  h, w = size
  counts: dict[str, int] = {}
  for k, (code, box) in enumerate(AITEX_DEFECTS):
    image = weave(h, w, k)
    stem = f"{k:04d}_{code}_02"
    mask = _paint(image, box, 40)
    _save(os.path.join(root, "Mask_images", f"{stem}_mask.png"), mask)
    if k == 0:  # a second defect instance of the same class, its own mask file
      _save(os.path.join(root, "Mask_images", f"{stem}_mask2.png"),
            _paint(image, (1500, 150, 1512, 162), 40))
    _save(os.path.join(root, "Defect_images", f"{stem}.png"), image)
  for i in range(num_good):
    _save(os.path.join(root, "NoDefect_images", "2306894-210033", f"{i:04d}_000_02.png"),
          weave(h, w, 100 + i))
  for code, _ in AITEX_DEFECTS:
    name = {"027": "knot", "019": "fuzzyball", "023": "crease"}[code]
    counts[name] = counts.get(name, 0) + 1
  counts["knot"] += 1  # the second mask of image 0
  return counts


def plain_folder(folder: str, num: int, size=(96, 160), seed: int = 200) -> None:
  """Defect-free photos of the target, nothing else in the folder."""
  for i in range(num):
    _save(os.path.join(folder, f"good_{i:02d}.png"), weave(*size, seed + i))


def generic_masks(folder: str, size=(96, 160), seed: int = 300) -> dict:
  """images/ + masks/ + classes.json (class-index masks): 'speck' (mapped to color_spot by the
  tests' class map) and 'hole' (no detector class). Returns counts by name after the map."""
  h, w = size
  specs = [[(1, (10, 10, 22, 22))], [(2, (60, 40, 80, 60))], [(1, (100, 20, 110, 30)),
                                                              (2, (20, 60, 40, 80))]]
  for i, defects in enumerate(specs):
    image = weave(h, w, seed + i)
    mask = np.zeros((h, w), np.uint8)
    for value, (x0, y0, x1, y1) in defects:
      image[y0:y1, x0:x1] = 30 if value == 1 else 220
      mask[y0:y1, x0:x1] = value
    _save(os.path.join(folder, "images", f"t{i}.png"), image)
    _save(os.path.join(folder, "masks", f"t{i}.png"), mask)
  with open(os.path.join(folder, "classes.json"), "w", encoding="utf-8") as f:
    json.dump(["speck", "hole"], f)
  return {"color_spot": 2, "hole": 2}
