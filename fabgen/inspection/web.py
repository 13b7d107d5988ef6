"""Consecutive line-scan strips as one continuous web: coordinates in metres, joined defects.

A line-scan camera images the moving web line by line; the frame grabber cuts the stream into
strips. Rows run along the web (the direction of motion), columns across it; strip k starts
where strip k - 1 ended. A defect that lies across a strip boundary (a broken end, a long
stripe) is seen as two or more pieces, one at the bottom edge of a strip and one at the top edge
of the next; `merge_across_strips` joins them into one defect, transitively (a stripe longer than
a strip comes back whole).

Everything here works on detections (boxes, scores, labels per strip), so the geometry is
testable without a detector; `fabgen.inspection.roll` runs the detector.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from fabgen.detector import grouping


@dataclasses.dataclass(frozen=True)
class Web:
  """The geometry of one inspected roll section.

  strip_heights: rows of each strip, in order; strip_width: columns (the same for every strip);
  pitch_mm: mm per pixel (square pixels); width_m: the web's width (the map's extent; the
  strips may cover part of it, starting at across_offset_m).
  """
  strip_heights: tuple[int, ...]
  strip_width: int
  pitch_mm: float
  width_m: float
  across_offset_m: float = 0.0

  def __post_init__(self):
    if self.pitch_mm <= 0:
      raise ValueError(f"pixel pitch {self.pitch_mm} mm must be positive")
    if self.width_m <= 0:
      raise ValueError(f"web width {self.width_m} m must be positive")
    if not self.strip_heights or min(self.strip_heights) <= 0 or self.strip_width <= 0:
      raise ValueError(f"strips must be non-empty images, got heights {self.strip_heights} and "
                       f"width {self.strip_width}")
    covered = self.across_offset_m + self.strip_width * self.pitch_mm / 1000.0
    if covered > self.width_m * 1.001:
      raise ValueError(f"the strips are {self.strip_width} px x {self.pitch_mm} mm = "
                       f"{self.strip_width * self.pitch_mm / 1000:.3f} m wide (from "
                       f"{self.across_offset_m} m), more than the web width {self.width_m} m: "
                       f"check --pitch-mm and --width-m")

  @property
  def offsets(self) -> np.ndarray:
    """First row of each strip in web pixels."""
    return np.concatenate([[0], np.cumsum(self.strip_heights)[:-1]]).astype(np.int64)

  @property
  def length_m(self) -> float:
    return float(sum(self.strip_heights)) * self.pitch_mm / 1000.0

  @property
  def inspected_width_m(self) -> float:
    return self.strip_width * self.pitch_mm / 1000.0

  @property
  def inspected_area_m2(self) -> float:
    return self.length_m * self.inspected_width_m


def to_web(strip_dets: Sequence[Mapping[str, np.ndarray]], web: Web) -> dict[str, np.ndarray]:
  """Per-strip detections -> one list in web pixels, with `strip` (index) and `edge` flags.

  edge_top / edge_bottom: the box touches the strip's top / bottom row (within 1.5 px), i.e.
  it may continue in the neighbouring strip.
  """
  if len(strip_dets) != len(web.strip_heights):
    raise ValueError(f"{len(strip_dets)} strips of detections for {len(web.strip_heights)} strips")
  boxes, scores, labels, strip, top, bottom = [], [], [], [], [], []
  for k, (d, off, h) in enumerate(zip(strip_dets, web.offsets, web.strip_heights)):
    b = np.asarray(d["boxes"], np.float64).reshape(-1, 4)
    boxes.append(b + np.array([0, off, 0, off], np.float64))
    scores.append(np.asarray(d["scores"], np.float64).reshape(-1))
    labels.append(np.asarray(d["labels"], np.int64).reshape(-1))
    strip.append(np.full(len(b), k, np.int64))
    top.append(b[:, 1] <= 1.5)
    bottom.append(b[:, 3] >= h - 1.5)
  cat = lambda xs, shape, dt: np.concatenate(xs) if xs else np.zeros(shape, dt)  # noqa: E731
  return {"boxes": cat(boxes, (0, 4), np.float64), "scores": cat(scores, (0,), np.float64),
          "labels": cat(labels, (0,), np.int64), "strip": cat(strip, (0,), np.int64),
          "edge_top": cat(top, (0,), bool), "edge_bottom": cat(bottom, (0,), bool)}


def merge_across_strips(dets: Mapping[str, np.ndarray], gap_px: float = 2.0,
                        same_class: bool = True) -> dict[str, np.ndarray]:
  """Joins pieces of one defect cut by strip boundaries (union of boxes, highest score).

  Two detections are pieces of one defect when one touches the bottom of strip k, the other the
  top of strip k + 1, their column ranges overlap (allowing `gap_px`), and (if `same_class`)
  they have the same class. Joined groups keep the label of their highest-scoring piece;
  `strips` lists the strips each defect spans.
  """
  boxes = np.asarray(dets["boxes"], np.float64).reshape(-1, 4)
  n = len(boxes)
  strip, labels = np.asarray(dets["strip"]), np.asarray(dets["labels"])
  lower = np.nonzero(dets["edge_bottom"])[0]
  upper = np.nonzero(dets["edge_top"])[0]
  links = [(i, j) for i in lower for j in upper
           if strip[j] == strip[i] + 1 and (not same_class or labels[i] == labels[j])
           and boxes[i, 0] - gap_px <= boxes[j, 2] and boxes[j, 0] - gap_px <= boxes[i, 2]]
  roots = grouping.link_groups(n, links)
  out_b, out_s, out_l, out_strips = [], [], [], []
  scores = np.asarray(dets["scores"], np.float64)
  for r in np.unique(roots):
    members = np.nonzero(roots == r)[0]
    b = boxes[members]
    best = members[np.argmax(scores[members])]
    out_b.append([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
    out_s.append(scores[best])
    out_l.append(labels[best])
    out_strips.append(sorted(set(int(s) for s in strip[members])))
  order = np.argsort(np.asarray([b[1] for b in out_b]), kind="stable") if out_b else []
  return {"boxes": np.asarray(out_b, np.float64).reshape(-1, 4)[order],
          "scores": np.asarray(out_s, np.float64)[order],
          "labels": np.asarray(out_l, np.int64)[order],
          "strips": [out_strips[i] for i in order]}


def defect_records(merged: Mapping[str, np.ndarray], web: Web, class_names: Mapping[int, str]
                   ) -> list[dict]:
  """One dict per defect: position in metres along / across the roll, size in mm, class, score.

  along_m / across_m are the defect's centre; *_start_m / *_end_m its extent; length_mm is the
  extent along the web, width_mm across it, size_mm the larger of the two (what ASTM D5430
  grades).
  """
  mm = web.pitch_mm
  out = []
  for i, (b, s, c, strips) in enumerate(zip(merged["boxes"], merged["scores"], merged["labels"],
                                            merged["strips"])):
    x0, y0, x1, y1 = (float(v) for v in b)
    length_mm, width_mm = (y1 - y0) * mm, (x1 - x0) * mm
    out.append({
        "id": i + 1, "class": class_names.get(int(c), str(int(c))), "class_id": int(c),
        "score": round(float(s), 4),
        "along_m": round((y0 + y1) / 2 * mm / 1000.0, 6),
        "across_m": round(web.across_offset_m + (x0 + x1) / 2 * mm / 1000.0, 6),
        "along_start_m": round(y0 * mm / 1000.0, 6), "along_end_m": round(y1 * mm / 1000.0, 6),
        "across_start_m": round(web.across_offset_m + x0 * mm / 1000.0, 6),
        "across_end_m": round(web.across_offset_m + x1 * mm / 1000.0, 6),
        "length_mm": round(length_mm, 3), "width_mm": round(width_mm, 3),
        "size_mm": round(max(length_mm, width_mm), 3), "strips": list(strips)})
  return out
