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


class DefectEvaluator:
  """Accumulates one data set's predictions; summarises at any score threshold.

  Per prediction it stores (class, score, whether it hits a same-class defect, whether it hits
  any defect); per ground-truth defect its class and, for every predicted class, the best score
  of a prediction of that class that finds it. Every threshold-dependent number is a count over
  these records, so the precision-recall curve is exact and cheap.
  """

  def __init__(self, num_classes: int, iou_threshold: float = IOU_THRESHOLD,
               cover_threshold: float = COVER_THRESHOLD):
    if num_classes <= 0:
      raise ValueError(f"num_classes must be positive, got {num_classes}")
    self.num_classes = num_classes
    self.iou_threshold = iou_threshold
    self.cover_threshold = cover_threshold
    self._pred_class, self._pred_score, self._pred_tp, self._pred_any = [], [], [], []
    self._gt_class, self._gt_best = [], []
    self._img_true, self._img_score = [], []
    self.pixel_confusion = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    self.num_images = 0
    self.has_pixels = False

  def _check_labels(self, labels: np.ndarray, what: str) -> None:
    bad = labels[(labels < 0) | (labels >= self.num_classes)]
    if len(bad):
      raise ValueError(f"{what} holds class id {int(bad[0])}, outside [0, {self.num_classes})")

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
    k = self.num_classes
    gt_class, gt_groups = gt_defects(sample)
    self._check_labels(gt_class, "ground-truth instance_class")
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
    self._pred_class.append(labels)
    self._pred_score.append(scores)
    self._pred_tp.append((hit_def & same).any(axis=1))
    self._pred_any.append(hit_def.any(axis=1))
    best = np.full((n_def, k), -np.inf)
    for c in range(k):
      sel = labels == c
      if sel.any() and n_def:
        cand = np.where(find_def[sel], scores[sel][:, None], -np.inf)
        best[:, c] = cand.max(axis=0)
    self._gt_class.append(gt_class)
    self._gt_best.append(best)
    img_true = np.zeros(k, bool)
    img_true[gt_class] = True
    img_score = np.full(k, -np.inf)
    np.maximum.at(img_score, labels, scores)
    self._img_true.append(img_true)
    self._img_score.append(img_score)
    if seg_probs is not None:
      seg_probs = np.asarray(seg_probs)
      truth = class_map(sample["instance_mask"], sample["instance_class"])
      ids = list(range(k)) if seg_class_ids is None else [int(c) for c in seg_class_ids]
      if seg_probs.shape[:2] != truth.shape or seg_probs.shape[-1] != len(ids) + 1:
        raise ValueError(f"seg_probs shape {seg_probs.shape} does not fit the mask "
                         f"{truth.shape} with {len(ids)} classes + background")
      self._check_labels(np.asarray(ids, np.int64), "seg_class_ids")
      lut = np.asarray([0] + [c + 1 for c in ids], np.int64)
      pred = lut[np.argmax(seg_probs, axis=-1)]
      np.add.at(self.pixel_confusion, (truth.reshape(-1), pred.reshape(-1)), 1)
      self.has_pixels = True
    self.num_images += 1

  # -- summaries -------------------------------------------------------------------------------

  def _cat(self):
    k = self.num_classes
    cat = lambda xs, shape, dt: np.concatenate(xs) if xs else np.zeros(shape, dt)
    return (cat(self._pred_class, (0,), np.int64), cat(self._pred_score, (0,), np.float64),
            cat(self._pred_tp, (0,), bool), cat(self._pred_any, (0,), bool),
            cat(self._gt_class, (0,), np.int64), cat(self._gt_best, (0, k), np.float64))

  def defect_scores(self, threshold: float) -> list[ClassScores]:
    """Per-class defect-level scores at `threshold` (index = class id)."""
    pc, ps, ptp, _, gc, gbest = self._cat()
    out = []
    for c in range(self.num_classes):
      keep = (pc == c) & (ps >= threshold)
      n_pred = int(keep.sum())
      tp = int((ptp & keep).sum())
      own = gc == c
      n_true = int(own.sum())
      found = int((gbest[own, c] >= threshold).sum()) if n_true else 0
      p = tp / n_pred if n_pred else math.nan
      r = found / n_true if n_true else math.nan
      out.append(_scores(p, r, n_true, n_pred))
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

  def image_scores(self, threshold: float) -> tuple[list[ClassScores], ClassScores]:
    """(per-class, any-defect) image-level scores at `threshold`."""
    k = self.num_classes
    truth = np.stack(self._img_true) if self._img_true else np.zeros((0, k), bool)
    score = np.stack(self._img_score) if self._img_score else np.zeros((0, k))
    pred = score >= threshold
    per_class = []
    for c in range(k):
      tp = int((truth[:, c] & pred[:, c]).sum())
      per_class.append(ClassScores(*f_measure(tp, int(pred[:, c].sum()), int(truth[:, c].sum())),
                                   int(truth[:, c].sum()), int(pred[:, c].sum())))
    t_any, p_any = truth.any(axis=1), pred.any(axis=1)
    tp = int((t_any & p_any).sum())
    overall = ClassScores(*f_measure(tp, int(p_any.sum()), int(t_any.sum())),
                          int(t_any.sum()), int(p_any.sum()))
    return per_class, overall

  def confusion_matrix(self, threshold: float) -> np.ndarray:
    """Defect-level confusion matrix [K + 1, K + 1] at `threshold` (layout in the module doc)."""
    k = self.num_classes
    pc, ps, _, pany, gc, gbest = self._cat()
    cm = np.zeros((k + 1, k + 1), np.int64)
    for cls, best in zip(gc, gbest):
      if (best >= threshold).any():
        cm[cls, int(np.argmax(best))] += 1
      else:
        cm[cls, k] += 1
    stray = (ps >= threshold) & ~pany
    np.add.at(cm, (np.full(int(stray.sum()), k), pc[stray]), 1)
    return cm

  def pr_curve(self, class_id: int) -> dict[str, np.ndarray]:
    """Exact defect-level precision-recall curve of one class over all score thresholds.

    Returns thresholds (descending), precision, recall and F at each, and `ap`: the area under
    the curve with precision made monotone (the all-points interpolation), NaN without truth.
    """
    pc, ps, ptp, _, gc, gbest = self._cat()
    scores = ps[pc == class_id]
    tps = ptp[pc == class_id]
    best = gbest[gc == class_id, class_id]
    thresholds = np.unique(scores)[::-1]
    n_pred = (scores[None, :] >= thresholds[:, None]).sum(axis=1)
    n_tp = ((scores[None, :] >= thresholds[:, None]) & tps[None, :]).sum(axis=1)
    n_found = (best[None, :] >= thresholds[:, None]).sum(axis=1)
    precision = np.where(n_pred > 0, n_tp / np.maximum(n_pred, 1), 1.0)
    recall = n_found / len(best) if len(best) else np.full(len(thresholds), np.nan)
    f1 = np.where(precision + recall > 0,
                  2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    if len(best) and len(thresholds):
      mono = np.maximum.accumulate(precision[::-1])[::-1]
      r_prev = np.concatenate([[0.0], recall[:-1]])
      ap = float(np.sum((recall - r_prev) * mono))
    else:
      ap = 0.0 if len(best) else math.nan
    return {"thresholds": thresholds, "precision": precision, "recall": recall, "f1": f1,
            "ap": ap}

  def present_classes(self) -> list[int]:
    """Classes with ground-truth defects in the data set: the table's columns."""
    gc = np.concatenate(self._gt_class) if self._gt_class else np.zeros(0, np.int64)
    return sorted(int(c) for c in np.unique(gc))

  def summary(self, threshold: float, class_names: Sequence[str],
              classes: Sequence[int] | None = None) -> dict:
    """The evaluation table as a JSON-able dict: per class and mean, at every level.

    `classes` picks the columns (default: classes present in the ground truth); the mean is over
    those columns, counting a class that was never predicted as F = 0.
    """
    classes = self.present_classes() if classes is None else list(classes)
    defect = self.defect_scores(threshold)
    pixel = self.pixel_scores()
    img_cls, img_any = self.image_scores(threshold)
    rows = {}
    for c in classes:
      name = class_names[c] if c < len(class_names) else str(c)
      rows[name] = {"class_id": c, "defect": defect[c].as_dict(), "image": img_cls[c].as_dict()}
      if pixel:
        rows[name]["pixel"] = pixel[c].as_dict()
    mean = lambda level: _nanmean([rows[n][level]["f1"] for n in rows]) if rows else math.nan
    out = {"threshold": threshold, "num_images": self.num_images,
           "matching": {"iou": self.iou_threshold, "cover": self.cover_threshold},
           "classes": rows, "mean_f1": {"defect": mean("defect"), "image": mean("image")},
           "image_any_defect": img_any.as_dict(),
           "confusion_matrix": self.confusion_matrix(threshold).tolist()}
    if pixel:
      out["mean_f1"]["pixel"] = mean("pixel")
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
