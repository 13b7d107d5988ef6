"""A synthetic roll from FabricSim: strips with known defects, for tests and the README's map.

  python -m fabgen.inspection.synthetic_roll --out docs/roll_map.png

FabricSim images of one fabric are laid out as a web (`rows` images along, `cols` across), a
share of them with defects; the web is cut into strips of `strip_rows` lines, which need not
align with the images, so defects fall across strip boundaries. `oracle_detections` is what a
perfect detector would report per strip (each defect instance's box within the strip), so the
roll geometry can be checked against ground truth without a trained detector.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np


def build_web(preset: str = "tiny", rows: int = 6, cols: int = 1, defect_share: float = 1.0,
              fabric: int = 1, seed: int = 0, first_index: int = 100
              ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
  """(web image uint8 [H, W, 3], web instance ids [H, W], ground truth list).

  Ground truth: {"uid", "class_id", "box": (x0, y0, x1, y1) web pixels} per defect instance.
  """
  from fabgen.data.fabricsim import FabricSim  # pylint: disable=g-import-not-at-top
  sim = FabricSim(preset, seed=seed)
  rng = np.random.default_rng(seed)
  classes = [int(c) for c in sim.class_ids]
  size = sim.preset.image_size
  image_rows, label_rows, gt = [], [], []
  for r in range(rows):
    row_img, row_lab = [], []
    for c in range(cols):
      k = r * cols + c
      cls = classes[k % len(classes)] if rng.random() < defect_share else -1
      # One render at a time: the single-image program every FabricSim user compiles.
      out = sim.render(fabric, first_index + k, cls)
      mask = np.asarray(out["instance_mask"])
      lab = np.zeros(mask.shape, np.int64)
      for j in np.unique(mask):
        if j == 0:
          continue
        ys, xs = np.nonzero(mask == j)
        uid = len(gt) + 1
        lab[mask == j] = uid
        gt.append({"uid": uid, "class_id": int(np.asarray(out["instance_class"])[j - 1]),
                   "box": (int(xs.min()) + c * size, int(ys.min()) + r * size,
                           int(xs.max()) + 1 + c * size, int(ys.max()) + 1 + r * size)})
      row_img.append(np.asarray(out["image"]))
      row_lab.append(lab)
    image_rows.append(np.concatenate(row_img, 1))
    label_rows.append(np.concatenate(row_lab, 1))
  return np.concatenate(image_rows, 0), np.concatenate(label_rows, 0), gt


def strip_heights(total_rows: int, strip_rows: int) -> tuple[int, ...]:
  return tuple(min(strip_rows, total_rows - y) for y in range(0, total_rows, strip_rows))


def oracle_detections(labels: np.ndarray, gt: Sequence[dict], strip_rows: int) -> list[dict]:
  """Per strip: each instance's box within the strip, its class, score 1."""
  dets = []
  for y0 in range(0, labels.shape[0], strip_rows):
    part = labels[y0:y0 + strip_rows]
    boxes, cls = [], []
    for g in gt:
      ys, xs = np.nonzero(part == g["uid"])
      if len(ys):
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        cls.append(g["class_id"])
    dets.append({"boxes": np.asarray(boxes, np.float64).reshape(-1, 4),
                 "labels": np.asarray(cls, np.int64), "scores": np.ones(len(cls))})
  return dets


def expected_defects(gt: Sequence[dict]) -> list[dict]:
  """Instances of one class whose boxes overlap are one defect to a box detector: joined."""
  groups = [dict(g, box=tuple(int(v) for v in g["box"])) for g in gt]
  joined = True
  while joined:
    joined = False
    for a in range(len(groups)):
      for b in range(a + 1, len(groups)):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = groups[a]["box"], groups[b]["box"]
        if (groups[a]["class_id"] == groups[b]["class_id"] and ax0 < bx1 and bx0 < ax1
            and ay0 < by1 and by0 < ay1):
          groups[a]["box"] = (min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1))
          del groups[b]
          joined = True
          break
      if joined:
        break
  return groups


def main(argv=None) -> None:
  from fabgen.data import classes as classes_lib  # pylint: disable=g-import-not-at-top
  from fabgen.inspection import roll  # pylint: disable=g-import-not-at-top
  from fabgen.inspection import roll_map  # pylint: disable=g-import-not-at-top
  from fabgen.inspection import web as web_lib  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="docs/roll_map.png")
  parser.add_argument("--preset", default="simple")
  parser.add_argument("--rows", type=int, default=20, help="images along the web")
  parser.add_argument("--cols", type=int, default=3, help="images across the web")
  parser.add_argument("--strip-rows", type=int, default=384)
  parser.add_argument("--pitch-mm", type=float, default=0.5)
  parser.add_argument("--defect-share", type=float, default=0.35)
  args = parser.parse_args(argv)
  image, labels, gt = build_web(args.preset, args.rows, args.cols, args.defect_share)
  heights = strip_heights(image.shape[0], args.strip_rows)
  web = web_lib.Web(heights, image.shape[1], args.pitch_mm, image.shape[1] * args.pitch_mm / 1000)
  report = roll.inspect_detections(oracle_detections(labels, gt, args.strip_rows), web,
                                   dict(enumerate(classes_lib.CLASSES)))
  starts = (np.concatenate([[0], np.cumsum(heights)[:-1]]) * args.pitch_mm / 1000).tolist()
  roll_map.draw_roll_map(report["defects"], web.length_m, web.width_m, starts, report["grade"],
                         title=f"FabricSim {args.preset} roll (ground-truth defects)"
                         ).save(args.out)
  print(f"{len(report['defects'])} defects, {report['pieces_joined']} joined across "
        f"{len(heights)} strips; {report['grade']['total_points']} points; wrote {args.out}")


if __name__ == "__main__":
  main()
