"""What was synthesized, visibly: each defect as it is, beside the same view with its label.

A tinted contact sheet hides exactly what one wants to judge (the defect's texture and seams
under a coloured fill), so the preview shows, per sample, a zoomed crop around the defect twice:
untouched on the left, and with the label drawn as outlines only on the right (the mask's
boundary pixels and the box, in the class colour). The crop keeps the defect's aspect and some
fabric around it, so sizes and shapes can be compared with the real defects drawn the same way.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from fabgen.data import drawing


def _crop_box(mask: np.ndarray, context: float, min_side: int) -> tuple[int, int, int, int]:
  """(y0, y1, x0, x1): the mask's box grown by `context` of its size, at least `min_side`."""
  h, w = mask.shape
  ys, xs = np.nonzero(mask)
  if len(ys) == 0:
    return 0, h, 0, w
  out = []
  for lo, hi, n in ((ys.min(), ys.max() + 1, h), (xs.min(), xs.max() + 1, w)):
    side = max(int((hi - lo) * (1 + 2 * context)), min(min_side, n))
    c = (lo + hi) // 2
    a = int(np.clip(c - side // 2, 0, max(0, n - side)))
    out += [a, min(n, a + side)]
  return tuple(out)


def defect_pair(image: np.ndarray, mask: np.ndarray, class_id: int, boxes: np.ndarray = (),
                side: int = 128, context: float = 0.5, min_side: int = 48) -> Image.Image:
  """[defect as it is | the same with outlined mask and boxes], each `side` px on its long edge."""
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, -1)
  mask = np.asarray(mask) > 0
  y0, y1, x0, x1 = _crop_box(mask, context, min_side)
  crop, m = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
  scale = side / max(crop.shape[:2])
  size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
  plain = Image.fromarray(crop).resize(size, Image.NEAREST)
  big_mask = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
  edge = big_mask & ~ndimage.binary_erosion(big_mask)
  colour = drawing.class_colour(class_id)
  labelled = np.asarray(plain).copy()
  labelled[edge] = colour  # outline only: the defect's pixels stay as they are
  outlined = Image.fromarray(labelled)
  draw = ImageDraw.Draw(outlined)
  for bx0, by0, bx1, by1 in np.asarray(boxes, np.float32).reshape(-1, 4):
    draw.rectangle([(bx0 - x0) * scale, (by0 - y0) * scale, (bx1 - x0) * scale - 1,
                    (by1 - y0) * scale - 1], outline=colour)
  pad = 3
  out = Image.new("RGB", (2 * size[0] + 3 * pad, side + 2 * pad), (32, 32, 32))
  out.paste(plain, (pad, pad))
  out.paste(outlined, (2 * pad + size[0], pad))
  return out


def pairs_row(pairs: Sequence[Image.Image], pad: int = 6) -> Image.Image:
  """Pairs in one row on white."""
  if not pairs:
    raise ValueError("pairs_row needs at least one pair")
  w = sum(p.size[0] for p in pairs) + pad * (len(pairs) + 1)
  h = max(p.size[1] for p in pairs) + 2 * pad
  out = Image.new("RGB", (w, h), "white")
  x = pad
  for p in pairs:
    out.paste(p, (x, pad))
    x += p.size[0] + pad
  return out


def synthesized_pairs(synth_dir: str, count: int = 4) -> Image.Image | None:
  """The first `count` labelled samples of a synthesis folder as defect pairs (None if none)."""
  pairs = []
  for part in sorted(glob.glob(os.path.join(synth_dir, "parts", "*.json"))):
    with open(part) as f:
      records = sorted(json.load(f)["records"], key=lambda r: r["index"])
    for rec in records:
      if len(pairs) == count:
        break
      if not rec["boxes"]:
        continue
      image = np.asarray(Image.open(os.path.join(synth_dir, rec["file_name"])).convert("RGB"))
      mask = np.asarray(Image.open(os.path.join(synth_dir, rec["mask_file"])))
      pairs.append(defect_pair(image, mask, rec["class_id"], rec["boxes"]))
  return pairs_row(pairs) if pairs else None


def record_pairs(records, count: int = 4) -> Image.Image | None:
  """Real labelled records (`fabgen.data.sample`), one pair per first defect instance."""
  pairs = []
  for rec in records:
    if len(pairs) == count:
      break
    classes = np.asarray(rec["instance_class"])
    if not (classes >= 0).any():
      continue
    k = int(np.flatnonzero(classes >= 0)[0])
    mask = np.asarray(rec["instance_mask"]) == k + 1
    keep = (np.asarray(rec["box_instance"]) == k + 1) if "box_instance" in rec else None
    boxes = np.asarray(rec["boxes"]).reshape(-1, 4)
    boxes = boxes[keep] if keep is not None else boxes[:0]
    pairs.append(defect_pair(rec["image"], mask, int(classes[k]), boxes))
  return pairs_row(pairs) if pairs else None
