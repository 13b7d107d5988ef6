"""Where a defect is, and the windows cut around it: one centring rule for every model.

Stage 1 trains on a window centred on each defect instance, the fusion network and the
single-stage inpainter on crops centred the same way, the cut-paste baseline pastes such crops,
and the detector's input pipeline places random crops so that they hold a defect. All of them
take an instance's bounding box from `instance_box` (end-exclusive, like a slice) and its centre
from `box_centre`: the centre of [a0, a1) is (a0 + a1) // 2, so a window of even size holds the
same number of defect pixels on each side (one more below/right when they cannot be equal).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive


def instance_box(instance_mask: np.ndarray, k: int) -> Box | None:
  """Bounding box of instance k (pixels == k + 1) of an instance mask, or None if it is empty."""
  ys, xs = np.nonzero(np.asarray(instance_mask) == k + 1)
  if len(ys) == 0:
    return None
  return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def box_centre(box: Box) -> tuple[int, int]:
  """(cy, cx) of an end-exclusive box: the one centring rule."""
  y0, x0, y1, x1 = box
  return (y0 + y1) // 2, (x0 + x1) // 2


def centred_window(box: Box, size: int, hw: tuple[int, int]) -> tuple[int, int]:
  """Top-left (y0, x0) of a size x size window centred on `box`, shifted to stay in an hw image."""
  cy, cx = box_centre(box)
  h, w = hw
  return int(np.clip(cy - size // 2, 0, h - size)), int(np.clip(cx - size // 2, 0, w - size))


def mask_box(mask: np.ndarray) -> Box | None:
  """Bounding box of the nonzero pixels of a binary mask, or None."""
  return instance_box((np.asarray(mask) > 0).astype(np.int32), 0)


def positions_containing(a0: int, a1: int, size: int, full: int) -> tuple[int, int]:
  """[lo, hi) of window starts s whose [s, s+size) holds [a0, a1) (its centre if longer)."""
  if a1 - a0 > size:
    a0 = a1 = box_centre((a0, 0, a1, 0))[0]
  lo = min(max(0, a1 - size), max(0, full - size))
  hi = max(lo, min(a0, full - size))
  return lo, hi + 1


def random_defect_box(sample: Mapping[str, np.ndarray], rng: np.random.Generator) -> Box | None:
  """The box of one instance, its class drawn uniformly from those present, or None.

  Class-balanced (a class present in the image, then one of its instances), so crops placed on
  it show rare small defects as often as common large ones.
  """
  classes = np.asarray(sample["instance_class"])
  mask = np.asarray(sample["instance_mask"])
  present = [k for k in range(len(classes)) if classes[k] >= 0 and (mask == k + 1).any()]
  if not present:
    return None
  kinds = sorted({int(classes[k]) for k in present})
  kind = kinds[int(rng.integers(len(kinds)))]
  of_kind = [k for k in present if classes[k] == kind]
  return instance_box(mask, of_kind[int(rng.integers(len(of_kind)))])


def extract_crops(records: Iterable[Mapping[str, np.ndarray]], size: int,
                  max_per_class: int = 64, class_ids: Iterable[int] | None = None):
  """size x size crops centred on each defect instance, with that instance's mask.

  Returns (images uint8 [K, S, S, 3], masks float32 [K, S, S], classes int32 [K]). Images
  smaller than the crop, instances of unwanted classes, beyond `max_per_class`, or with fewer
  than 4 pixels inside their crop are skipped.
  """
  wanted = None if class_ids is None else set(int(c) for c in class_ids)
  images, masks, classes, per_class = [], [], [], {}
  for rec in records:
    image, inst = np.asarray(rec["image"]), np.asarray(rec["instance_mask"])
    if inst.shape[0] < size or inst.shape[1] < size:
      continue
    for k, cid in enumerate(np.asarray(rec["instance_class"]).tolist()):
      if cid < 0 or (wanted is not None and cid not in wanted):
        continue
      if per_class.get(cid, 0) >= max_per_class:
        continue
      box = instance_box(inst, k)
      if box is None:
        continue
      y0, x0 = centred_window(box, size, inst.shape)
      m = inst[y0:y0 + size, x0:x0 + size] == k + 1
      if m.sum() < 4:
        continue
      images.append(image[y0:y0 + size, x0:x0 + size])
      masks.append(m.astype(np.float32))
      classes.append(cid)
      per_class[cid] = per_class.get(cid, 0) + 1
  if not images:
    return (np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), np.float32),
            np.zeros((0,), np.int32))
  return np.stack(images), np.stack(masks), np.asarray(classes, np.int32)
