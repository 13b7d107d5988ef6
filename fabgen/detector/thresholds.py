"""Per-class score thresholds: the file beside a checkpoint, and applying them.

`fabgen calibrate` chooses one score threshold per class on defect-free images (see
`fabgen.detector.calibration`) and writes them next to the detector:

  <checkpoint>/thresholds.json   {"format": FORMAT, "thresholds": {class name: t}, ...}

`fabgen detect`, `fabgen evaluate`, `fabgen inspect-roll` and `fabgen export` read it by default
(`--threshold` overrides with one global number); an exported detector carries the same table
in its metadata. A class the file does not name falls back to the global default.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

FORMAT = "fabgen-thresholds-v1"
FILE = "thresholds.json"
DEFAULT = 0.5


def path_for(checkpoint: str) -> str:
  return os.path.join(checkpoint, FILE)


def save(checkpoint: str, table: Mapping[str, float], extra: Mapping[str, Any] | None = None
         ) -> str:
  """Writes `<checkpoint>/thresholds.json` atomically (a reader never sees half a file)."""
  for name, t in table.items():
    if not 0.0 <= float(t) <= 1.0:
      raise ValueError(f"threshold of class {name!r} is {t}, not in [0, 1]")
  doc = {"format": FORMAT, "thresholds": {str(k): float(v) for k, v in table.items()},
         **dict(extra or {})}
  path = path_for(checkpoint)
  tmp = os.path.join(checkpoint, f".{FILE}.{os.getpid()}.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=1)
  os.replace(tmp, path)
  return path


def load(checkpoint: str) -> dict[str, float] | None:
  """The class name -> threshold table beside `checkpoint`, or None when there is none."""
  path = path_for(checkpoint)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path} is not a readable thresholds file: {e}") from None
  if not isinstance(doc, dict) or doc.get("format") != FORMAT:
    raise ValueError(f"{path} has format {doc.get('format') if isinstance(doc, dict) else None!r}"
                     f", expected {FORMAT!r}")
  return check_table(doc.get("thresholds"), path)


def check_table(table: Any, where: str) -> dict[str, float]:
  """Validates a {class name: threshold in [0, 1]} mapping read from `where`."""
  if not isinstance(table, dict):
    raise ValueError(f"{where}: 'thresholds' must be a mapping of class name to score")
  out = {}
  for name, t in table.items():
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0.0 <= t <= 1.0:
      raise ValueError(f"{where}: threshold of class {name!r} is {t!r}, not a number in [0, 1]")
    out[str(name)] = float(t)
  return out


def per_label(table: Mapping[str, float] | None, class_ids: Sequence[int],
              class_names: Sequence[str], default: float = DEFAULT) -> dict[int, float]:
  """Global class id -> threshold for the detector's classes (missing names get `default`)."""
  table = table or {}
  return {int(c): float(table.get(n, default)) for c, n in zip(class_ids, class_names)}


def resolve(override: float | None, info: Mapping[str, Any]) -> tuple[dict[int, float], str]:
  """(per-label thresholds, a line saying where they came from) for a loaded predictor.

  `override` (the --threshold flag) wins; else the calibrated table in `info["thresholds"]`
  (from thresholds.json or the export's metadata); else DEFAULT for every class.
  """
  ids, names = info["class_ids"], info["class_names"]
  if override is not None:
    if not 0.0 <= override <= 1.0:
      raise ValueError(f"--threshold {override} is not in [0, 1]")
    return per_label({}, ids, names, override), f"threshold {override} (--threshold)"
  table = info.get("thresholds")
  if table:
    where = info.get("thresholds_from", "calibration")
    text = ", ".join(f"{n} {table.get(n, DEFAULT):.3f}" for n in names)
    return per_label(table, ids, names), f"per-class thresholds from {where}: {text}"
  return per_label({}, ids, names), f"threshold {DEFAULT} (no thresholds.json; run fabgen calibrate)"


def keep_mask(scores: np.ndarray, labels: np.ndarray, by_label: Mapping[int, float]) -> np.ndarray:
  """Which detections reach their class's threshold (unknown labels: the strictest, 1.0)."""
  scores = np.asarray(scores).reshape(-1)
  t = np.asarray([by_label.get(int(c), 1.0) for c in np.asarray(labels).reshape(-1)], np.float64)
  return scores >= t


def apply(pred: Mapping[str, np.ndarray], by_label: Mapping[int, float]) -> dict:
  """A prediction dict with only the detections at or above their class's threshold."""
  keep = keep_mask(pred["scores"], pred["labels"], by_label)
  out = dict(pred)
  for k in ("boxes", "scores", "labels"):
    out[k] = np.asarray(pred[k])[keep]
  return out


def rescale_scores(scores: np.ndarray, labels: np.ndarray, by_label: Mapping[int, float],
                   at: float = 0.5) -> np.ndarray:
  """Scores mapped, per class and monotonically, so that each class's threshold lands on `at`.

  Piecewise linear: [0, t_c] -> [0, at] and [t_c, 1] -> [at, 1]. An evaluator that applies one
  global threshold `at` to the rescaled scores applies the per-class thresholds, while every
  per-class ranking (PR curves, AP) is unchanged.
  """
  scores = np.asarray(scores, np.float64).reshape(-1)
  t = np.asarray([by_label.get(int(c), 1.0) for c in np.asarray(labels).reshape(-1)], np.float64)
  t = np.clip(t, 1e-9, 1 - 1e-9)
  low = at * scores / t
  high = at + (1 - at) * (scores - t) / (1 - t)
  return np.where(scores < t, low, high).clip(0.0, 1.0)
