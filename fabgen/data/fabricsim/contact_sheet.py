"""A contact sheet of FabricSim samples with mask outlines and boxes drawn, for eyes and README.

  python -m fabgen.data.fabricsim.contact_sheet [--preset simple,complex] [--per-class 2]
      [--seed 0] [--out docs/fabricsim_samples.png]

Each row is one preset: a defect-free frame, then `per_class` frames of each of its classes.
Each tile shows the image as rendered, with the defect's mask outlined and its component boxes
drawn (`fabgen.data.drawing`), and the class name underneath, so a reviewer can judge realism
and label accuracy at once.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

from fabgen.data import classes as classes_lib
from fabgen.data import drawing
from fabgen.data.fabricsim import FabricSim


def draw_sample(sample: dict[str, np.ndarray], outline: bool = True) -> Image.Image:
  """The sample with its mask outlined, boxes drawn and a caption (classes, fabric) below."""
  names = sorted({classes_lib.CLASSES[int(c)] for c in np.asarray(sample["instance_class"])
                  if c >= 0})
  caption = f"{', '.join(names) or 'defect-free'} (fabric {int(sample['fabric_id'])})"
  return drawing.draw_sample(sample, classes_lib.CLASSES, "outline" if outline else "none",
                             alpha=0.6, labels=False, caption=caption)


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
  drawing.grid(tiles, columns).save(args.out)
  print(f"wrote {args.out} ({len(tiles)} samples)")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
