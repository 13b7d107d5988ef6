"""A contact sheet of FabricSim samples with mask outlines and boxes drawn, for eyes and README.

  python -m fabgen.data.fabricsim.contact_sheet [--preset simple,complex] [--per-class 2]
      [--seed 0] [--out docs/fabricsim_samples.png]

Each row is one preset: a defect-free frame, then `per_class` frames of each of its classes.
Each tile shows the image as rendered, with the defect's mask outlined and its component boxes
drawn, and the class name underneath, so a reviewer can judge realism and label accuracy at once.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from fabgen.data import classes as classes_lib
from fabgen.data.fabricsim import FabricSim

_COLOURS = ((255, 60, 60), (255, 200, 0), (0, 220, 120), (60, 160, 255), (255, 80, 255),
            (0, 230, 230))
_LABEL_H = 14


def draw_sample(sample: dict[str, np.ndarray], outline: bool = True) -> Image.Image:
  """The sample's image with its mask outlined and boxes drawn (class colour), plus a caption."""
  image = np.asarray(sample["image"]).copy()
  mask = np.asarray(sample["instance_mask"])
  names = []
  for k, cls in enumerate(np.asarray(sample["instance_class"]), start=1):
    if cls < 0:
      continue
    inst = mask == k
    edge = inst & ~ndimage.binary_erosion(inst)
    if outline:
      image[edge] = (0.4 * image[edge] + 0.6 * np.asarray(_COLOURS[cls])).astype(np.uint8)
    names.append(classes_lib.CLASSES[cls])
  h, w = image.shape[:2]
  tile = Image.new("RGB", (w, h + _LABEL_H), (255, 255, 255))
  tile.paste(Image.fromarray(image), (0, 0))
  draw = ImageDraw.Draw(tile)
  for box, cls in zip(np.asarray(sample["boxes"]), np.asarray(sample["box_class"])):
    if cls >= 0:
      x0, y0, x1, y1 = box
      draw.rectangle([x0 - 1, y0 - 1, x1, y1], outline=_COLOURS[cls])
  caption = ", ".join(sorted(set(names))) or "defect-free"
  draw.text((2, h + 1), f"{caption} (fabric {int(sample['fabric_id'])})", fill=(0, 0, 0))
  return tile


def grid(tiles: list[Image.Image], columns: int, gap: int = 4) -> Image.Image:
  """Tiles laid out row-major on a white sheet."""
  tw = max(t.width for t in tiles)
  th = max(t.height for t in tiles)
  rows = -(-len(tiles) // columns)
  sheet = Image.new("RGB", (columns * (tw + gap) + gap, rows * (th + gap) + gap), "white")
  for n, t in enumerate(tiles):
    sheet.paste(t, (gap + (n % columns) * (tw + gap), gap + (n // columns) * (th + gap)))
  return sheet


def preset_tiles(preset: str, per_class: int, seed: int, split: str = "train",
                 with_raw: bool = False) -> list[Image.Image]:
  """One defect-free tile and `per_class` tiles per class, from different source fabrics."""
  sim = FabricSim(preset, seed)
  fabrics = sim.fabric_ids(split)
  specs = [(int(fabrics[0]), 0, -1)]
  for c in sim.class_ids:
    for r in range(per_class):
      specs.append((int(fabrics[(3 * int(c) + 7 * r + 1) % len(fabrics)]), r, int(c)))
  specs = np.asarray(specs, np.int32)
  out = sim.render_batch(specs[:, 0], specs[:, 1], specs[:, 2])
  out = {k: np.asarray(v) for k, v in out.items()}
  tiles = []
  for n in range(len(specs)):
    sample = {k: v[n] for k, v in out.items()}
    if with_raw:
      tiles.append(draw_sample(sample, outline=False))
    tiles.append(draw_sample(sample))
  return tiles


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="simple,complex")
  parser.add_argument("--per-class", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="docs/fabricsim_samples.png")
  args = parser.parse_args(argv)
  tiles, columns = [], 0
  for preset in args.preset.split(","):
    row = preset_tiles(preset, args.per_class, args.seed)
    columns = max(columns, len(row))
    tiles.extend(row)
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  grid(tiles, columns).save(args.out)
  print(f"wrote {args.out} ({len(tiles)} samples)")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
