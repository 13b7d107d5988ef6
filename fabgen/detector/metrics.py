"""Defect-detection metrics as the paper reports them: F-measure per defect class.

Three levels, accumulated image by image on the host (numpy) and summarised at any score
threshold afterwards, so one pass over a data set yields the table, the confusion matrix and the
precision-recall curves:

* **Defect level.** A ground-truth *defect* is one instance of the sample format (one
  `instance_class` entry; its boxes are the minimal rectangles of its connected components, see
  `fabgen.data.sample`). The matching rule, between a predicted box p and a ground-truth box g:

    - p *finds* g   when IoU(p, g) >= 0.25  or  area(p & g) >= 0.5 * area(g);
    - p *hits*  g   when IoU(p, g) >= 0.25  or  area(p & g) >= 0.5 * area(p).

  A ground-truth defect counts as found when a prediction **of its class** (score >= threshold)
  finds one of its boxes; a prediction is a true positive when it hits a box of a ground-truth
  defect **of its class**. Recall = found defects / defects, precision = true-positive
  predictions / predictions, F = 2PR / (P + R).
  Why not COCO's IoU >= 0.5 one-to-one rule: fabric defects are often a few pixels wide and
  hundreds long (broken ends, white stripes); a 2-pixel offset of such a box halves its IoU, and
  a broken end interrupted by the weave is labelled as several boxes that a detector may well
  predict as one (or the other way round). Inspection asks "was the defect flagged, and was each
  alarm on a real defect?", which the covering clauses answer; IoU >= 0.25 keeps compact defects
  (spots, knots) honest. Box mAP with the COCO rule is reported separately (`coco_eval`).

* **Pixel level.** From the segmentation head: the predicted class of a pixel is the argmax of
  `seg_probs` (channel 0 = background, channel c + 1 = class c); the truth is the instance
  mask's class. Per class: F from the pixel counts summed over the data set.

* **Image level.** An image is defective when it has a ground-truth defect; it is predicted
  defective (for class c) when a prediction (of class c) scores >= threshold. Per class and for
  "any defect".

The confusion matrix is at defect level: rows are ground-truth classes plus a last
"background" row for predictions that hit no defect at all; columns are predicted classes plus a
last "missed" column for defects that no prediction (of any class) finds. A defect found by
predictions of several classes is counted under the class of the highest-scoring one.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

IOU_THRESHOLD = 0.25
COVER_THRESHOLD = 0.5


def box_area(boxes: np.ndarray) -> np.ndarray:
  """Areas of xyxy boxes (x1/y1 exclusive); degenerate boxes have area 0."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Pairwise intersection areas [len(a), len(b)] of xyxy boxes."""
  a = np.asarray(a, np.float64).reshape(-1, 4)
  b = np.asarray(b, np.float64).reshape(-1, 4)
  w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
  h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
  return np.clip(w, 0, None) * np.clip(h, 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Pairwise IoU [len(a), len(b)]; 0 where both boxes are empty."""
  inter = intersection(a, b)
  union = box_area(a)[:, None] + box_area(b)[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_matrices(pred_boxes: np.ndarray, gt_boxes: np.ndarray,
                   iou_threshold: float = IOU_THRESHOLD,
                   cover_threshold: float = COVER_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
  """(finds [P, G], hits [P, G]): the two directions of the matching rule in the module doc."""
  inter = intersection(pred_boxes, gt_boxes)
  iou_ok = box_iou(pred_boxes, gt_boxes) >= iou_threshold
  gt_area = box_area(gt_boxes)[None, :]
  pred_area = box_area(pred_boxes)[:, None]
  finds = iou_ok | ((gt_area > 0) & (inter >= cover_threshold * gt_area))
  hits = iou_ok | ((pred_area > 0) & (inter >= cover_threshold * pred_area))
  return finds, hits


def gt_defects(sample: Mapping[str, Any]) -> tuple[np.ndarray, list[np.ndarray]]:
  """Ground-truth defects of one sample: (class ids [D], list of D box arrays [n_d, 4]).

  An instance without any box (e.g. a cropped tile where the writer dropped it) gets the
  bounding rectangle of its pixels in `instance_mask`; an instance with neither is skipped.
  """
  inst_class = np.asarray(sample["instance_class"]).reshape(-1)
  boxes = np.asarray(sample["boxes"], np.float64).reshape(-1, 4)
  box_instance = np.asarray(sample["box_instance"]).reshape(-1)
  mask = sample.get("instance_mask")
  classes, groups = [], []
  for k, cls in enumerate(inst_class):
    if cls < 0:
      continue
    own = boxes[box_instance == k + 1]
    own = own[box_area(own) > 0]
    if len(own) == 0 and mask is not None:
      ys, xs = np.nonzero(np.asarray(mask) == k + 1)
      if len(ys):
        own = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float64)
    if len(own):
      classes.append(int(cls))
      groups.append(own)
  return np.asarray(classes, np.int64), groups


def class_map(instance_mask: np.ndarray, instance_class: np.ndarray) -> np.ndarray:
  """Per-pixel class map (0 = background, c + 1 = class c) from an instance mask."""
  lut = np.zeros(len(instance_class) + 1, np.int64)
  lut[1:] = np.where(np.asarray(instance_class) >= 0, np.asarray(instance_class) + 1, 0)
  mask = np.asarray(instance_mask)
  if mask.max(initial=0) > len(instance_class):
    raise ValueError(f"instance_mask holds instance {mask.max()} but instance_class has only "
                     f"{len(instance_class)} entries")
  return lut[mask]


def f_measure(tp: float, n_pred: float, n_true: float) -> tuple[float, float, float]:
  """(precision, recall, F) with the conventions of the table: NaN where undefined.

  precision = tp / n_pred, recall = tp_true / n_true; when a class has neither predictions nor
  ground truth all three are NaN (the class is absent, not perfect).
  """
  p = tp / n_pred if n_pred else math.nan
  r = tp / n_true if n_true else math.nan
  if n_pred == 0 and n_true == 0:
    return math.nan, math.nan, math.nan
  p0 = 0.0 if math.isnan(p) else p
  r0 = 0.0 if math.isnan(r) else r
  f = 2 * p0 * r0 / (p0 + r0) if p0 + r0 > 0 else 0.0
  return p, r, f


@dataclasses.dataclass
class ClassScores:
  """Precision / recall / F of one class at one level, with the counts behind them."""
  precision: float
  recall: float
  f1: float
  num_true: int
  num_pred: int

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


NUM_SCORE_BINS = 1000  # score resolution of the accumulated histograms (0.001)


def score_slots(scores: np.ndarray, num_bins: int = NUM_SCORE_BINS) -> np.ndarray:
  """Histogram slot of each score: 0 = no score (-inf: nothing found it), 1 + floor(s * bins).

  Scores are probabilities in [0, 1]; anything outside is clipped into the first/last bin.
  """
  s = np.asarray(scores, np.float64)
  out = np.zeros(s.shape, np.int64)
  fin = np.isfinite(s)
  # + 1e-6 bins: a score on the grid (0.457) lands in its own bin despite 0.457 * 1000 < 457.
  out[fin] = 1 + np.clip(np.floor(s[fin] * num_bins + 1e-6), 0, num_bins - 1).astype(np.int64)
  return out


def threshold_slot(threshold: float, num_bins: int = NUM_SCORE_BINS) -> int:
  """First slot whose scores count as >= `threshold`.

  Exact when `threshold` is a multiple of 1 / num_bins (0.3, 0.25, 0.5, ...); otherwise scores in
  [threshold, next bin edge) are not counted: the error is below one bin.
  """
  return 1 + int(np.clip(np.ceil(float(threshold) * num_bins - 1e-6), 0, num_bins))


def _at_least(hist: np.ndarray, threshold, num_bins: int) -> np.ndarray:
  """Counts of a histogram [..., slots] at or above `threshold` (scalar or one per leading row)."""
  tail = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1]   # tail[..., s] = sum of slots >= s
  tail = np.concatenate([tail, np.zeros(hist.shape[:-1] + (1,), tail.dtype)], axis=-1)
  t = np.asarray(threshold, np.float64)
  if t.ndim == 0:
    return tail[..., threshold_slot(float(t), num_bins)]
  slots = np.asarray([threshold_slot(float(x), num_bins) for x in t.reshape(-1)])
  return np.take_along_axis(tail, slots.reshape(t.shape + (1,) * (tail.ndim - t.ndim)), -1)[..., 0]


def _pr_from_histograms(pred: np.ndarray, tp: np.ndarray, truth: np.ndarray,
                        num_bins: int) -> dict[str, Any]:
  """Precision-recall over the bin edges where predictions exist (descending thresholds)."""
  occupied = np.nonzero(pred[1:])[0][::-1]        # bin indices, highest first
  thresholds = occupied / num_bins
  rev = lambda h: np.cumsum(h[1:][::-1])[::-1]    # count of slots >= each bin
  n_pred, n_tp, n_found = rev(pred)[occupied], rev(tp)[occupied], rev(truth)[occupied]
  n_true = int(truth.sum())
  precision = np.where(n_pred > 0, n_tp / np.maximum(n_pred, 1), 1.0)
  recall = n_found / n_true if n_true else np.full(len(thresholds), np.nan)
  f1 = np.where(precision + recall > 0,
                2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
  if n_true and len(thresholds):
    mono = np.maximum.accumulate(precision[::-1])[::-1]
    r_prev = np.concatenate([[0.0], recall[:-1]])
    ap = float(np.sum((recall - r_prev) * mono))
  else:
    ap = 0.0 if n_true else math.nan
  return {"thresholds": thresholds, "precision": precision, "recall": recall, "f1": f1, "ap": ap}


class DefectEvaluator:
  """Accumulates one data set's predictions in fixed memory; summarises at any score threshold.

  Nothing grows with the number of images: every prediction and every ground-truth defect lands
  in a score histogram of NUM_SCORE_BINS bins (per class: predictions, true-positive predictions,
  predictions hitting any defect, predictions on defect-free images; per ground-truth defect the
  best score of a same-class / any-class prediction that finds it, and which class that was;
  per image the best score per class; per pixel the class probabilities). Every
  threshold-dependent number is a tail sum of these histograms, exact at thresholds on the bin
  grid (multiples of 0.001) and within one bin elsewhere; precision-recall curves are exact at
  the bin edges. (An earlier version kept every prediction and built [N x N] threshold matrices
  for the curves: 103 line-scan strips needed 24 GB.)
  """

  def __init__(self, num_classes: int, iou_threshold: float = IOU_THRESHOLD,
               cover_threshold: float = COVER_THRESHOLD, num_bins: int = NUM_SCORE_BINS):
    if num_classes <= 0:
      raise ValueError(f"num_classes must be positive, got {num_classes}")
    self.num_classes = k = num_classes
    self.iou_threshold = iou_threshold
    self.cover_threshold = cover_threshold
    self.num_bins = num_bins
    s = num_bins + 1
    self.pred_hist = np.zeros((k, s), np.int64)        # every prediction, by its class
    self.pred_tp_hist = np.zeros((k, s), np.int64)     # ... that hits a defect of its class
    self.pred_any_hist = np.zeros((k, s), np.int64)    # ... that hits any defect
    self.pred_good_hist = np.zeros((k, s), np.int64)   # ... on an image without defects
    self.gt_own_hist = np.zeros((k, s), np.int64)      # defects by best same-class finder score
    self.gt_any_hist = np.zeros((k, s), np.int64)      # defects by best any-class finder score
    self.gt_top_hist = np.zeros((k, k, s), np.int64)   # [true, class of best finder, its score]
    self.img_hist = np.zeros((k, 2, s), np.int64)      # [class, image has it, best class score]
    self.img_any_hist = np.zeros((2, s), np.int64)     # [image defective, best score]
    self.pixel_hist = np.zeros((k, 2, s), np.int64)    # [class, pixel is of it, probability]
    self.pixel_confusion = np.zeros((k + 1, k + 1), np.int64)
    self.num_images = 0
    self.num_good_images = 0
    self.rows_seen = 0       # image rows (along a line-scan's motion) over all / defect-free images
    self.rows_seen_good = 0
    self.has_pixels = False

  def _check_labels(self, labels: np.ndarray, what: str) -> None:
    bad = labels[(labels < 0) | (labels >= self.num_classes)]
    if len(bad):
      raise ValueError(f"{what} holds class id {int(bad[0])}, outside [0, {self.num_classes})")

  def _bincount(self, slots: np.ndarray, rows: np.ndarray | None = None,
                weights: np.ndarray | None = None) -> np.ndarray:
    """[k, slots] counts of (row, slot) pairs (row = class)."""
    s = self.num_bins + 1
    rows = np.zeros_like(slots) if rows is None else rows
    flat = np.bincount(rows * s + slots, weights=weights, minlength=self.num_classes * s)
    return flat.astype(np.int64).reshape(self.num_classes, s)

  def add(self, sample: Mapping[str, Any], boxes: np.ndarray, scores: np.ndarray,
          labels: np.ndarray, seg_probs: np.ndarray | None = None,
          seg_class_ids: Sequence[int] | None = None) -> None:
    """Adds one image: its ground-truth sample and its predictions.

    Args:
      sample: a record of `fabgen.data.sample` (one image, no batch axis).
      boxes: float [Q, 4] predicted xyxy pixel boxes.
      scores: float [Q] confidences; keep every query, thresholds are applied later.
      labels: int [Q] predicted global class ids.
      seg_probs: optional float [H, W, C + 1] per-pixel class probabilities (0 = background).
      seg_class_ids: the global class id of each seg channel after the background (a detector
        trained on a subset of classes has C < K channels); default: channel c + 1 = class c.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
      raise ValueError(f"predictions disagree in length: boxes {len(boxes)}, scores {len(scores)}, "
                       f"labels {len(labels)}")
    self._check_labels(labels, "predicted labels")
    k, nb = self.num_classes, self.num_bins
    gt_class, gt_groups = gt_defects(sample)
    self._check_labels(gt_class, "ground-truth instance_class")
    truth = None
    if seg_probs is not None:  # validate before anything is counted
      seg_probs = np.asarray(seg_probs)
      truth = class_map(sample["instance_mask"], sample["instance_class"])
      ids = list(range(k)) if seg_class_ids is None else [int(c) for c in seg_class_ids]
      if seg_probs.shape[:2] != truth.shape or seg_probs.shape[-1] != len(ids) + 1:
        raise ValueError(f"seg_probs shape {seg_probs.shape} does not fit the mask "
                         f"{truth.shape} with {len(ids)} classes + background")
      self._check_labels(np.asarray(ids, np.int64), "seg_class_ids")
    all_gt = np.concatenate(gt_groups) if gt_groups else np.zeros((0, 4))
    owner = np.concatenate([np.full(len(g), d) for d, g in enumerate(gt_groups)]) if gt_groups \
        else np.zeros((0,), np.int64)
    finds, hits = match_matrices(boxes, all_gt, self.iou_threshold, self.cover_threshold)
    n_def = len(gt_class)
    # Per (prediction, defect): does the prediction find / hit any box of the defect?
    find_def = np.zeros((len(boxes), n_def), bool)
    hit_def = np.zeros((len(boxes), n_def), bool)
    for d in range(n_def):
      find_def[:, d] = finds[:, owner == d].any(axis=1)
      hit_def[:, d] = hits[:, owner == d].any(axis=1)
    same = labels[:, None] == gt_class[None, :]
    slots = score_slots(scores, nb)
    self.pred_hist += self._bincount(slots, labels)
    self.pred_tp_hist += self._bincount(slots, labels, (hit_def & same).any(axis=1))
    self.pred_any_hist += self._bincount(slots, labels, hit_def.any(axis=1))
    if n_def == 0:
      self.pred_good_hist += self._bincount(slots, labels)
    best = np.full((n_def, k), -np.inf)
    for c in range(k):
      sel = labels == c
      if sel.any() and n_def:
        cand = np.where(find_def[sel], scores[sel][:, None], -np.inf)
        best[:, c] = cand.max(axis=0)
    if n_def:
      own = best[np.arange(n_def), gt_class]
      top = best.max(axis=1)
      self.gt_own_hist += self._bincount(score_slots(own, nb), gt_class)
      self.gt_any_hist += self._bincount(score_slots(top, nb), gt_class)
      np.add.at(self.gt_top_hist, (gt_class, np.argmax(best, axis=1), score_slots(top, nb)), 1)
    img_true = np.zeros(k, np.int64)
    img_true[gt_class] = 1
    img_score = np.full(k, -np.inf)
    np.maximum.at(img_score, labels, scores)
    np.add.at(self.img_hist, (np.arange(k), img_true, score_slots(img_score, nb)), 1)
    self.img_any_hist[int(n_def > 0), score_slots(img_score.max(), nb)] += 1
    h = int(np.asarray(sample["instance_mask"]).shape[0])
    self.rows_seen += h
    if n_def == 0:
      self.num_good_images += 1
      self.rows_seen_good += h
    if truth is not None:
      lut = np.asarray([0] + [c + 1 for c in ids], np.int64)
      pred = lut[np.argmax(seg_probs, axis=-1)]
      np.add.at(self.pixel_confusion, (truth.reshape(-1), pred.reshape(-1)), 1)
      flat = truth.reshape(-1)
      for ch, c in enumerate(ids):
        prob_slots = score_slots(seg_probs[..., ch + 1].reshape(-1), nb)
        self.pixel_hist[c] += np.bincount((flat == c + 1) * (nb + 1) + prob_slots,
                                          minlength=2 * (nb + 1)).reshape(2, nb + 1)
      self.has_pixels = True
    self.num_images += 1

  # -- summaries -------------------------------------------------------------------------------

  def num_true(self) -> np.ndarray:
    """Ground-truth defects per class [K]."""
    return self.gt_own_hist.sum(axis=1)

  def defect_scores(self, threshold) -> list[ClassScores]:
    """Per-class defect-level scores at `threshold` (a float, or one per class; index = class)."""
    t = np.broadcast_to(np.asarray(threshold, np.float64), (self.num_classes,))
    nb = self.num_bins
    n_pred = _at_least(self.pred_hist, t, nb)
    tp = _at_least(self.pred_tp_hist, t, nb)
    found = _at_least(self.gt_own_hist, t, nb)
    n_true = self.num_true()
    out = []
    for c in range(self.num_classes):
      p = tp[c] / n_pred[c] if n_pred[c] else math.nan
      r = found[c] / n_true[c] if n_true[c] else math.nan
      out.append(_scores(p, r, int(n_true[c]), int(n_pred[c])))
    return out

  def any_defect_scores(self, threshold: float) -> ClassScores:
    """Class-agnostic defect level: was each defect found by a prediction of any class, and
    does each prediction hit any defect? (Inspection asks "is there a defect here?" first.)"""
    nb = self.num_bins
    n_pred = int(_at_least(self.pred_hist, threshold, nb).sum())
    tp = int(_at_least(self.pred_any_hist, threshold, nb).sum())
    found = int(_at_least(self.gt_any_hist, threshold, nb).sum())
    n_true = int(self.num_true().sum())
    p = tp / n_pred if n_pred else math.nan
    r = found / n_true if n_true else math.nan
    return _scores(p, r, n_true, n_pred)

  def false_alarms(self, threshold: float, pixel_pitch_mm: float | None = None) -> dict:
    """Alarms on defect-free images per image, and alarms on no defect per metre of fabric.

    `pixel_pitch_mm`: the fabric length one image row covers (a line-scan camera's line pitch);
    with it, `per_metre` = predictions that hit no defect / metres of fabric seen (all images),
    and `per_metre_good` the same over the defect-free images only.
    """
    nb = self.num_bins
    on_good = int(_at_least(self.pred_good_hist, threshold, nb).sum())
    stray = int((_at_least(self.pred_hist, threshold, nb)
                 - _at_least(self.pred_any_hist, threshold, nb)).sum())
    out = {"num_good_images": self.num_good_images, "alarms_on_good_images": on_good,
           "per_good_image": on_good / self.num_good_images if self.num_good_images else math.nan,
           "stray_predictions": stray,
           "stray_per_image": stray / self.num_images if self.num_images else math.nan}
    if pixel_pitch_mm:
      metres = self.rows_seen * pixel_pitch_mm / 1000.0
      metres_good = self.rows_seen_good * pixel_pitch_mm / 1000.0
      out.update({"pixel_pitch_mm": pixel_pitch_mm, "metres": metres,
                  "per_metre": stray / metres if metres else math.nan,
                  "per_metre_good": on_good / metres_good if metres_good else math.nan})
    return out

  def pixel_scores(self) -> list[ClassScores]:
    """Per-class pixel-level scores from the segmentation maps (empty without seg maps)."""
    if not self.has_pixels:
      return []
    cm = self.pixel_confusion
    out = []
    for c in range(self.num_classes):
      tp = int(cm[c + 1, c + 1])
      n_true, n_pred = int(cm[c + 1].sum()), int(cm[:, c + 1].sum())
      p, r, f = f_measure(tp, n_pred, n_true)
      out.append(ClassScores(p, r, f, n_true, n_pred))
    return out

  def pixel_pr_curve(self, class_id: int) -> dict[str, Any]:
    """Pixel-level precision-recall of one class over its probability (bin edges)."""
    h = self.pixel_hist[class_id]
    return _pr_from_histograms(h.sum(axis=0), h[1], h[1], self.num_bins)

  def image_scores(self, threshold: float) -> tuple[list[ClassScores], ClassScores]:
    """(per-class, any-defect) image-level scores at `threshold`."""
    nb = self.num_bins
    per_class = []
    for c in range(self.num_classes):
      tp = int(_at_least(self.img_hist[c, 1], threshold, nb))
      n_pred = int(_at_least(self.img_hist[c], threshold, nb).sum())
      n_true = int(self.img_hist[c, 1].sum())
      per_class.append(ClassScores(*f_measure(tp, n_pred, n_true), n_true, n_pred))
    tp = int(_at_least(self.img_any_hist[1], threshold, nb))
    n_pred = int(_at_least(self.img_any_hist, threshold, nb).sum())
    n_true = int(self.img_any_hist[1].sum())
    overall = ClassScores(*f_measure(tp, n_pred, n_true), n_true, n_pred)
    return per_class, overall

  def confusion_matrix(self, threshold: float) -> np.ndarray:
    """Defect-level confusion matrix [K + 1, K + 1] at `threshold` (layout in the module doc)."""
    k, nb = self.num_classes, self.num_bins
    cm = np.zeros((k + 1, k + 1), np.int64)
    cm[:k, :k] = _at_least(self.gt_top_hist, threshold, nb)
    cm[:k, k] = self.num_true() - cm[:k, :k].sum(axis=1)
    cm[k, :k] = (_at_least(self.pred_hist, threshold, nb)
                 - _at_least(self.pred_any_hist, threshold, nb))
    return cm

  def pr_curve(self, class_id: int) -> dict[str, Any]:
    """Defect-level precision-recall curve of one class over the score bin edges.

    Returns thresholds (descending, one per occupied bin), precision, recall and F at each, and
    `ap`: the area under the curve with precision made monotone (the all-points
    interpolation), NaN without truth.
    """
    c = class_id
    return _pr_from_histograms(self.pred_hist[c], self.pred_tp_hist[c], self.gt_own_hist[c],
                               self.num_bins)

  def any_defect_pr_curve(self) -> dict[str, Any]:
    """The class-agnostic defect-level precision-recall curve (`any_defect_scores`)."""
    return _pr_from_histograms(self.pred_hist.sum(0), self.pred_any_hist.sum(0),
                               self.gt_any_hist.sum(0), self.num_bins)

  def present_classes(self) -> list[int]:
    """Classes with ground-truth defects in the data set: the table's columns."""
    return [int(c) for c in np.nonzero(self.num_true())[0]]

  def summary(self, threshold: float, class_names: Sequence[str],
              classes: Sequence[int] | None = None,
              class_thresholds: Mapping[int, float] | None = None,
              pixel_pitch_mm: float | None = None,
              known_classes: Sequence[int] | None = None) -> dict:
    """The evaluation table as a JSON-able dict: per class and mean, at every level.

    `classes` picks the columns (default: classes present in the ground truth); the mean is over
    those columns, counting a class that was never predicted as F = 0. `class_thresholds`
    (class id -> score threshold, e.g. from `thresholds_maximising_f1` on a validation split)
    adds a defect-level row per class at its own threshold under "at_class_thresholds".
    `known_classes`: the classes the detector can predict. Present classes outside it (a real
    target's own defect kinds) are not columns, so they neither count as misses in the mean nor
    disappear: "unknown_classes" gives their counts and how many a prediction of any class found.
    """
    classes = self.present_classes() if classes is None else list(classes)
    unknown = []
    if known_classes is not None:
      known = {int(c) for c in known_classes}
      unknown = [c for c in classes if c not in known]
      classes = [c for c in classes if c in known]
    defect = self.defect_scores(threshold)
    pixel = self.pixel_scores()
    img_cls, img_any = self.image_scores(threshold)
    rows = {}
    for c in classes:
      name = class_names[c] if c < len(class_names) else str(c)
      rows[name] = {"class_id": c, "defect": defect[c].as_dict(), "image": img_cls[c].as_dict()}
      if pixel:
        rows[name]["pixel"] = pixel[c].as_dict()
        rows[name]["pixel_ap"] = self.pixel_pr_curve(c)["ap"]
    mean = lambda level: _nanmean([rows[n][level]["f1"] for n in rows]) if rows else math.nan
    out = {"threshold": threshold, "num_images": self.num_images,
           "matching": {"iou": self.iou_threshold, "cover": self.cover_threshold},
           "score_bins": self.num_bins,
           "classes": rows, "mean_f1": {"defect": mean("defect"), "image": mean("image")},
           "any_defect": {"defect": self.any_defect_scores(threshold).as_dict(),
                          "image": img_any.as_dict(), "ap": self.any_defect_pr_curve()["ap"]},
           "image_any_defect": img_any.as_dict(),
           "false_alarms": self.false_alarms(threshold, pixel_pitch_mm),
           "confusion_matrix": self.confusion_matrix(threshold).tolist()}
    if pixel:
      out["mean_f1"]["pixel"] = mean("pixel")
    if unknown:
      found = _at_least(self.gt_any_hist, threshold, self.num_bins)
      n_true = self.num_true()
      out["unknown_classes"] = {
          (class_names[c] if c < len(class_names) else str(c)): {
              "class_id": c, "num_true": int(n_true[c]), "found_by_any_class": int(found[c]),
              "recall_any_class": float(found[c] / n_true[c])} for c in unknown}
    if class_thresholds:
      t = np.full(self.num_classes, float(threshold))
      for c, v in class_thresholds.items():
        t[int(c)] = v
      at = self.defect_scores(t)
      out["at_class_thresholds"] = {
          (class_names[c] if c < len(class_names) else str(c)): dict(at[c].as_dict(),
                                                                     threshold=float(t[c]))
          for c in classes}
      out["mean_f1"]["defect_at_class_thresholds"] = _nanmean(
          [at[c].f1 for c in classes]) if classes else math.nan
    return out


def thresholds_maximising_f1(evaluator: DefectEvaluator, classes: Sequence[int] | None = None,
                             default: float = 0.5) -> dict[int, float]:
  """Per-class score thresholds that maximise the defect-level F of `evaluator` (a validation
  split): the highest threshold reaching the best F; `default` for a class without truth there.

  This is the evaluation-time choice on a held-out split of the evaluated images; a detector's
  own calibrated thresholds (stored beside its checkpoint) are a separate, earlier mechanism.
  """
  classes = evaluator.present_classes() if classes is None else list(classes)
  out = {}
  for c in classes:
    curve = evaluator.pr_curve(c)
    if not evaluator.num_true()[c] or not len(curve["thresholds"]):
      out[int(c)] = float(default)
      continue
    out[int(c)] = float(curve["thresholds"][int(np.argmax(curve["f1"]))])
  return out


def _scores(p: float, r: float, n_true: int, n_pred: int) -> ClassScores:
  if n_true == 0 and n_pred == 0:
    return ClassScores(math.nan, math.nan, math.nan, 0, 0)
  p0 = 0.0 if math.isnan(p) else p
  r0 = 0.0 if math.isnan(r) else r
  f = 2 * p0 * r0 / (p0 + r0) if p0 + r0 > 0 else 0.0
  return ClassScores(p, r, f, n_true, n_pred)


def _nanmean(xs: Sequence[float]) -> float:
  xs = [0.0 if math.isnan(x) else x for x in xs]
  return float(np.mean(xs)) if xs else math.nan
