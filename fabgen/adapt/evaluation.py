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
import resource
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tqdm

from fabgen.adapt import table as table_lib
from fabgen.data import classes as classes_lib
from fabgen.detector import coco_eval
from fabgen.detector import infer
from fabgen.detector import metrics
from fabgen.detector import plots


MAX_DETECTIONS = 100  # per image: COCO mAP looks at 100 (maxDets), the F table at far fewer


class Evaluation:
  """The accumulated evaluators of one run, and the report they make.

  Memory stays fixed in the number of images (score histograms in `metrics.DefectEvaluator`,
  at most MAX_DETECTIONS boxes per image for COCO). With a validation split, every
  `val_every`-th image goes to `val` instead, where per-class score thresholds are chosen
  (`metrics.thresholds_maximising_f1`) for a second set of defect-level rows on the rest.
  """

  def __init__(self, class_names: Sequence[str], threshold: float, source_name: str,
               seg_class_ids: Sequence[int] | None = None, pixel_pitch_mm: float | None = None,
               val_fraction: float = 0.0, detector_class_ids: Sequence[int] | None = None):
    self.class_names = list(class_names)
    self.threshold = float(threshold)
    self.source_name = source_name
    self.seg_class_ids = None if seg_class_ids is None else list(seg_class_ids)
    self.pixel_pitch_mm = pixel_pitch_mm
    self.detector_class_ids = None if detector_class_ids is None else list(detector_class_ids)
    self.defects = metrics.DefectEvaluator(len(self.class_names))
    self.boxes = coco_eval.CocoBoxEvaluator(self.class_names)
    if not 0.0 <= val_fraction < 1.0:
      raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    self.val_fraction = float(val_fraction)
    self.val = metrics.DefectEvaluator(len(self.class_names)) if val_fraction > 0 else None
    self.skipped: list[dict] = []
    self.seconds = 0.0
    self.memory: list[dict] = []  # (images done, peak RSS so far) at each partial report
    self._position = 0

  def add(self, sample: Mapping[str, Any], pred: Mapping[str, np.ndarray],
          file_name: str | None = None) -> None:
    position, self._position = self._position, self._position + 1
    f = self.val_fraction
    if self.val is not None and math.floor((position + 1) * f) > math.floor(position * f):
      self.val.add(sample, pred["boxes"], pred["scores"], pred["labels"])
      return
    self.defects.add(sample, pred["boxes"], pred["scores"], pred["labels"],
                     pred.get("seg_probs"), self.seg_class_ids)
    top = np.argsort(-np.asarray(pred["scores"]), kind="stable")[:MAX_DETECTIONS]
    self.boxes.add(sample, np.asarray(pred["boxes"])[top], np.asarray(pred["scores"])[top],
                   np.asarray(pred["labels"])[top], file_name)

  def class_thresholds(self) -> dict[int, float] | None:
    """Per-class thresholds chosen on the validation split (None without one)."""
    if self.val is None:
      return None
    present = self.defects.present_classes()
    if self.detector_class_ids is not None:
      present = [c for c in present if c in self.detector_class_ids]
    return metrics.thresholds_maximising_f1(self.val, present, default=self.threshold)

  def report(self, partial: bool = False) -> dict:
    """The JSON-able report: per-class table (all levels), means, box mAP, AP of the PR curves."""
    out = self.defects.summary(self.threshold, self.class_names,
                               class_thresholds=self.class_thresholds(),
                               pixel_pitch_mm=self.pixel_pitch_mm,
                               known_classes=self.detector_class_ids)
    out["source"] = self.source_name
    try:
      out["coco"] = self.boxes.compute()
    except ValueError as e:  # no ground-truth boxes: mAP is undefined, say so instead of failing
      out["coco"] = {"error": str(e)}
    out["pr_ap"] = {name: self.defects.pr_curve(row["class_id"])["ap"]
                    for name, row in out["classes"].items()}
    if self.val is not None:
      out["validation"] = {"num_images": self.val.num_images, "fraction": self.val_fraction,
                           "class_thresholds": {self.class_names[c]: t for c, t in
                                                self.class_thresholds().items()}}
    out["skipped"] = list(self.skipped)
    out["partial"] = partial
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_rss_by_images"] = list(self.memory)
    out["seconds"] = round(self.seconds, 2)
    out["skipped_files"] = len(self.skipped)
    out["skipped_examples"] = [[s.get("path") or f"{s['source']}[{s['index']}]", s["error"]]
                               for s in self.skipped[:5]]
    return out


def peak_rss_mb() -> float:
  """This process's peak resident memory so far (Linux reports kilobytes)."""
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _readable(sources, ev: Evaluation, log):
  """(key, sample) for every record that reads; unreadable ones are noted in ev.skipped."""
  for name, source, indices in sources:
    for path, reason in getattr(source, "skipped", ()):  # what the reader already set aside
      ev.skipped.append({"source": name, "index": None, "path": str(path), "error": str(reason)})
    for i in indices:
      try:
        sample = source[i]
        image = np.asarray(sample["image"])
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
          raise ValueError(f"image is {image.dtype} {image.shape}, not uint8 [H, W, 3]")
      except (OSError, ValueError, KeyError, IndexError) as e:  # ReadError is a ValueError
        ev.skipped.append({"source": name, "index": int(i), "error": f"{type(e).__name__}: {e}"})
        if log:
          log(f"  skipped {name}[{i}]: {type(e).__name__}: {e}")
        continue
      yield (name, int(i), sample), image


def evaluate(predict_fn: infer.PredictFn, source: Any, *, class_names: Sequence[str] | None = None,
             threshold: float = 0.5, tile: tuple[int, int] = (256, 256), overlap: int = 64,
             batch_size: int = 8, indices: Sequence[int] | None = None,
             seg_class_ids: Sequence[int] | None = None,
             log: Callable[[str], None] | None = None,
             keep_predictions: int = 0, good_sources: Sequence[tuple[Any, Sequence[int]]] = (),
             val_fraction: float = 0.0, pixel_pitch_mm: float | None = None,
             progress: bool = False, partial_dir: str | None = None,
             partial_every_s: float = 60.0,
             detector_class_ids: Sequence[int] | None = None) -> tuple[Evaluation, list]:
  """Runs `predict_fn` over `source` (any `open_source` result, or a list of samples).

  Args:
    predict_fn: batched detector (task.predict bound to a state, or an exported artifact).
    source: random-access samples.
    class_names: names by global id (default: the source's, else `fabgen.data.classes`).
    threshold: the score threshold of the table (PR curves use every threshold).
    tile, overlap, batch_size: tiling of images larger than the tile (`fabgen.detector.infer`);
      tiles of consecutive images share batches.
    indices: which samples (default all).
    seg_class_ids: global class id of each seg channel after background (the detector's
      `class_ids`; default: channel c + 1 = class c).
    log: progress lines (and skipped records).
    keep_predictions: also return the first N (sample, prediction) pairs (for pictures).
    good_sources: extra (source, indices) of defect-free images (e.g. the target's good
      images), evaluated with the rest so that false alarms per defect-free image are measured.
    val_fraction: share of the images (spread evenly) that choose per-class thresholds.
    pixel_pitch_mm: fabric length per image row, for false alarms per metre.
    progress: a tqdm bar with rate and ETA on stderr.
    partial_dir: write report.json / report.md there every `partial_every_s` seconds while
      running ("partial": true), so a long evaluation that dies keeps what it measured.
    detector_class_ids: the classes the detector predicts; the data's other classes get
      "unknown_classes" rows (counts, found by a box of any class) instead of F = 0 columns.

  Returns:
    (Evaluation, kept pairs).
  """
  names = list(class_names or getattr(source, "class_names", None) or classes_lib.CLASSES)
  name = getattr(source, "name", "<samples>")
  ev = Evaluation(names, threshold, name, seg_class_ids, pixel_pitch_mm, val_fraction,
                  detector_class_ids)
  indices = list(range(len(source))) if indices is None else list(indices)
  sources = [(name, source, indices)]
  for src, idx in good_sources:
    sources.append((getattr(src, "name", "<good samples>"), src, list(idx)))
  total = sum(len(s[2]) for s in sources)
  if not total:
    raise ValueError(f"evaluation source {name!r} has no samples")
  kept = []
  t0 = last_write = last_log = time.time()
  bar = tqdm.tqdm(total=total, unit="img", disable=not progress, dynamic_ncols=True,
                  desc="evaluate")
  stream = infer.predict_stream(predict_fn, _readable(sources, ev, log), tile=tile,
                                overlap=overlap, batch_size=batch_size,
                                max_detections=None)
  done = 0
  for (src_name, i, sample), pred in stream:
    ev.add(sample, pred, file_name=f"{src_name}/{i:08d}.png")
    if len(kept) < keep_predictions:
      kept.append((sample, pred))
    done += 1
    bar.update(1)
    bar.set_postfix(skipped=len(ev.skipped), refresh=False)
    now = time.time()
    if log and (now - last_log > 30 or done == total - len(ev.skipped)):
      log(f"  evaluated {done}/{total} images ({now - t0:.0f}s)")
      last_log = now
    if partial_dir and now - last_write > partial_every_s:
      ev.seconds = now - t0
      if len(ev.memory) < 200:
        ev.memory.append({"images": done, "seconds": round(now - t0, 1),
                          "peak_rss_mb": peak_rss_mb()})
      write_partial(ev, partial_dir)
      last_write = now
  bar.update(total - bar.n)
  bar.close()
  ev.seconds = time.time() - t0
  if not done:
    raise ValueError(f"evaluation source {name!r}: no record could be read "
                     f"({len(ev.skipped)} skipped; first: {ev.skipped[0]['error']})")
  return ev, kept


def write_partial(ev: Evaluation, out_dir: str) -> dict:
  """report.json and report.md of an evaluation still running (no pictures)."""
  os.makedirs(out_dir, exist_ok=True)
  report = ev.report(partial=True)
  _write_json(report, os.path.join(out_dir, "report.json"))
  md = table_lib.report_markdown(report, f"Evaluation on {ev.source_name} (partial)")
  with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
    f.write(md)
  return report


def _write_json(report: dict, path: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(_jsonable(report), f, indent=1)
  os.replace(tmp, path)


def write_report(ev: Evaluation, out_dir: str, report: dict | None = None,
                 title: str | None = None) -> dict:
  """Writes report.json, report.md, confusion_matrix.png and pr_curves.png; returns the report."""
  os.makedirs(out_dir, exist_ok=True)
  report = ev.report() if report is None else report
  _write_json(report, os.path.join(out_dir, "report.json"))
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
  known = [c for c in present
           if ev.detector_class_ids is None or c in ev.detector_class_ids]
  curves = {ev.class_names[c]: ev.defects.pr_curve(c) for c in known}
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
