"""Every picture fabgen draws of labelled images: one palette, one sample drawing, one grid.

Data sets (`fabgen data` contact sheets, FabricSim's README picture), synthesis runs and
detector reports all show the same things (a defect's mask, its boxes, its class; detections
with scores; tiles in a grid), so they are drawn here once, with pillow (matplotlib is not a
dependency). Class k has the same colour in every picture. Boxes are end-exclusive (x1, y1),
drawn on their last included pixel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

# One distinct colour per class id (tab10-like), cycled for more classes.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
CAPTION_HEIGHT = 14


def class_colour(class_id: int) -> tuple[int, int, int]:
  return PALETTE[int(class_id) % len(PALETTE)]


def font(size: int):
  """pillow's default font at `size` (unsized on pillow < 10.1)."""
  try:
    return ImageFont.load_default(size=size)
  except TypeError:
    return ImageFont.load_default()


def draw_box(draw: ImageDraw.ImageDraw, box, colour, width: int = 1) -> None:
  """An end-exclusive (x0, y0, x1, y1) box outlined on its pixels."""
  x0, y0, x1, y1 = (float(v) for v in box)
  draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=width)


def draw_sample(sample: dict, class_names: Sequence[str], mask_style: str = "tint",
                alpha: float = 0.45, labels: bool = True, caption: str | None = None
                ) -> Image.Image:
  """A labelled sample: its mask tinted ("tint") or outlined ("outline") or not ("none") in the
  class colour, its boxes outlined with class names, and an optional caption strip below."""
  if mask_style not in ("tint", "outline", "none"):
    raise ValueError(f"mask_style={mask_style!r}: expected tint, outline or none")
  out = np.asarray(sample["image"], np.uint8).astype(np.float32)
  mask = np.asarray(sample["instance_mask"])
  for k, c in enumerate(np.asarray(sample["instance_class"]), start=1):
    if c < 0 or mask_style == "none":
      continue
    sel = mask == k
    if mask_style == "outline":
      sel = sel & ~ndimage.binary_erosion(sel)
    out[sel] = (1 - alpha) * out[sel] + alpha * np.asarray(class_colour(c), np.float32)
  image = Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
  h = image.height + (CAPTION_HEIGHT if caption is not None else 0)
  tile = Image.new("RGB", (image.width, h), (255, 255, 255))
  tile.paste(image, (0, 0))
  draw = ImageDraw.Draw(tile)
  instances = np.asarray(sample.get("box_instance", np.ones(len(sample["boxes"]), np.int32)))
  for box, c, inst in zip(np.asarray(sample["boxes"]), np.asarray(sample["box_class"]),
                          instances):
    if inst <= 0 or c < 0:
      continue
    draw_box(draw, box, class_colour(c))
    if labels and 0 <= c < len(class_names):
      draw.text((float(box[0]) + 1, max(0.0, float(box[1]) - 11)), class_names[int(c)],
                fill=class_colour(c))
  if caption is not None:
    draw.text((2, image.height + 1), caption, fill=(0, 0, 0))
  return tile


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    class_names: Sequence[str], threshold: float = 0.5,
                    gt_boxes: np.ndarray | None = None, seg_map: np.ndarray | None = None,
                    seg_alpha: float = 0.35) -> Image.Image:
  """An overlay: predicted boxes (class colour, name and score), optional GT boxes in white and
  an optional per-pixel class map (0 = background, c + 1 = class c) tinted in."""
  base = np.asarray(image, np.float32)
  if base.ndim == 2:
    base = np.repeat(base[..., None], 3, axis=-1)
  if seg_map is not None:
    seg_map = np.asarray(seg_map)
    tint = np.zeros_like(base)
    for c in np.unique(seg_map):
      if c > 0:
        tint[seg_map == c] = class_colour(int(c) - 1)
    on = (seg_map > 0)[..., None]
    base = np.where(on, (1 - seg_alpha) * base + seg_alpha * tint, base)
  img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
  d = ImageDraw.Draw(img)
  small = font(11)
  if gt_boxes is not None:
    for b in np.asarray(gt_boxes).reshape(-1, 4):
      if b[2] > b[0] and b[3] > b[1]:
        draw_box(d, b, "white")
  for b, s, c in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1),
                     np.asarray(labels).reshape(-1)):
    if s < threshold or b[2] <= b[0] or b[3] <= b[1]:
      continue
    colour = class_colour(int(c))
    draw_box(d, b, colour, width=2)
    name = class_names[int(c)] if int(c) < len(class_names) else str(int(c))
    d.text((float(b[0]) + 2, max(float(b[1]) - 12, 0)), f"{name} {s:.2f}", fill=colour,
           font=small)
  return img


def fit(tile: Image.Image, max_side: int) -> Image.Image:
  """`tile` shrunk (never enlarged) so that its longer side is at most `max_side`."""
  w, h = tile.size
  scale = min(1.0, max_side / max(w, h))
  if scale == 1.0:
    return tile
  return tile.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)


def grid(images: Sequence[Image.Image], columns: int | None = None, pad: int = 4,
         background=(255, 255, 255), max_side: int | None = None) -> Image.Image:
  """Pictures laid out row-major in cells of the largest one (default: a near-square grid);
  with `max_side`, large pictures (AITEX strips) are shrunk first."""
  if not images:
    raise ValueError("grid() needs at least one picture")
  tiles = [fit(im, max_side) if max_side else im for im in images]
  columns = columns or int(np.ceil(np.sqrt(len(tiles))))
  rows = -(-len(tiles) // columns)
  cw = max(t.size[0] for t in tiles) + pad
  ch = max(t.size[1] for t in tiles) + pad
  out = Image.new("RGB", (columns * cw + pad, rows * ch + pad), background)
  for i, t in enumerate(tiles):
    out.paste(t.convert("RGB"), (pad + (i % columns) * cw, pad + (i // columns) * ch))
  return out


def contact_sheet(samples: Sequence[dict], class_names: Sequence[str], cols: int | None = None,
                  max_side: int = 256, pad: int = 2) -> Image.Image:
  """A data set at a glance: `draw_sample` tiles (masks tinted, boxes and classes drawn)."""
  if not samples:
    raise ValueError("contact_sheet needs at least one sample")
  return grid([draw_sample(s, class_names) for s in samples], cols, pad, (32, 32, 32), max_side)


def side_by_side(images: Sequence[Image.Image], captions: Sequence[str],
                 pad: int = 6) -> Image.Image:
  """Pictures in a row with a caption above each (real vs synthesized vs detections)."""
  f = font(13)
  h = max(im.size[1] for im in images) + 22
  w = sum(im.size[0] for im in images) + pad * (len(images) + 1)
  out = Image.new("RGB", (w, h + pad), "white")
  d = ImageDraw.Draw(out)
  x = pad
  for im, cap in zip(images, captions):
    d.text((x, 3), cap, fill="black", font=f)
    out.paste(im.convert("RGB"), (x, 22))
    x += im.size[0] + pad
  return out
