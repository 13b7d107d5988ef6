"""ASTM D5430 four-point grading of a roll from its defect list.

The four-point system gives each defect penalty points by its largest dimension, in any
direction: up to 3 in = 1 point, over 3 up to 6 in = 2, over 6 up to 9 in = 3, over 9 in = 4.
No linear yard of fabric is charged more than 4 points, and a defect that runs on for more than
one yard (a continuous stripe, a long broken end) is charged 4 points in every yard it touches.
The roll's figure is points per 100 square units of inspected fabric; we give it per 100 m^2 and
per 100 yd^2 (the unit of the usual buyer-seller acceptance limit, often 40 points per 100 yd^2,
which is a contract term, not part of the standard: hence a parameter).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

MM_PER_INCH = 25.4
M_PER_YARD = 0.9144
LIMITS_IN = (3.0, 6.0, 9.0)  # upper bounds of 1, 2 and 3 points
MAX_POINTS_PER_YARD = 4


def points_for(size_mm: float) -> int:
  """Penalty points of one defect of largest dimension `size_mm`."""
  inches = float(size_mm) / MM_PER_INCH
  for points, limit in enumerate(LIMITS_IN, start=1):
    if inches <= limit + 1e-9:
      return points
  return 4


def grade(defects: Sequence[Mapping], length_m: float, inspected_width_m: float,
          max_points_per_100yd2: float = 40.0) -> dict:
  """Points per defect (added to each dict as `points`), per yard, and for the roll.

  Args:
    defects: records with `size_mm`, `along_start_m` and `along_end_m` (`fabgen.inspection.web`).
    length_m: inspected length of the roll section.
    inspected_width_m: width the points are spread over.
    max_points_per_100yd2: the acceptance limit to grade against.

  Returns:
    {"total_points", "points_per_100m2", "points_per_100yd2", "yards", "accepted", ...}.
  """
  if length_m <= 0 or inspected_width_m <= 0:
    raise ValueError(f"cannot grade a roll of {length_m} m x {inspected_width_m} m")
  yards = max(1, math.ceil(length_m / M_PER_YARD - 1e-9))
  per_yard = [0] * yards
  for d in defects:
    pts = points_for(d["size_mm"])
    d["points"] = pts
    first = min(int(d["along_start_m"] // M_PER_YARD), yards - 1)
    last = min(int(max(d["along_end_m"] - 1e-9, d["along_start_m"]) // M_PER_YARD), yards - 1)
    if last > first:  # runs on through more than one yard: 4 in every yard it touches
      for y in range(first, last + 1):
        per_yard[y] = MAX_POINTS_PER_YARD
    else:
      per_yard[first] = min(MAX_POINTS_PER_YARD, per_yard[first] + pts)
  total = sum(per_yard)
  area_m2 = length_m * inspected_width_m
  area_yd2 = area_m2 / (M_PER_YARD ** 2)
  per_100m2 = 100.0 * total / area_m2
  per_100yd2 = 100.0 * total / area_yd2
  return {"total_points": int(total), "points_before_yard_cap": int(sum(d["points"] for d in defects)),
          "points_per_100m2": round(per_100m2, 3), "points_per_100yd2": round(per_100yd2, 3),
          "inspected_m2": round(area_m2, 4), "linear_yards": yards,
          "points_per_yard": per_yard, "limit_points_per_100yd2": float(max_points_per_100yd2),
          "accepted": bool(per_100yd2 <= max_points_per_100yd2)}
