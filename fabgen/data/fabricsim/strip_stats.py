"""Image statistics that tell simulated strips from real ones, and the line-scan contact sheet.

  python -m fabgen.data.fabricsim.strip_stats --preset linescan --num 16        # FabricSim
  python -m fabgen.data.fabricsim.strip_stats --data data/aitex@good --num 16    # your strips
  python -m fabgen.data.fabricsim.strip_stats --preset linescan --sheet docs/fabricsim_linescan.png

A detector trained on FabricSim transfers only as far as the simulated images share the real
ones' statistics, so these are measured the same way on both (defect-free images):

* yarn period: the strongest peak of the power spectrum along each axis, in pixels
  (AITEX-like strips: a few pixels; an area-scan preset: 4-10 at 256x256);
* grey levels: mean, spread and the 1st / 99th percentiles (saturation shows as 0 or 255);
* local contrast: the mean over 16x16 windows of (standard deviation / mean);
* column banding: the spread of the column-mean profile, smoothed over 33 px so that the weave
  drops out, relative to the image mean (a line-scan camera's banding and falloff);
* row drift: the same along the rows (a line-scan strip is lit the same on every line, so this
  is small; an area-scan frame has a light gradient here).

`compare` puts a FabricSim preset's range beside a real set's values; the README says what to
look for.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

from fabgen.data import classes as classes_lib

STAT_NAMES = ("period_x", "period_y", "grey_mean", "grey_std", "grey_p1", "grey_p99",
              "local_contrast", "column_banding", "row_drift")
SMOOTH = 33  # pixels: longer than any weave repeat, so profiles show light and gain, not yarns


def spectrum_period(grey: np.ndarray, axis: int, min_period: float = 1.5,
                    max_period: float = 64.0) -> float:
  """Period (pixels) of the strongest spectral peak along `axis`, averaged over the other axis."""
  x = np.asarray(grey, np.float64)
  x = x - x.mean(axis=axis, keepdims=True)
  power = (np.abs(np.fft.rfft(x, axis=axis)) ** 2).mean(axis=1 - axis)
  freqs = np.fft.rfftfreq(x.shape[axis])
  max_period = min(max_period, x.shape[axis] / 4.0)  # at least 4 repeats: not the lighting
  ok = (freqs >= 1.0 / max_period) & (freqs <= 1.0 / min_period)
  if not ok.any():
    return float("nan")
  return float(1.0 / freqs[ok][np.argmax(power[ok])])


def local_contrast(grey: np.ndarray, window: int = 16) -> float:
  """Mean over non-overlapping windows of std / mean."""
  g = np.asarray(grey, np.float64)
  h, w = (g.shape[0] // window) * window, (g.shape[1] // window) * window
  blocks = g[:h, :w].reshape(h // window, window, w // window, window)
  mean = blocks.mean(axis=(1, 3))
  std = blocks.std(axis=(1, 3))
  return float(np.mean(std / np.maximum(mean, 1.0)))


def _smoothed_spread(profile: np.ndarray, mean: float) -> float:
  k = min(SMOOTH, len(profile))
  smooth = np.convolve(profile, np.ones(k) / k, mode="valid")
  return float(smooth.std() / mean)


def image_stats(image: np.ndarray) -> dict[str, float]:
  """The statistics of one image (uint8, greyscale or RGB; colour is averaged to grey)."""
  g = np.asarray(image, np.float64)
  if g.ndim == 3:
    g = g.mean(axis=-1)
  mean = max(float(g.mean()), 1.0)
  return {
      "period_x": spectrum_period(g, 1), "period_y": spectrum_period(g, 0),
      "grey_mean": float(g.mean()), "grey_std": float(g.std()),
      "grey_p1": float(np.percentile(g, 1)), "grey_p99": float(np.percentile(g, 99)),
      "local_contrast": local_contrast(g),
      "column_banding": _smoothed_spread(g.mean(axis=0), mean),
      "row_drift": _smoothed_spread(g.mean(axis=1), mean),
  }


def summarise(stats: Iterable[dict[str, float]]) -> dict[str, dict[str, float]]:
  """Per statistic: 10th percentile, median and 90th percentile over images."""
  rows = list(stats)
  out = {}
  for name in STAT_NAMES:
    v = np.asarray([r[name] for r in rows], np.float64)
    v = v[np.isfinite(v)]
    out[name] = ({"p10": float(np.percentile(v, 10)), "median": float(np.median(v)),
                  "p90": float(np.percentile(v, 90))} if len(v) else {})
  return out


def preset_stats(preset: str, num: int, seed: int = 0, split: str = "source_good",
                 batch: int = 4) -> dict[str, dict[str, float]]:
  """Statistics of `num` defect-free FabricSim records of a preset (spread over its fabrics)."""
  from fabgen.data.fabricsim import FabricSim  # pylint: disable=g-import-not-at-top
  sim = FabricSim(preset, seed)
  n = min(num, sim.num_records(split))
  recs = sim.records(split, 0, n, batch_size=min(batch, n))
  return summarise(image_stats(im) for im in recs["image"])


def source_stats(spec: str, num: int) -> dict[str, dict[str, float]]:
  """Statistics of up to `num` defect-free images of any reader spec (e.g. `data/aitex@good`)."""
  from fabgen.data.readers import open_source, spread_indices  # pylint: disable=g-import-not-at-top
  src = open_source(spec)
  rows = []
  for i in spread_indices(len(src), num):
    s = src[i]
    if (np.asarray(s["instance_class"]) >= 0).any():
      continue  # defect images would skew the statistics of the cloth
    rows.append(image_stats(s["image"]))
  if not rows:
    raise ValueError(f"{spec}: none of the {num} images read is defect-free")
  return summarise(rows)


def markdown(columns: dict[str, dict[str, dict[str, float]]]) -> str:
  """A table: a row per statistic, a column per data set (median and 10-90 % range)."""
  head = ["statistic"] + list(columns)
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name in STAT_NAMES:
    cells = [name]
    for col in columns.values():
      s = col.get(name) or {}
      cells.append(f"{s['median']:.3g} ({s['p10']:.3g}-{s['p90']:.3g})" if s else "-")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def linescan_sheet(preset: str = "linescan", seed: int = 0, crop: int = 768,
                   split: str = "train") -> Image.Image:
  """A row per class (and one defect-free): the whole strip at 1/4 scale with the defect boxed,
  and a full-resolution crop around the defect with its exact mask outlined."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  from fabgen.data.fabricsim import FabricSim  # pylint: disable=g-import-not-at-top
  sim = FabricSim(preset, seed)
  fabrics = sim.fabric_ids(split)
  specs = [(int(fabrics[0]), 5, -1)] + [(int(fabrics[(5 * int(c) + 3) % len(fabrics)]), 2,
                                         int(c)) for c in sim.class_ids]
  specs = np.asarray(specs, np.int32)
  rows = []
  for lo in range(0, len(specs), 4):
    part = specs[lo:lo + 4]
    out = sim.render_batch(part[:, 0], part[:, 1], part[:, 2])
    rows += [{k: np.asarray(v)[n] for k, v in out.items()} for n in range(len(part))]
  h, w = sim.preset.shape
  crop = min(crop, w)
  scale = 4
  tiles = []
  for sample, (fabric, _, cls) in zip(rows, specs):
    img = sample["image"]
    mask = sample["instance_mask"] > 0
    ys, xs = np.nonzero(mask)
    cx = int(xs.mean()) if len(xs) else w // 2
    x0 = int(np.clip(cx - crop // 2, 0, w - crop))
    detail = img[:, x0:x0 + crop].copy()
    edge = mask & ~ndimage.binary_erosion(mask)
    ring = edge[:, x0:x0 + crop]
    detail[ring] = (0.35 * detail[ring] + 0.65 * np.array([255, 40, 40])).astype(np.uint8)
    overview = Image.fromarray(img).resize((w // scale, h // scale), Image.BILINEAR)
    d = ImageDraw.Draw(overview)
    d.rectangle([x0 // scale, 0, (x0 + crop) // scale - 1, h // scale - 1], outline=(255, 200, 0))
    name = classes_lib.CLASSES[cls] if cls >= 0 else "defect-free"
    caption = (f"{name} (fabric {fabric}); whole {w}x{h} strip at 1/{scale}, then a "
               f"{crop}-px window at full resolution, mask outlined")
    tile = Image.new("RGB", (max(w // scale, crop), 16 + h // scale + 4 + h), "white")
    ImageDraw.Draw(tile).text((2, 2), caption, fill=(0, 0, 0))
    tile.paste(overview, (0, 16))
    tile.paste(Image.fromarray(detail), (0, 16 + h // scale + 4))
    tiles.append(tile)
  sheet = Image.new("RGB", (tiles[0].width, sum(t.height + 6 for t in tiles)), "white")
  y = 0
  for t in tiles:
    sheet.paste(t, (0, y))
    y += t.height + 6
  return sheet


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", action="append", default=[], help="FabricSim preset(s)")
  parser.add_argument("--data", action="append", default=[],
                      help="reader spec(s) of defect-free images (your own strips)")
  parser.add_argument("--num", type=int, default=16)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--sheet", default="", help="write the line-scan contact sheet here")
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)
  columns = {}
  for p in args.preset:
    columns[f"fabricsim:{p}"] = preset_stats(p, args.num, args.seed)
  for spec in args.data:
    columns[spec] = source_stats(spec, args.num)
  if columns:
    print(markdown(columns))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(columns, f, indent=1)
  if args.sheet:
    os.makedirs(os.path.dirname(args.sheet) or ".", exist_ok=True)
    linescan_sheet(args.preset[0] if args.preset else "linescan", args.seed).save(args.sheet)
    print(f"wrote {args.sheet}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
