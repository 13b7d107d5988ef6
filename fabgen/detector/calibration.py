"""Per-class score thresholds chosen on defect-free images to meet a false-alarm budget.

An inspection line states what it tolerates as "false alarms per image", "per metre of web" or
"per 100 m^2"; the detector's scores mean nothing to the operator. On images of good product
every detection is a false alarm, so the budget is a count: `rate x (images, metres or m^2 of
the calibration set)`. That total is shared equally among the detector's classes (`allocate`:
a class that needs less than its share hands the rest to the others), and each class's threshold is set just above its (n_c + 1)-th highest
false-alarm score, so exactly n_c of its false alarms remain on the calibration set. No
detector's score distribution is assumed: on held-out good images of the same fabric the count
is, in expectation, at or below the budget (`tests/detector/test_calibration.py` checks it
against the binomial interval).

Where labelled defect images are given, the defect-level recall each threshold gives is
reported with it (the evaluator of `fabgen.detector.metrics`: a defect is found by a prediction
of its class that matches it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fabgen.detector import infer
from fabgen.detector import metrics

UNITS = ("image", "m", "100m2")


@dataclasses.dataclass(frozen=True)
class Budget:
  """A false-alarm rate: `rate` alarms per `unit` (image, metre along the web, 100 m^2)."""
  rate: float
  unit: str

  def per_image(self, height: int, width: int, pitch_mm: float | None) -> float:
    """The rate in alarms per image of height x width pixels (rows run along the web)."""
    if self.unit == "image":
      return self.rate
    if pitch_mm is None or pitch_mm <= 0:
      raise ValueError(f"a false-alarm budget per {self.unit} needs the pixel pitch (--pitch-mm)")
    if self.unit == "m":
      return self.rate * height * pitch_mm / 1000.0
    return self.rate * (height * pitch_mm / 1000.0) * (width * pitch_mm / 1000.0) / 100.0

  def __str__(self) -> str:
    return f"{self.rate:g}/{self.unit}"


def parse_budget(text: str) -> Budget:
  """'0.1/image', '0.5/m', '2/100m2' (also 'per image', 'm^2') -> Budget, with a clear error."""
  m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(?:/|per)\s*([\w^ ]+?)\s*", str(text))
  unit = m and m.group(2).replace(" ", "").replace("^", "").lower()
  unit = {"img": "image", "images": "image", "metre": "m", "meter": "m", "100m2": "100m2",
          "100sqm": "100m2"}.get(unit, unit)
  if not m or unit not in UNITS:
    raise ValueError(f"--false-alarms {text!r}: expected RATE/UNIT with UNIT one of image, m, "
                     f"100m2 (e.g. 0.1/image, 0.5/m, 2/100m2)")
  return Budget(float(m.group(1)), unit)


def allocate(total: int, scores_by_class: Mapping[int, np.ndarray]) -> dict[int, int]:
  """Alarms allowed per class: equal shares of `total`, re-shared where a class needs fewer.

  A class with fewer false alarms than its share (one that rarely fires on good product) keeps
  what it has and hands the rest back; the rest is shared equally among the others, and a last
  remainder smaller than their number goes one each to the classes whose next false alarm
  scores highest (where one more alarm buys the largest drop of the threshold).
  """
  counts = {c: len(np.asarray(s)) for c, s in scores_by_class.items()}
  allowed = {c: 0 for c in counts}
  remaining = max(int(total), 0)
  while remaining > 0:
    active = [c for c in counts if allowed[c] < counts[c]]
    if not active:
      break
    base, rest = divmod(remaining, len(active))
    if base == 0:
      def next_score(c):
        return np.sort(np.asarray(scores_by_class[c]))[::-1][allowed[c]]
      for c in sorted(active, key=next_score, reverse=True)[:rest]:
        allowed[c] += 1
      break
    for c in active:
      give = min(base, counts[c] - allowed[c])
      allowed[c] += give
      remaining -= give
  return allowed


def threshold_for(scores: np.ndarray, allowed: int, floor: float) -> float:
  """The lowest threshold that leaves at most `allowed` of `scores` at or above it (>= floor)."""
  s = np.sort(np.asarray(scores, np.float64))[::-1]
  if allowed >= len(s):
    return float(floor)
  return float(min(max(np.nextafter(s[allowed], np.inf), floor), 1.0))


def false_alarm_scores(preds: Sequence[Mapping[str, np.ndarray]], class_ids: Sequence[int]
                       ) -> dict[int, np.ndarray]:
  """Global class id -> the scores of every detection of that class (all of them false alarms)."""
  out = {}
  for c in class_ids:
    out[int(c)] = np.concatenate([np.asarray(p["scores"], np.float64)[np.asarray(p["labels"]) == c]
                                  for p in preds]) if preds else np.zeros(0)
  return out


def count_alarms(preds: Sequence[Mapping[str, np.ndarray]], by_label: Mapping[int, float]
                 ) -> dict[int, int]:
  """Detections at or above their class's threshold, per class, over a list of predictions."""
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  counts = {int(c): 0 for c in by_label}
  for p in preds:
    keep = thresholds_lib.keep_mask(p["scores"], p["labels"], by_label)
    for c in np.asarray(p["labels"])[keep]:
      counts[int(c)] = counts.get(int(c), 0) + 1
  return counts


def calibrate(good_preds: Sequence[Mapping[str, np.ndarray]], image_sizes: Sequence[tuple],
              class_ids: Sequence[int], budget: Budget, pitch_mm: float | None = None,
              floor: float = 0.05) -> dict[str, Any]:
  """Thresholds from predictions on defect-free images.

  Args:
    good_preds: one prediction dict per good image (boxes, scores, labels; score floor applied
      below `floor` is fine: thresholds never go below it).
    image_sizes: (height, width) of each image, for budgets per metre / per 100 m^2.
    class_ids: the detector's global class ids.
    budget: the false-alarm rate to meet.
    pitch_mm: pixel pitch (mm per pixel), needed for per-m / per-100 m^2 budgets.
    floor: the lowest threshold handed out (the detector reports nothing below its score floor).

  Returns:
    {"by_label": {class id: threshold}, "allowed": {class id: alarms}, "total_allowed",
     "units": the calibration set in the budget's units, "false_alarms": {class id: count on
     the calibration set at the chosen thresholds}}.
  """
  if not good_preds:
    raise ValueError("calibration needs at least one defect-free image")
  expected = sum(budget.per_image(h, w, pitch_mm) for h, w in image_sizes)
  total = int(math.floor(expected + 1e-9))
  scores = false_alarm_scores(good_preds, class_ids)
  allowed = allocate(total, scores)
  by_label = {c: threshold_for(scores[c], allowed[c], floor) for c in scores}
  return {"by_label": by_label, "allowed": allowed, "total_allowed": total,
          "expected_alarms": expected, "false_alarms": count_alarms(good_preds, by_label)}


def recall_at(defect_samples: Sequence[Mapping[str, Any]],
              defect_preds: Sequence[Mapping[str, np.ndarray]], by_label: Mapping[int, float],
              num_classes: int) -> dict[int, dict]:
  """Defect-level recall of each class at its threshold: {class id: {recall, found, defects}}."""
  ev = metrics.DefectEvaluator(num_classes)
  for s, p in zip(defect_samples, defect_preds):
    ev.add(s, p["boxes"], p["scores"], p["labels"])
  out = {}
  for c, t in by_label.items():
    sc = ev.defect_scores(t)[c]
    if sc.num_true:
      out[int(c)] = {"recall": float(sc.recall), "defects": int(sc.num_true),
                     "threshold": float(t)}
  return out


def predict_all(predict_fn: infer.PredictFn, images: Sequence[np.ndarray], tile, overlap: int,
                batch_size: int, floor: float, log: Callable[[str], None] | None = None
                ) -> list[dict]:
  """Predictions (score floor `floor`) for a list of images, in chunks (bounded memory)."""
  out: list[dict] = []
  chunk = max(batch_size, 1) * 4
  for start in range(0, len(images), chunk):
    part = [np.asarray(im) for im in images[start:start + chunk]]
    for p in infer.predict_images(predict_fn, part, tile=tile, overlap=overlap,
                                  batch_size=batch_size, score_floor=floor):
      p.pop("seg_probs", None)
      out.append(p)
    if log:
      log(f"  predicted {min(start + chunk, len(images))}/{len(images)} images")
  return out
