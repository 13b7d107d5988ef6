"""Box mAP at IoU 0.5 and 0.5:0.95 through pycocotools, the maintained reference implementation.

We only translate: sample-format ground truth -> a COCO ground-truth dict (one annotation per
box, i.e. per connected component of a defect, as the data is labelled; category id = global
class id), and predictions -> the COCO results list (`[{image_id, category_id, bbox, score}]`,
bbox as [x, y, w, h]). pycocotools does the matching, interpolation and averaging, so numbers
are comparable with every paper that reports COCO mAP.

The same results list is what `fabgen detect` writes, so a user can evaluate it with any COCO
tool.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fabgen.data import classes as classes_lib


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
  """xyxy (x1/y1 exclusive) -> COCO's [x, y, width, height]."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def categories(class_names: Sequence[str] = classes_lib.CLASSES) -> list[dict]:
  """COCO categories whose ids are the global class ids (as the synthesis writer lists them)."""
  return [{"id": i, "name": n, "supercategory": "defect"} for i, n in enumerate(class_names)]


def results_for_image(image_id: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      min_score: float = 0.0) -> list[dict]:
  """One image's predictions as COCO result entries (empty boxes and low scores dropped)."""
  boxes = xyxy_to_xywh(boxes)
  out = []
  for b, s, c in zip(boxes, np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1)):
    if s < min_score or b[2] <= 0 or b[3] <= 0:
      continue
    out.append({"image_id": int(image_id), "category_id": int(c),
                "bbox": [round(float(v), 3) for v in b], "score": round(float(s), 6)})
  return out


class CocoBoxEvaluator:
  """Collects ground truth and detections image by image; `compute()` runs COCOeval (bbox)."""

  def __init__(self, class_names: Sequence[str] = classes_lib.CLASSES):
    self.class_names = list(class_names)
    self._images: list[dict] = []
    self._annotations: list[dict] = []
    self._results: list[dict] = []

  def add(self, sample: Mapping[str, Any], boxes: np.ndarray, scores: np.ndarray,
          labels: np.ndarray, file_name: str | None = None) -> int:
    """Adds one image's ground truth (sample format) and predictions; returns its image id."""
    image_id = len(self._images) + 1
    h, w = np.asarray(sample["instance_mask"]).shape[:2]
    self._images.append({"id": image_id, "height": int(h), "width": int(w),
                         "file_name": file_name or f"{image_id:08d}.png"})
    gt = np.asarray(sample["boxes"], np.float64).reshape(-1, 4)
    gt_class = np.asarray(sample["box_class"]).reshape(-1)
    for b, c in zip(xyxy_to_xywh(gt), gt_class):
      if c < 0 or b[2] <= 0 or b[3] <= 0:
        continue
      if c >= len(self.class_names):
        raise ValueError(f"ground-truth box_class {int(c)} has no name in class_names "
                         f"({len(self.class_names)} classes)")
      self._annotations.append({"id": len(self._annotations) + 1, "image_id": image_id,
                                "category_id": int(c), "bbox": [float(v) for v in b],
                                "area": float(b[2] * b[3]), "iscrowd": 0})
    labels = np.asarray(labels).reshape(-1)
    bad = labels[(labels < 0) | (labels >= len(self.class_names))]
    if len(bad):
      raise ValueError(f"predicted label {int(bad[0])} is outside [0, {len(self.class_names)})")
    self._results.extend(results_for_image(image_id, boxes, scores, labels))
    return image_id

  def ground_truth(self) -> dict:
    """The collected ground truth as a COCO dataset dict."""
    return {"images": list(self._images), "annotations": list(self._annotations),
            "categories": categories(self.class_names)}

  def compute(self, max_dets: int = 100) -> dict:
    """COCO box metrics: map_50_95, map_50, map_75 and per-class AP@[.5:.95] / AP@.5.

    Classes without ground truth get NaN (pycocotools' -1); an evaluation without any
    ground-truth box at all is an error, because mAP is undefined there.
    """
    if not self._annotations:
      raise ValueError("COCO evaluation needs at least one ground-truth box; the data set has none")
    with contextlib.redirect_stdout(io.StringIO()):
      gt = COCO()
      gt.dataset = self.ground_truth()
      gt.createIndex()
      if self._results:
        dt = gt.loadRes(list(self._results))
      else:
        dt = COCO()
        dt.dataset = {"images": list(self._images), "annotations": [],
                      "categories": categories(self.class_names)}
        dt.createIndex()
      ev = COCOeval(gt, dt, iouType="bbox")
      ev.params.maxDets = [1, 10, max_dets]
      ev.evaluate()
      ev.accumulate()
      ev.summarize()
    stats = [_nan(v) for v in ev.stats]
    precision = ev.eval["precision"]  # [T, R, K, A, M]; -1 where undefined
    per_class = {}
    present = {a["category_id"] for a in self._annotations}
    for k, cat_id in enumerate(ev.params.catIds):
      if cat_id not in present:
        continue
      p_all = precision[:, :, k, 0, -1]
      p_50 = precision[0, :, k, 0, -1]
      per_class[self.class_names[cat_id]] = {
          "ap_50_95": _mean_valid(p_all), "ap_50": _mean_valid(p_50)}
    return {"map_50_95": stats[0], "map_50": stats[1], "map_75": stats[2],
            "per_class": per_class, "num_images": len(self._images),
            "num_gt_boxes": len(self._annotations), "num_detections": len(self._results)}

  def results(self) -> list[dict]:
    """The detections as a COCO results list (what `fabgen detect` writes)."""
    return list(self._results)


def _nan(v: float) -> float:
  return math.nan if v < 0 else float(v)


def _mean_valid(p: np.ndarray) -> float:
  p = p[p > -1]
  return float(p.mean()) if p.size else math.nan
