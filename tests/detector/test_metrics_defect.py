"""Defect, pixel and image-level metrics against hand-computed examples."""

import math

import numpy as np
import pytest

from fabgen.data import sample as sample_lib
from fabgen.detector import metrics


def make_sample(h, w, defects):
  """A sample-format record; `defects` = [(class_id, [boxes...])], masks filled from boxes."""
  mask = np.zeros((h, w), np.int32)
  inst_class = np.full(sample_lib.MAX_INSTANCES, -1, np.int32)
  boxes = np.zeros((sample_lib.MAX_BOXES, 4), np.float32)
  box_class = np.full(sample_lib.MAX_BOXES, -1, np.int32)
  box_inst = np.zeros(sample_lib.MAX_BOXES, np.int32)
  j = 0
  for k, (cls, bs) in enumerate(defects):
    inst_class[k] = cls
    for b in bs:
      x0, y0, x1, y1 = b
      mask[y0:y1, x0:x1] = k + 1
      boxes[j], box_class[j], box_inst[j] = b, cls, k + 1
      j += 1
  return {"image": np.zeros((h, w, 3), np.uint8), "instance_mask": mask,
          "instance_class": inst_class, "boxes": boxes, "box_class": box_class,
          "box_instance": box_inst, "fabric_id": np.int32(-1)}


def test_matching_rule_directions():
  gt = np.array([[0, 0, 100, 4]], float)        # a long thin defect, area 400
  inside = np.array([[10, 0, 40, 4]], float)   # 120 px, entirely inside: IoU 0.3
  small = np.array([[10, 0, 20, 4]], float)    # 40 px inside: IoU 0.1, but all of it on the defect
  shifted = np.array([[0, 3, 100, 7]], float)  # 2-px-wide overlap strip? 1 row: IoU 100/700
  big = np.array([[0, 0, 100, 16]], float)     # covers the whole defect; IoU 0.25 exactly
  finds, hits = metrics.match_matrices(np.concatenate([inside, small, shifted, big]), gt)
  assert finds[:, 0].tolist() == [True, False, False, True]
  assert hits[:, 0].tolist() == [True, True, False, True]
  np.testing.assert_allclose(metrics.box_iou(shifted, gt), [[100 / 700]])


def test_defect_level_hand_computed():
  # Image 1: class 0 spot found; class 3 broken end labelled as two boxes, found via the 2nd box;
  # one false alarm of class 0 on background; one class-1 prediction on the spot (wrong class).
  s1 = make_sample(64, 64, [(0, [(4, 4, 12, 12)]), (3, [(40, 0, 42, 20), (40, 30, 42, 64)])])
  b1 = np.array([[5, 5, 12, 12], [39, 32, 43, 60], [50, 50, 60, 60], [4, 4, 12, 12]], float)
  sc1 = np.array([0.9, 0.8, 0.6, 0.3])
  lb1 = np.array([0, 3, 0, 1])
  # Image 2: a class 0 spot that is missed (only a low-score prediction).
  s2 = make_sample(64, 64, [(0, [(20, 20, 30, 30)])])
  b2 = np.array([[20, 20, 30, 30]], float)
  sc2 = np.array([0.2])
  lb2 = np.array([0])
  ev = metrics.DefectEvaluator(num_classes=6)
  ev.add(s1, b1, sc1, lb1)
  ev.add(s2, b2, sc2, lb2)
  res = ev.defect_scores(threshold=0.5)
  # class 0: preds >= .5: 0.9 (TP), 0.6 (FP) -> P = 1/2; GT: 2, found 1 -> R = 1/2; F = 1/2.
  assert (res[0].precision, res[0].recall, res[0].f1) == (0.5, 0.5, 0.5)
  # class 3: one pred, TP; one GT found -> all 1.
  assert (res[3].precision, res[3].recall, res[3].f1) == (1.0, 1.0, 1.0)
  # class 1: only prediction (0.3) is below threshold, no GT -> NaN (absent).
  assert math.isnan(res[1].f1)
  # At threshold 0.25 the class-1 prediction counts: a false positive for class 1 (no class-1 GT).
  low = ev.defect_scores(threshold=0.25)
  assert (low[1].precision, low[1].f1, low[1].num_pred) == (0.0, 0.0, 1)
  # Threshold 0.1: class 0 preds .9 TP, .6 FP, .2 TP; GT both found -> P 2/3, R 1, F 0.8.
  t = ev.defect_scores(threshold=0.1)[0]
  assert t.precision == pytest.approx(2 / 3) and t.recall == 1.0 and t.f1 == pytest.approx(0.8)
  summary = ev.summary(0.5, [f"c{i}" for i in range(6)])
  assert list(summary["classes"]) == ["c0", "c3"]
  assert summary["mean_f1"]["defect"] == pytest.approx(0.75)


def test_confusion_matrix_hand_computed():
  s = make_sample(64, 64, [(0, [(0, 0, 10, 10)]), (2, [(30, 30, 40, 40)]), (1, [(50, 0, 60, 8)])])
  boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40], [20, 50, 30, 60]], float)
  scores = np.array([0.7, 0.9, 0.8, 0.95])
  labels = np.array([0, 1, 2, 4])
  ev = metrics.DefectEvaluator(num_classes=6)
  ev.add(s, boxes, scores, labels)
  cm = ev.confusion_matrix(0.5)
  expect = np.zeros((7, 7), int)
  expect[0, 1] = 1   # the class-0 defect: best-scoring finder is class 1 (0.9 > 0.7)
  expect[2, 2] = 1   # correct
  expect[1, 6] = 1   # the class-1 defect: missed
  expect[6, 4] = 1   # class-4 prediction on background
  np.testing.assert_array_equal(cm, expect)


def test_pr_curve_exact_and_ap():
  s = make_sample(64, 64, [(0, [(0, 0, 8, 8)]), (0, [(20, 0, 28, 8)])])
  boxes = np.array([[0, 0, 8, 8], [40, 40, 48, 48], [20, 0, 28, 8]], float)
  scores = np.array([0.9, 0.8, 0.7])
  ev = metrics.DefectEvaluator(num_classes=1)
  ev.add(s, boxes, scores, np.zeros(3, int))
  pr = ev.pr_curve(0)
  np.testing.assert_allclose(pr["thresholds"], [0.9, 0.8, 0.7])
  np.testing.assert_allclose(pr["precision"], [1.0, 0.5, 2 / 3])
  np.testing.assert_allclose(pr["recall"], [0.5, 0.5, 1.0])
  # AP: 0.5 * 1.0 + 0.5 * (2/3)
  assert pr["ap"] == pytest.approx(0.5 + 1 / 3)


def test_pixel_and_image_level_hand_computed():
  s = make_sample(4, 4, [(1, [(0, 0, 2, 2)])])    # 4 pixels of class 1
  seg = np.zeros((4, 4, 3))
  seg[..., 0] = 1.0
  seg[0, 0:2, 2] = 2.0                             # 2 correct pixels
  seg[3, 3, 2] = 2.0                               # 1 false pixel
  seg[1, 0, 1] = 2.0                               # a true class-1 pixel called class 0
  ev = metrics.DefectEvaluator(num_classes=2)
  ev.add(s, np.array([[0, 0, 2, 2]]), np.array([0.9]), np.array([1]), seg_probs=seg)
  ev.add(make_sample(4, 4, []), np.array([[0, 0, 1, 1]]), np.array([0.4]), np.array([0]),
         seg_probs=np.stack([np.ones((4, 4)), np.zeros((4, 4)), np.zeros((4, 4))], -1))
  px = ev.pixel_scores()
  assert (px[1].precision, px[1].recall) == (2 / 3, 0.5)
  assert px[1].f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
  assert px[0].num_true == 0 and px[0].num_pred == 1 and px[0].f1 == 0.0
  per_class, any_defect = ev.image_scores(0.3)
  assert (any_defect.precision, any_defect.recall) == (0.5, 1.0)   # defect-free image flagged
  assert per_class[1].f1 == 1.0
  per_class, any_defect = ev.image_scores(0.5)
  assert any_defect.f1 == 1.0


def test_instance_without_boxes_uses_its_mask():
  s = make_sample(16, 16, [(2, [(3, 4, 9, 7)])])
  s["boxes"][:] = 0
  s["box_instance"][:] = 0
  cls, groups = metrics.gt_defects(s)
  assert cls.tolist() == [2]
  np.testing.assert_array_equal(groups[0], [[3, 4, 9, 7]])


def test_bad_inputs_name_the_problem():
  ev = metrics.DefectEvaluator(num_classes=2)
  s = make_sample(8, 8, [(0, [(0, 0, 2, 2)])])
  with pytest.raises(ValueError, match="class id 5"):
    ev.add(s, np.zeros((1, 4)), np.ones(1), np.array([5]))
  with pytest.raises(ValueError, match="disagree in length"):
    ev.add(s, np.zeros((2, 4)), np.ones(1), np.array([0]))
  with pytest.raises(ValueError, match="seg_probs shape"):
    ev.add(s, np.zeros((1, 4)), np.ones(1), np.array([0]), seg_probs=np.zeros((8, 8, 5)))
