"""Roll inspection without a detector: strips -> web, joins across strips, ASTM D5430 points."""

import numpy as np
import pytest

from fabgen.inspection import grading
from fabgen.inspection import roll
from fabgen.inspection import synthetic_roll
from fabgen.inspection import web as web_lib

NAMES = {0: "color_spot", 3: "broken_end", 5: "white_stripe"}


def _dets(boxes, labels, scores=None):
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return {"boxes": boxes, "labels": np.asarray(labels, np.int64),
          "scores": np.asarray(scores if scores is not None else [0.9] * len(boxes))}


def test_points_by_largest_dimension():
  assert [grading.points_for(mm) for mm in (1, 76.2, 76.3, 152.4, 152.5, 228.6, 228.7, 2000)] \
      == [1, 1, 2, 2, 3, 3, 4, 4]


def test_grade_caps_a_yard_at_four_and_charges_long_defects_per_yard():
  yard = grading.M_PER_YARD
  defects = [
      # three 3-point defects in the first yard: 9 points capped at 4
      *({"size_mm": 200, "along_start_m": 0.1 * i, "along_end_m": 0.1 * i + 0.01} for i in range(3)),
      # one 1-point defect in the third yard
      {"size_mm": 10, "along_start_m": 2 * yard + 0.2, "along_end_m": 2 * yard + 0.21},
      # a stripe from yard 4 into yard 6: 4 points in each of yards 4, 5, 6
      {"size_mm": 2200, "along_start_m": 3 * yard + 0.5, "along_end_m": 5 * yard + 0.3},
  ]
  g = grading.grade(defects, length_m=6 * yard, inspected_width_m=1.5)
  assert g["points_per_yard"] == [4, 0, 1, 4, 4, 4]
  assert g["total_points"] == 17
  assert [d["points"] for d in defects] == [3, 3, 3, 1, 4]
  area = 6 * yard * 1.5
  assert g["points_per_100m2"] == pytest.approx(100 * 17 / area, abs=1e-3)
  assert g["points_per_100yd2"] == pytest.approx(100 * 17 / (area / yard ** 2), abs=1e-3)
  assert g["accepted"] == (g["points_per_100yd2"] <= 40)


def test_pieces_across_strip_boundaries_join_and_others_do_not():
  web = web_lib.Web((100, 100, 100), 200, pitch_mm=0.5, width_m=0.2)
  strips = [
      # a stripe through all three strips (class 5), and a spot at strip 0's bottom (class 0)
      _dets([[50, 80, 54, 100], [10, 90, 20, 100]], [5, 0], [0.6, 0.8]),
      _dets([[51, 0, 55, 100], [150, 0, 160, 10], [12, 0, 22, 5]], [5, 0, 3], [0.9, 0.7, 0.5]),
      _dets([[50, 0, 54, 30]], [5], [0.7]),
  ]
  report = roll.inspect_detections(strips, web, NAMES)
  d = report["defects"]
  assert len(d) == 4 and report["pieces_joined"] == 1
  stripe = [x for x in d if x["class"] == "white_stripe"]
  assert len(stripe) == 1 and stripe[0]["strips"] == [0, 1, 2]
  assert stripe[0]["along_start_m"] == pytest.approx(80 * 0.5e-3)
  assert stripe[0]["along_end_m"] == pytest.approx(230 * 0.5e-3)
  assert stripe[0]["length_mm"] == pytest.approx(150 * 0.5)
  assert stripe[0]["width_mm"] == pytest.approx(5 * 0.5)
  assert stripe[0]["score"] == pytest.approx(0.9)
  # The spot at strip 0's bottom and the broken end at strip 1's top: other classes, not joined;
  # the spot at x 150 in strip 1 does not overlap the one at x 10-20.
  assert sorted(x["class"] for x in d) == ["broken_end", "color_spot", "color_spot",
                                           "white_stripe"]


def test_strips_wider_than_the_web_are_an_error():
  with pytest.raises(ValueError, match="more than the web width"):
    web_lib.Web((10,), 4096, pitch_mm=0.5, width_m=1.6)


def test_synthetic_fabricsim_roll_positions_and_joins():
  """A roll of FabricSim strips with known defects: every defect comes back once, where it is."""
  web_image, labels, gt = synthetic_roll.build_web("tiny", rows=6, cols=1)
  strip_h, pitch = 40, 0.25  # 40-row strips cut through the 64-px images' defects
  heights = synthetic_roll.strip_heights(web_image.shape[0], strip_h)
  web = web_lib.Web(heights, web_image.shape[1], pitch_mm=pitch, width_m=0.02)
  boundaries = np.cumsum(heights)[:-1]
  expected = synthetic_roll.expected_defects(gt)
  crossing = [g for g in expected if any(g["box"][1] < b < g["box"][3] for b in boundaries)]
  assert len(expected) >= 5 and len(crossing) >= 2, "the roll must have defects across strips"
  report = roll.inspect_detections(synthetic_roll.oracle_detections(labels, gt, strip_h), web,
                                   {c: f"c{c}" for c in range(6)})
  got = report["defects"]
  assert len(got) == len(expected)
  assert report["pieces_joined"] == len(crossing)
  for g in expected:
    x0, y0, x1, y1 = g["box"]
    match = [d for d in got if d["class_id"] == g["class_id"]
             and abs(d["along_start_m"] - y0 * pitch / 1000) < 1e-6
             and abs(d["across_start_m"] - x0 * pitch / 1000) < 1e-6]
    assert len(match) == 1, f"defect {g} not found once in {got}"
    d = match[0]
    assert d["along_m"] == pytest.approx((y0 + y1) / 2 * pitch / 1000, abs=1e-4)
    assert d["across_m"] == pytest.approx((x0 + x1) / 2 * pitch / 1000, abs=1e-4)
    assert d["length_mm"] == pytest.approx((y1 - y0) * pitch, abs=0.01)
    assert d["size_mm"] == pytest.approx(max(y1 - y0, x1 - x0) * pitch, abs=0.01)
    assert d["points"] == 1  # every tiny FabricSim defect is far below 3 in
  assert report["grade"]["total_points"] == min(len(expected), 4)  # a 9.6-cm roll is one yard: cap 4
