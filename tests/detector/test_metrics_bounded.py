"""Bounded-memory metrics: histogram summaries equal an exact per-prediction reference, memory
does not grow with the number of images, class-agnostic rows, false alarms, per-class thresholds."""

import math

import numpy as np
import pytest

from fabgen.detector import metrics
from test_metrics_defect import make_sample  # pylint: disable=g-bad-import-order


def random_set(n_images, k, seed=0):
  """(samples, predictions) with random defects and noisy predictions near and away from them."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n_images):
    defects = []
    for _ in range(rng.integers(0, 4)):
      x, y = rng.integers(0, 100, 2)
      w, h = rng.integers(4, 28, 2)
      defects.append((int(rng.integers(0, k)), [(x, y, x + w, y + h)]))
    s = make_sample(128, 128, defects)
    boxes, scores, labels = [], [], []
    for cls, (b,) in defects:
      for _ in range(rng.integers(0, 3)):  # hits of the right or a wrong class
        jitter = rng.integers(-3, 4, 4)
        boxes.append(np.asarray(b) + jitter)
        labels.append(cls if rng.random() < 0.7 else int(rng.integers(0, k)))
        scores.append(rng.random())
    for _ in range(rng.integers(0, 6)):      # false alarms anywhere
      x, y = rng.integers(0, 110, 2)
      boxes.append((x, y, x + 10, y + 10))
      labels.append(int(rng.integers(0, k)))
      scores.append(rng.random())
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    out.append((s, boxes, np.asarray(scores), np.asarray(labels, int)))
  return out


class ExactReference:
  """Per-prediction records, as the evaluator kept them before it was bounded."""

  def __init__(self, k):
    self.k = k
    self.preds = []   # (class, score, tp, hits any)
    self.gts = []     # (class, best score per predicted class [k])

  def add(self, s, boxes, scores, labels):
    gc, groups = metrics.gt_defects(s)
    for b, sc, lb in zip(boxes, scores, labels):
      tp = any_hit = False
      for c, g in zip(gc, groups):
        _, hits = metrics.match_matrices(b[None], g)
        if hits.any():
          any_hit = True
          tp |= c == lb
      self.preds.append((lb, sc, tp, any_hit))
    for c, g in zip(gc, groups):
      best = np.full(self.k, -np.inf)
      finds, _ = metrics.match_matrices(boxes, g)
      for j in np.nonzero(finds.any(axis=1))[0]:
        best[labels[j]] = max(best[labels[j]], scores[j])
      self.gts.append((c, best))

  def defect(self, c, t):
    n_pred = sum(1 for lb, sc, _, _ in self.preds if lb == c and sc >= t)
    tp = sum(1 for lb, sc, ok, _ in self.preds if lb == c and sc >= t and ok)
    own = [best[c] for gc, best in self.gts if gc == c]
    return tp, n_pred, sum(b >= t for b in own), len(own)

  def confusion(self, t):
    cm = np.zeros((self.k + 1, self.k + 1), int)
    for c, best in self.gts:
      cm[c, int(np.argmax(best)) if best.max() >= t else self.k] += 1
    for lb, sc, _, hit in self.preds:
      if sc >= t and not hit:
        cm[self.k, lb] += 1
    return cm


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.75])
def test_histogram_summaries_equal_exact_reference_on_grid_thresholds(threshold):
  k = 3
  ev, ref = metrics.DefectEvaluator(k), ExactReference(k)
  for s, b, sc, lb in random_set(40, k):
    ev.add(s, b, sc, lb)
    ref.add(s, b, sc, lb)
  got = ev.defect_scores(threshold)
  for c in range(k):
    tp, n_pred, found, n_true = ref.defect(c, threshold)
    assert (got[c].num_pred, got[c].num_true) == (n_pred, n_true)
    if n_pred:
      assert got[c].precision == pytest.approx(tp / n_pred)
    if n_true:
      assert got[c].recall == pytest.approx(found / n_true)
  np.testing.assert_array_equal(ev.confusion_matrix(threshold), ref.confusion(threshold))


def test_off_grid_thresholds_are_within_one_bin():
  k = 2
  ev, ref = metrics.DefectEvaluator(k), ExactReference(k)
  for s, b, sc, lb in random_set(30, k, seed=3):
    ev.add(s, b, sc, lb)
    ref.add(s, b, sc, lb)
  t = 0.4567
  lo, hi = math.floor(t * 1000) / 1000, math.ceil(t * 1000) / 1000
  for c in range(k):
    n_pred = ev.defect_scores(t)[c].num_pred
    assert ref.defect(c, hi)[1] <= n_pred <= ref.defect(c, lo)[1]
    assert n_pred == ref.defect(c, hi)[1]   # counts scores >= the next bin edge


def test_pr_curve_ap_matches_exact_sorting():
  k = 1
  ev, ref = metrics.DefectEvaluator(k), ExactReference(k)
  for s, b, sc, lb in random_set(40, k, seed=5):
    sc = np.round(sc, 3)  # on the bin grid: the curve must then be exact
    ev.add(s, b, sc, lb)
    ref.add(s, b, sc, lb)
  curve = ev.pr_curve(0)
  for t, p, r in zip(curve["thresholds"], curve["precision"], curve["recall"]):
    tp, n_pred, found, n_true = ref.defect(0, t)
    assert p == pytest.approx(tp / n_pred) and r == pytest.approx(found / n_true)


def test_memory_does_not_grow_with_images():
  def nbytes(ev):
    return sum(v.nbytes for v in vars(ev).values() if isinstance(v, np.ndarray))
  data = random_set(60, 4, seed=1)
  one, many = metrics.DefectEvaluator(4), metrics.DefectEvaluator(4)
  one.add(*data[0])
  for d in data:
    many.add(*d)
  assert nbytes(one) == nbytes(many)
  assert not any(isinstance(v, list) for v in vars(many).values())


def test_class_agnostic_row_false_alarms_and_per_metre():
  # A defect of class 0 found by a class-1 box: wrong class, right place.
  s = make_sample(64, 64, [(0, [(10, 10, 20, 20)])])
  good = make_sample(64, 64, [])
  ev = metrics.DefectEvaluator(2)
  ev.add(s, np.array([[10, 10, 20, 20], [40, 40, 50, 50]]), np.array([0.9, 0.8]),
         np.array([1, 1]))
  ev.add(good, np.array([[0, 0, 5, 5], [8, 8, 12, 12], [30, 30, 40, 40]]),
         np.array([0.9, 0.7, 0.1]), np.array([0, 1, 1]))
  assert ev.defect_scores(0.5)[0].recall == 0.0              # per class: missed
  agn = ev.any_defect_scores(0.5)
  assert (agn.recall, agn.precision) == (1.0, 0.25)           # 1 of 4 alarms on the defect
  fa = ev.false_alarms(0.5, pixel_pitch_mm=0.5)
  assert fa["num_good_images"] == 1 and fa["per_good_image"] == 2.0
  assert fa["stray_predictions"] == 3
  assert fa["metres"] == pytest.approx(128 * 0.5 / 1000)
  assert fa["per_metre"] == pytest.approx(3 / 0.064)
  summary = ev.summary(0.5, ["a", "b"], pixel_pitch_mm=0.5)
  assert summary["any_defect"]["defect"]["recall"] == 1.0


def test_thresholds_maximising_f1_pick_the_best_f():
  # Class 0: true positives score 0.8 and 0.7, false alarms 0.9 and 0.2 -> best F at 0.7.
  s = make_sample(64, 64, [(0, [(0, 0, 8, 8)]), (0, [(20, 0, 28, 8)])])
  boxes = np.array([[0, 0, 8, 8], [20, 0, 28, 8], [40, 40, 48, 48], [50, 50, 58, 58]], float)
  ev = metrics.DefectEvaluator(1)
  ev.add(s, boxes, np.array([0.8, 0.7, 0.9, 0.2]), np.zeros(4, int))
  assert metrics.thresholds_maximising_f1(ev) == {0: pytest.approx(0.7)}
  empty = metrics.DefectEvaluator(2)
  assert metrics.thresholds_maximising_f1(empty, [1], default=0.4) == {1: 0.4}
  out = ev.summary(0.85, ["a"], class_thresholds={0: 0.7})
  assert out["at_class_thresholds"]["a"]["f1"] == pytest.approx(0.8)
  assert out["classes"]["a"]["defect"]["f1"] == 0.0


def test_pixel_pr_curve_from_probability_histograms():
  s = make_sample(4, 4, [(0, [(0, 0, 2, 2)])])
  seg = np.zeros((4, 4, 2))
  seg[..., 1] = 0.1
  seg[0:2, 0:2, 1] = 0.9
  seg[3, 3, 1] = 0.6
  seg[..., 0] = 1 - seg[..., 1]
  ev = metrics.DefectEvaluator(1)
  ev.add(s, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), seg_probs=seg)
  curve = ev.pixel_pr_curve(0)
  np.testing.assert_allclose(curve["thresholds"], [0.9, 0.6, 0.1])
  np.testing.assert_allclose(curve["precision"], [1.0, 0.8, 4 / 16])
  assert curve["ap"] == pytest.approx(1.0)
