"""A picture of a labelled set: a grid of samples with masks tinted and boxes drawn, by class.

The contact sheet is how a person checks a data set at a glance (do the masks sit on the defects,
are the boxes the components, are the classes right?), so it is drawn from the records
themselves: the tint is exactly `instance_mask > 0`, the rectangles exactly the record's boxes
(x1/y1 exclusive, drawn on the last included pixel), and each box carries its class name.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

# One colour per class id (the six global classes first), cycled for extra names.
PALETTE = ((230, 25, 75), (255, 225, 25), (60, 180, 75), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def class_colour(class_id: int) -> tuple[int, int, int]:
  return PALETTE[int(class_id) % len(PALETTE)]


def draw_sample(sample: dict, class_names: Sequence[str], alpha: float = 0.45,
                labels: bool = True) -> Image.Image:
  """One sample as an RGB image with its mask tinted by class and its boxes outlined."""
  image = np.asarray(sample["image"], np.uint8)
  mask = np.asarray(sample["instance_mask"])
  inst_class = np.asarray(sample["instance_class"])
  out = image.astype(np.float32)
  for k, c in enumerate(inst_class, start=1):
    if c < 0:
      continue
    sel = mask == k
    out[sel] = (1 - alpha) * out[sel] + alpha * np.asarray(class_colour(c), np.float32)
  tile = Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(tile)
  for box, c, inst in zip(np.asarray(sample["boxes"]), np.asarray(sample["box_class"]),
                          np.asarray(sample["box_instance"])):
    if inst <= 0:
      continue
    x0, y0, x1, y1 = (float(v) for v in box)
    draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=class_colour(c))
    if labels and 0 <= c < len(class_names):
      draw.text((x0 + 1, max(0.0, y0 - 11)), class_names[int(c)], fill=class_colour(c))
  return tile


def _fit(tile: Image.Image, max_side: int) -> Image.Image:
  w, h = tile.size
  scale = min(1.0, max_side / max(w, h))
  if scale == 1.0:
    return tile
  return tile.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)


def contact_sheet(samples: Sequence[dict], class_names: Sequence[str], cols: int | None = None,
                  max_side: int = 256, pad: int = 2) -> Image.Image:
  """A grid of `draw_sample` tiles; large images (AITEX strips) are shrunk to `max_side`."""
  if not samples:
    raise ValueError("contact_sheet needs at least one sample")
  tiles = [_fit(draw_sample(s, class_names), max_side) for s in samples]
  cols = cols or int(np.ceil(np.sqrt(len(tiles))))
  rows = -(-len(tiles) // cols)
  cell_w = max(t.size[0] for t in tiles) + pad
  cell_h = max(t.size[1] for t in tiles) + pad
  sheet = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), (32, 32, 32))
  for k, tile in enumerate(tiles):
    sheet.paste(tile, (pad + (k % cols) * cell_w, pad + (k // cols) * cell_h))
  return sheet
