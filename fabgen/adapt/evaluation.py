"""Score a detector on a labelled data source: one pass, every level, every picture.

`evaluate(predict_fn, source)` runs (tiled) inference over the source's images and feeds the
defect/pixel/image-level evaluator (`fabgen.detector.metrics`) and the COCO box evaluator
(`fabgen.detector.coco_eval`) from the same predictions, so the F-measure table and box mAP can
never disagree about what the detector said. `write_report` puts the JSON, the Markdown table,
the confusion matrix and the precision-recall curves in a folder; `fabgen evaluate` and the
adaptation protocol both go through here.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fabgen.adapt import table as table_lib
from fabgen.data import classes as classes_lib
from fabgen.detector import coco_eval
from fabgen.detector import infer
from fabgen.detector import metrics
from fabgen.detector import plots


class Evaluation:
  """The accumulated evaluators of one run, and the report they make."""

  def __init__(self, class_names: Sequence[str], threshold: float, source_name: str,
               seg_class_ids: Sequence[int] | None = None):
    self.class_names = list(class_names)
    self.threshold = float(threshold)
    self.source_name = source_name
    self.seg_class_ids = None if seg_class_ids is None else list(seg_class_ids)
    self.defects = metrics.DefectEvaluator(len(self.class_names))
    self.boxes = coco_eval.CocoBoxEvaluator(self.class_names)
    self.seconds = 0.0
    self.skipped: list = []  # (path, reason) the source skipped: reported, never silent

  def add(self, sample: Mapping[str, Any], pred: Mapping[str, np.ndarray],
          file_name: str | None = None) -> None:
    self.defects.add(sample, pred["boxes"], pred["scores"], pred["labels"],
                     pred.get("seg_probs"), self.seg_class_ids)
    self.boxes.add(sample, pred["boxes"], pred["scores"], pred["labels"], file_name)

  def report(self) -> dict:
    """The JSON-able report: per-class table (all levels), means, box mAP, AP of the PR curves."""
    out = self.defects.summary(self.threshold, self.class_names)
    out["source"] = self.source_name
    try:
      out["coco"] = self.boxes.compute()
    except ValueError as e:  # no ground-truth boxes: mAP is undefined, say so instead of failing
      out["coco"] = {"error": str(e)}
    out["pr_ap"] = {self.class_names[c]: self.defects.pr_curve(c)["ap"]
                    for c in self.defects.present_classes()}
    out["seconds"] = round(self.seconds, 2)
    out["skipped_files"] = len(self.skipped)
    out["skipped_examples"] = [list(map(str, s)) for s in self.skipped[:5]]
    return out


def evaluate(predict_fn: infer.PredictFn, source: Any, *, class_names: Sequence[str] | None = None,
             threshold: float = 0.5, tile: tuple[int, int] = (256, 256), overlap: int = 64,
             batch_size: int = 8, indices: Sequence[int] | None = None,
             seg_class_ids: Sequence[int] | None = None,
             log: Callable[[str], None] | None = None,
             keep_predictions: int = 0) -> tuple[Evaluation, list]:
  """Runs `predict_fn` over `source` (any `open_source` result, or a list of samples).

  Args:
    predict_fn: batched detector (task.predict bound to a state, or an exported artifact).
    source: random-access samples.
    class_names: names by global id (default: the source's, else `fabgen.data.classes`).
    threshold: the score threshold of the table (PR curves use every threshold).
    tile, overlap, batch_size: tiling of images larger than the tile (`fabgen.detector.infer`).
    indices: which samples (default all).
    seg_class_ids: global class id of each seg channel after background (the detector's
      `class_ids`; default: channel c + 1 = class c).
    log: progress lines.
    keep_predictions: also return the first N (sample, prediction) pairs (for pictures).

  Returns:
    (Evaluation, kept pairs).
  """
  names = list(class_names or getattr(source, "class_names", None) or classes_lib.CLASSES)
  name = getattr(source, "name", "<samples>")
  ev = Evaluation(names, threshold, name, seg_class_ids)
  ev.skipped = list(getattr(source, "skipped", ()))
  indices = list(range(len(source))) if indices is None else list(indices)
  if not indices:
    raise ValueError(f"evaluation source {name!r} has no samples")
  kept = []
  t0 = time.time()
  chunk = max(batch_size, 1) * 4
  for start in range(0, len(indices), chunk):
    idx = indices[start:start + chunk]
    samples = [source[i] for i in idx]
    preds = infer.predict_images(predict_fn, [np.asarray(s["image"]) for s in samples],
                                 tile=tile, overlap=overlap, batch_size=batch_size)
    for i, s, p in zip(idx, samples, preds):
      ev.add(s, p, file_name=f"{i:08d}.png")
      if len(kept) < keep_predictions:
        kept.append((s, p))
    if log:
      done = start + len(idx)
      log(f"  evaluated {done}/{len(indices)} images ({time.time() - t0:.0f}s)")
  ev.seconds = time.time() - t0
  return ev, kept


def write_report(ev: Evaluation, out_dir: str, report: dict | None = None,
                 title: str | None = None) -> dict:
  """Writes report.json, report.md, confusion_matrix.png and pr_curves.png; returns the report."""
  os.makedirs(out_dir, exist_ok=True)
  report = ev.report() if report is None else report
  with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
    json.dump(_jsonable(report), f, indent=1)
  md = table_lib.report_markdown(report, title or f"Evaluation on {ev.source_name}")
  with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
    f.write(md)
  k = len(ev.class_names)
  rows = [ev.class_names[c] for c in range(k)] + ["background"]
  cols = [ev.class_names[c] for c in range(k)] + ["missed"]
  present = ev.defects.present_classes()
  cm = ev.defects.confusion_matrix(ev.threshold)
  predicted = sorted(set(np.nonzero(cm[:, :k].sum(axis=0))[0].tolist()) | set(present))
  # Keep the picture readable: only classes that occur in the truth or the predictions.
  ri = predicted + [k]
  plots.confusion_matrix_image(cm[np.ix_(ri, ri)], [rows[i] for i in ri],
                               [cols[i] for i in ri]).save(os.path.join(out_dir,
                                                                        "confusion_matrix.png"))
  curves = {ev.class_names[c]: ev.defects.pr_curve(c) for c in present}
  plots.pr_curves_image(curves).save(os.path.join(out_dir, "pr_curves.png"))
  return report


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.floating, float)):
    return None if math.isnan(float(x)) else float(x)
  if isinstance(x, np.integer):
    return int(x)
  return x
