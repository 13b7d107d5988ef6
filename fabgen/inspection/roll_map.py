"""The roll map: the inspected web as a band, every defect where it is, coloured by class.

Drawn with pillow like the evaluation pictures (`fabgen.data.drawing`). The horizontal axis is
the length along the roll in metres, the vertical axis the position across it (0 at the top);
a defect is drawn at its true extent (at least a few pixels, so a 1-mm knot stays visible) and
ringed by a marker whose size grows with its ASTM D5430 points; strip boundaries are faint lines.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from PIL import Image, ImageDraw

from fabgen.data import drawing

_POINT_RADIUS = {1: 3, 2: 5, 3: 7, 4: 9}


def _nice_step(span: float, ticks: int = 8) -> float:
  raw = span / max(ticks, 1)
  mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
  for m in (1, 2, 5, 10):
    if raw <= m * mag:
      return m * mag
  return 10 * mag


def draw_roll_map(defects: Sequence[Mapping], length_m: float, width_m: float,
                  strip_starts_m: Sequence[float] = (), grade: Mapping | None = None,
                  title: str = "", plot_width: int = 1100) -> Image.Image:
  """The roll map as a PIL image (defect dicts from `fabgen.inspection.web.defect_records`)."""
  band_h = int(min(max(plot_width * width_m / max(length_m, 1e-9), 140), 420))
  left, right, top, bottom = 60, 190, 44, 40
  img = Image.new("RGB", (left + plot_width + right, top + band_h + bottom), "white")
  d = ImageDraw.Draw(img)
  font, small = drawing.font(13), drawing.font(11)
  sx = plot_width / max(length_m, 1e-9)
  sy = band_h / max(width_m, 1e-9)
  d.rectangle([left, top, left + plot_width, top + band_h], fill=(236, 233, 225),
              outline=(90, 90, 90))
  for s in strip_starts_m[1:]:
    x = left + s * sx
    d.line([(x, top), (x, top + band_h)], fill=(214, 210, 200))
  step = _nice_step(length_m)
  t = 0.0
  while t <= length_m + 1e-9:
    x = left + t * sx
    d.line([(x, top + band_h), (x, top + band_h + 4)], fill="black")
    d.text((x - 10, top + band_h + 6), f"{t:g}", fill="black", font=small)
    t += step
  d.text((left + plot_width / 2 - 60, top + band_h + 22), "along the roll (m)", fill="black",
         font=small)
  ystep = _nice_step(width_m, 4)
  t = 0.0
  while t <= width_m + 1e-9:
    y = top + t * sy
    d.line([(left - 4, y), (left, y)], fill="black")
    d.text((8, y - 6), f"{t:g} m", fill="black", font=small)
    t += ystep
  seen: dict[str, int] = {}
  for rec in defects:
    color = drawing.class_colour(rec["class_id"])
    seen.setdefault(rec["class"], rec["class_id"])
    x0, x1 = left + rec["along_start_m"] * sx, left + rec["along_end_m"] * sx
    y0, y1 = top + rec["across_start_m"] * sy, top + rec["across_end_m"] * sy
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x0, x1 = min(x0, cx - 1.5), max(x1, cx + 1.5)
    y0, y1 = min(y0, cy - 1.5), max(y1, cy + 1.5)
    d.rectangle([x0, y0, x1, y1], fill=color)
    r = _POINT_RADIUS.get(int(rec.get("points", 1)), 3) + 2
    d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=color, width=2)
  lx = left + plot_width + 16
  d.text((lx, top), "class", fill="black", font=font)
  for k, (name, cid) in enumerate(sorted(seen.items(), key=lambda kv: kv[1])):
    y = top + 20 + 18 * k
    d.rectangle([lx, y + 2, lx + 12, y + 12], fill=drawing.class_colour(cid))
    d.text((lx + 18, y), name, fill="black", font=small)
  head = title or "roll map"
  if grade:
    head += (f"   {len(defects)} defects, {grade['total_points']} points = "
             f"{grade['points_per_100m2']:.1f} / 100 m2 ({grade['points_per_100yd2']:.1f} / 100 yd2, "
             f"{'accepted' if grade['accepted'] else 'rejected'} at "
             f"{grade['limit_points_per_100yd2']:g})")
  d.text((left, 14), head, fill="black", font=font)
  return img
