"""Roll-level inspection: run the detector strip by strip, join the web, list, grade, map.

`inspect_roll(predict_fn, strips, web, ...)` takes the strips of one roll in order (arrays or a
callable that reads strip k, so a long roll never sits in memory at once), runs tiled inference
(`fabgen.detector.infer.tiled_predict`) on each with the per-class thresholds, joins defects
across strip boundaries (`fabgen.inspection.web`), grades the roll (`fabgen.inspection.grading`)
and returns the report; `write_outputs` writes defects.csv, defects.json and roll_map.png.
`inspect_detections` is the same without a detector (detections per strip in, report out).
"""

from __future__ import annotations

import csv
import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fabgen.detector import infer
from fabgen.detector import thresholds as thresholds_lib
from fabgen.inspection import grading
from fabgen.inspection import roll_map
from fabgen.inspection import web as web_lib

CSV_FIELDS = ("id", "class", "score", "along_m", "across_m", "length_mm", "width_mm", "size_mm",
              "points", "along_start_m", "along_end_m", "across_start_m", "across_end_m",
              "strips")


def inspect_detections(strip_dets: Sequence[Mapping[str, np.ndarray]], web: web_lib.Web,
                       class_names: Mapping[int, str], max_points_per_100yd2: float = 40.0,
                       gap_px: float = 2.0) -> dict[str, Any]:
  """The roll report from detections per strip (already thresholded)."""
  merged = web_lib.merge_across_strips(web_lib.to_web(strip_dets, web), gap_px=gap_px)
  defects = web_lib.defect_records(merged, web, class_names)
  grade = grading.grade(defects, web.length_m, web.inspected_width_m, max_points_per_100yd2)
  counts: dict[str, int] = {}
  for d in defects:
    counts[d["class"]] = counts.get(d["class"], 0) + 1
  return {"roll": {"length_m": round(web.length_m, 4), "width_m": web.width_m,
                   "inspected_width_m": round(web.inspected_width_m, 4),
                   "pitch_mm": web.pitch_mm, "strips": len(web.strip_heights),
                   "strip_heights_px": list(web.strip_heights), "strip_width_px": web.strip_width,
                   "across_offset_m": web.across_offset_m},
          "grade": grade, "defects_per_class": counts, "defects": defects,
          "pieces_joined": int(sum(len(s) > 1 for s in merged["strips"]))}


def inspect_roll(predict_fn: infer.PredictFn, strips: Sequence[np.ndarray] | Callable[[int], np.ndarray],
                 num_strips: int | None, web: web_lib.Web, class_names: Mapping[int, str],
                 by_label: Mapping[int, float], tile: tuple[int, int], overlap: int = 64,
                 batch_size: int = 8, max_points_per_100yd2: float = 40.0,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Runs the detector over every strip, then `inspect_detections`."""
  read = strips if callable(strips) else (lambda k: strips[k])
  n = len(strips) if num_strips is None else int(num_strips)
  dets = []
  # The tiler's score floor must not drop what a (low) calibrated threshold keeps.
  floor = min([0.05, *by_label.values()])
  t0 = time.perf_counter()
  for k in range(n):
    strip = np.asarray(read(k))
    if strip.shape[:2] != (web.strip_heights[k], web.strip_width):
      raise ValueError(f"strip {k} is {strip.shape[0]}x{strip.shape[1]}, expected "
                       f"{web.strip_heights[k]}x{web.strip_width}")
    pred = infer.tiled_predict(predict_fn, strip, tile, overlap, batch_size, score_floor=floor)
    pred.pop("seg_probs", None)
    dets.append(thresholds_lib.apply(pred, by_label))
    if log:
      log(f"  strip {k + 1}/{n}: {len(dets[-1]['scores'])} detections")
  seconds = time.perf_counter() - t0
  report = inspect_detections(dets, web, class_names, max_points_per_100yd2)
  report["seconds"] = round(seconds, 3)
  report["web_speed_m_per_min"] = round(web.length_m / seconds * 60.0, 3) if seconds > 0 else None
  report["thresholds"] = {class_names.get(c, str(c)): t for c, t in by_label.items()}
  return report


def write_outputs(report: Mapping[str, Any], out_dir: str, title: str = "") -> dict[str, str]:
  """defects.json (the whole report), defects.csv (one row per defect), roll_map.png."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, f) for k, f in
           (("json", "defects.json"), ("csv", "defects.csv"), ("map", "roll_map.png"))}
  _atomic_text(paths["json"], json.dumps(report, indent=1))
  tmp = paths["csv"] + ".tmp"
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for d in report["defects"]:
      w.writerow({**d, "strips": " ".join(str(s) for s in d["strips"])})
  os.replace(tmp, paths["csv"])
  roll = report["roll"]
  heights = np.asarray(roll["strip_heights_px"], np.float64)
  starts = np.concatenate([[0.0], np.cumsum(heights)[:-1]]) * roll["pitch_mm"] / 1000.0
  img = roll_map.draw_roll_map(report["defects"], roll["length_m"], roll["width_m"],
                               starts.tolist(), report["grade"], title)
  tmp = paths["map"] + ".tmp.png"
  img.save(tmp)
  os.replace(tmp, paths["map"])
  return paths


def _atomic_text(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)
