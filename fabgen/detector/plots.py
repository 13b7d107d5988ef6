"""Evaluation charts drawn with pillow: the confusion matrix and precision-recall curves.

Overlays of detections, grids and the class palette are `fabgen.data.drawing`'s.

matplotlib is not a dependency of fabgen (it is not installed here and would add ~50 MB for
a few pictures), so these are drawn directly; they are meant to be glanced at in a report folder,
not published.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from fabgen.data import drawing


def arrow(d: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float],
          fill="black", head: float = 5.0) -> None:
  """A straight arrow from `start` to `end` with a filled head."""
  (x0, y0), (x1, y1) = start, end
  d.line([start, end], fill=fill, width=1)
  length = max(math.hypot(x1 - x0, y1 - y0), 1e-6)
  ux, uy = (x1 - x0) / length, (y1 - y0) / length
  bx, by = x1 - head * ux, y1 - head * uy
  d.polygon([(x1, y1), (bx - 0.6 * head * uy, by + 0.6 * head * ux),
             (bx + 0.6 * head * uy, by - 0.6 * head * ux)], fill=fill)


def confusion_matrix_image(cm: np.ndarray, row_names: Sequence[str], col_names: Sequence[str],
                           cell: int = 56, title: str = "defect-level confusion matrix") -> Image.Image:
  """The confusion matrix as a heat map: colour = row-normalised share, text = count.

  Rows are ground truth, columns predictions (`metrics.DefectEvaluator.confusion_matrix`).
  """
  cm = np.asarray(cm)
  if cm.shape != (len(row_names), len(col_names)):
    raise ValueError(f"confusion matrix shape {cm.shape} does not match "
                     f"{len(row_names)} row and {len(col_names)} column names")
  font, small = drawing.font(13), drawing.font(11)
  left, top = 120, 110
  w, h = left + cell * cm.shape[1] + 20, top + cell * cm.shape[0] + 40
  img = Image.new("RGB", (w, h), "white")
  d = ImageDraw.Draw(img)
  d.text((10, 8), title, fill="black", font=font)
  # The default bitmap font has no arrow glyphs (they drew as boxes): draw the arrows.
  # Both axis captions sit in the left margin; the rotated column names fill the space above
  # the cells.
  d.text((10, top - 44), "predicted", fill="black", font=small)
  px = d.textbbox((10, top - 44), "predicted", font=small)[2] + 4
  arrow(d, (px, top - 37), (px + 18, top - 37))
  d.text((10, top - 22), "true", fill="black", font=small)
  tx = d.textbbox((10, top - 22), "true", font=small)[2] + 6
  arrow(d, (tx, top - 22), (tx, top - 6))
  share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
  for j, name in enumerate(col_names):
    label = Image.new("RGBA", (80, 16), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((0, 0), name[:12], fill="black", font=small)
    label = label.rotate(60, expand=True)
    img.paste(label, (left + j * cell + cell // 2 - 20, top - 24 - label.size[1] + 16), label)
  for i, name in enumerate(row_names):
    d.text((10, top + i * cell + cell // 2 - 7), name[:16], fill="black", font=small)
    for j in range(cm.shape[1]):
      v = float(share[i, j])
      color = tuple(int(255 - v * (255 - c)) for c in (8, 48, 107))
      box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
      d.rectangle(box, fill=color, outline=(200, 200, 200))
      d.text((box[0] + 6, box[1] + cell // 2 - 7), str(int(cm[i, j])),
             fill="white" if v > 0.5 else "black", font=font)
  return img


def pr_curves_image(curves: Mapping[str, Mapping[str, np.ndarray]], size: int = 420,
                    title: str = "defect-level precision-recall") -> Image.Image:
  """Precision (y) against recall (x), one line per class, AP in the legend.

  `curves` maps a class name to `metrics.DefectEvaluator.pr_curve(...)` output; its class id
  (for the colour) is taken from the key order.
  """
  font = drawing.font(12)
  pad_l, pad_b, pad_t, legend_w = 48, 40, 46, 170
  w, h = pad_l + size + 20 + legend_w, pad_t + size + pad_b
  img = Image.new("RGB", (w, h), "white")
  d = ImageDraw.Draw(img)
  d.text((pad_l, 6), title, fill="black", font=font)  # its own line, above the axis label
  x0, y0, x1, y1 = pad_l, pad_t, pad_l + size, pad_t + size
  to_px = lambda r, p: (x0 + r * size, y1 - p * size)
  for t in range(11):
    gx, gy = x0 + t * size / 10, y1 - t * size / 10
    d.line([(gx, y0), (gx, y1)], fill=(230, 230, 230))
    d.line([(x0, gy), (x1, gy)], fill=(230, 230, 230))
    if t % 2 == 0:
      d.text((gx - 8, y1 + 4), f"{t / 10:.1f}", fill="black", font=font)
      d.text((4, gy - 7), f"{t / 10:.1f}", fill="black", font=font)
  d.rectangle((x0, y0, x1, y1), outline="black")
  d.text((x0 + size // 2 - 20, y1 + 22), "recall", fill="black", font=font)
  d.text((4, y0 - 22), "precision", fill="black", font=font)
  for k, (name, c) in enumerate(curves.items()):
    color = drawing.class_colour(k)
    r, p = np.asarray(c["recall"], float), np.asarray(c["precision"], float)
    if len(r) and not np.isnan(r).all():
      # One point per threshold (descending), starting at recall 0 with the first precision.
      pts = [to_px(0.0, p[0])] + [to_px(ri, pi) for ri, pi in zip(r, p)]
      d.line(pts, fill=color, width=2)
    ap = c.get("ap", math.nan)
    ly = y0 + 6 + 18 * k
    d.line([(x1 + 14, ly + 7), (x1 + 34, ly + 7)], fill=color, width=3)
    d.text((x1 + 40, ly), f"{name[:14]} AP {ap:.3f}" if not math.isnan(ap) else name[:14],
           fill="black", font=font)
  return img
