"""Do synthesized defects have the size and shape of real ones? Per class, box by box.

A detector fine-tuned on synthetic defects learns their sizes: if every synthesized broken end is
a 16-px square, it learns to look for squares. This report puts, per class, the distribution of
labelled box width, height and area of a synthesis run beside that of real labelled defects
(quantiles 10/50/90 and the two-sample Kolmogorov-Smirnov distance, `scipy.stats.ks_2samp`),
plus the ratio of median areas, the figure the issue-16 bar (within 2x) is read from.

Both sides are *component* boxes (the minimal rectangles of connected mask components), as the
detector is trained and scored on them: real ones from records' `boxes`/`box_class`, synthetic
ones from a synthesis folder's `parts/*.json` (`stream.SynthesisRun`).
"""

from __future__ import annotations

import glob
import json
import os
from typing import Iterable, Mapping

import numpy as np
from scipy import stats

from fabgen.data import classes as classes_lib
from fabgen.data import writer as writer_lib

QUANTILES = (10, 50, 90)
REPORT = "box_stats"


def _whs(boxes: np.ndarray) -> np.ndarray:
  """[N, 4] (x0, y0, x1, y1) -> [N, 3] (w, h, area)."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  return np.stack([w, h, w * h], 1)


def real_boxes(records: Iterable[Mapping[str, np.ndarray]]) -> dict[int, np.ndarray]:
  """Class id -> [N, 3] (w, h, area) of the records' labelled boxes."""
  out: dict[int, list] = {}
  for rec in records:
    boxes = np.asarray(rec["boxes"]).reshape(-1, 4)
    for box, cid in zip(boxes, np.asarray(rec["box_class"]).tolist()):
      if cid >= 0:
        out.setdefault(int(cid), []).append(box)
  return {c: _whs(np.stack(v)) for c, v in out.items()}


def synthesized_boxes(synth_dir: str) -> dict[int, np.ndarray]:
  """Class id -> [N, 3] (w, h, area) of a synthesis folder's labelled boxes."""
  parts = sorted(glob.glob(os.path.join(synth_dir, "parts", "*.json")))
  if not parts:
    raise ValueError(f"{synth_dir}: no parts/*.json; is it a synthesis output folder?")
  out: dict[int, list] = {}
  for part in parts:
    with open(part) as f:
      for rec in json.load(f)["records"]:
        out.setdefault(int(rec["class_id"]), []).extend(rec["boxes"])
  return {c: _whs(np.asarray(v)) for c, v in out.items() if v}


def _summary(values: np.ndarray) -> dict:
  out = {"n": int(len(values))}
  for k, name in enumerate(("w", "h", "area")):
    out[name] = {f"q{q}": float(np.percentile(values[:, k], q)) for q in QUANTILES}
  return out


def compare(real: Mapping[int, np.ndarray], synth: Mapping[int, np.ndarray]) -> dict:
  """Per class that was synthesized: both summaries, KS distances, median-area ratio."""
  classes = {}
  for cid in sorted(synth):
    s = synth[cid]
    row = {"synthesized": _summary(s)}
    r = real.get(cid)
    if r is not None and len(r):
      row["real"] = _summary(r)
      row["ks"] = {name: float(stats.ks_2samp(s[:, k], r[:, k]).statistic)
                   for k, name in enumerate(("w", "h", "area"))}
      row["median_area_ratio"] = float(np.median(s[:, 2]) / max(np.median(r[:, 2]), 1e-9))
    classes[classes_lib.CLASSES[cid]] = row
  return {"quantiles": list(QUANTILES), "classes": classes}


def markdown(report: Mapping, title: str = "Box sizes: synthesized vs real") -> str:
  """One row per class and side: quantiles of w, h, area; KS distances; median-area ratio."""
  qs = "/".join(f"q{q}" for q in report["quantiles"])
  lines = [f"### {title}", "",
           f"Quantiles {qs} of box width, height, area (px); KS = two-sample Kolmogorov-Smirnov "
           "distance; ratio = median area synthesized / real.", "",
           "| class | side | n | w | h | area | KS w / h / area | ratio |", "|" + "---|" * 8]
  fmt = lambda d: " / ".join(f"{v:.0f}" for v in d.values())
  for name, row in report["classes"].items():
    for side in ("synthesized", "real"):
      if side not in row:
        continue
      d = row[side]
      extra = ["", ""]
      if side == "synthesized" and "ks" in row:
        extra = [" / ".join(f"{v:.2f}" for v in row["ks"].values()),
                 f"{row['median_area_ratio']:.2f}"]
      lines.append(f"| {name} | {side} | {d['n']} | {fmt(d['w'])} | {fmt(d['h'])} | "
                   f"{fmt(d['area'])} | {extra[0]} | {extra[1]} |")
  return "\n".join(lines) + "\n"


def write_report(synth_dir: str, real_records: Iterable[Mapping[str, np.ndarray]] | None = None,
                 real: Mapping[int, np.ndarray] | None = None) -> dict:
  """Writes `box_stats.json` and `box_stats.md` into a synthesis folder; returns the report."""
  if real is None:
    if real_records is None:
      raise ValueError("box report: give real_records or real boxes")
    real = real_boxes(real_records)
  report = compare(real, synthesized_boxes(synth_dir))
  writer_lib.write_json(os.path.join(synth_dir, f"{REPORT}.json"), report)
  tmp = os.path.join(synth_dir, f".{REPORT}.md.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(markdown(report))
  os.replace(tmp, os.path.join(synth_dir, f"{REPORT}.md"))
  return report
