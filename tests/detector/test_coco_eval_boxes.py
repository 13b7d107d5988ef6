"""COCO box mAP through pycocotools on hand-made perfect and imperfect predictions."""

import math

import numpy as np
import pytest

from fabgen.detector import coco_eval
from test_metrics_defect import make_sample  # pylint: disable=g-bad-import-order


def two_images():
  s1 = make_sample(64, 64, [(0, [(4, 4, 20, 20)]), (3, [(40, 0, 44, 30), (40, 34, 44, 64)])])
  s2 = make_sample(64, 64, [(1, [(10, 30, 50, 50)])])
  return s1, s2


def test_perfect_predictions_score_one():
  s1, s2 = two_images()
  ev = coco_eval.CocoBoxEvaluator()
  ev.add(s1, s1["boxes"][:3], np.array([0.9, 0.8, 0.7]), s1["box_class"][:3])
  ev.add(s2, s2["boxes"][:1], np.array([0.6]), s2["box_class"][:1])
  res = ev.compute()
  assert res["map_50"] == pytest.approx(1.0)
  assert res["map_50_95"] == pytest.approx(1.0)
  assert set(res["per_class"]) == {"color_spot", "oil_stain", "broken_end"}
  assert res["num_gt_boxes"] == 4


def test_imperfect_predictions():
  s1, s2 = two_images()
  ev = coco_eval.CocoBoxEvaluator()
  # color spot: shifted by 4 px on a 16-px box -> IoU = 12*16 / (2*256 - 192) = 0.6: counts at
  # 0.5..0.6 only. broken end: one of its two boxes found exactly. oil stain: wrong class.
  preds = np.array([[8, 4, 24, 20], [40, 0, 44, 30]], float)
  ev.add(s1, preds, np.array([0.9, 0.8]), np.array([0, 3]))
  ev.add(s2, s2["boxes"][:1], np.array([0.6]), np.array([2]))
  res = ev.compute()
  pc = res["per_class"]
  assert pc["color_spot"]["ap_50"] == pytest.approx(1.0)
  # IoU 0.6 passes thresholds 0.50 and 0.55 and 0.60 of ten -> AP@[.5:.95] = 0.3.
  assert pc["color_spot"]["ap_50_95"] == pytest.approx(0.3)
  # recall 0.5 at precision 1 -> 101-point interpolated AP = 51/101.
  assert pc["broken_end"]["ap_50"] == pytest.approx(51 / 101)
  assert pc["oil_stain"]["ap_50"] == 0.0
  # knot was predicted but has no ground truth: not a column, and pycocotools ignores it.
  assert "knot" not in pc
  assert res["map_50"] == pytest.approx((1.0 + 51 / 101 + 0.0) / 3)


def test_no_detections_is_zero_and_no_ground_truth_is_an_error():
  s1, _ = two_images()
  ev = coco_eval.CocoBoxEvaluator()
  ev.add(s1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
  assert ev.compute()["map_50"] == 0.0
  empty = coco_eval.CocoBoxEvaluator()
  empty.add(make_sample(8, 8, []), np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
  with pytest.raises(ValueError, match="ground-truth box"):
    empty.compute()


def test_results_are_coco_xywh():
  out = coco_eval.results_for_image(7, np.array([[1, 2, 11, 7], [0, 0, 0, 5]]),
                                    np.array([0.5, 0.9]), np.array([2, 1]))
  assert out == [{"image_id": 7, "category_id": 2, "bbox": [1.0, 2.0, 10.0, 5.0], "score": 0.5}]
  assert not math.isnan(out[0]["score"])
