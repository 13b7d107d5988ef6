"""Inspect one roll: its consecutive line-scan strips as one web, a defect list, map and grade.

  fabgen inspect-roll --checkpoint runs/detector strips/*.png --pitch-mm 0.1 --width-m 1.6
  fabgen inspect-roll --checkpoint export/ s000.png s001.png --pitch-mm 0.1 --width-m 1.6 \
      --out roll_17/ --max-points 28

STRIPS: image files in the order the web passed the camera (rows along the web, columns across
it, all of one width). --pitch-mm: mm per pixel; --width-m: the web's width (the strips may
cover part of it, from --across-offset-m). Thresholds: per class from `fabgen calibrate` unless
--threshold. Writes <out>/defects.json (roll, grade, defects), <out>/defects.csv (one row per
defect: class, score, position along / across in m, length / width / size in mm, ASTM D5430
points) and <out>/roll_map.png; prints the grade (points per 100 m^2 and per 100 yd^2).
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--checkpoint", required=True, help="detector workdir or export folder")
  parser.add_argument("strips", nargs="+", help="strip image files, in web order")
  parser.add_argument("--pitch-mm", type=float, required=True, help="mm per pixel")
  parser.add_argument("--width-m", type=float, required=True, help="web width in metres")
  parser.add_argument("--across-offset-m", type=float, default=0.0,
                      help="where the strips' first column lies across the web")
  parser.add_argument("--out", default="roll_inspection", help="output folder")
  parser.add_argument("--threshold", type=float, default=None,
                      help="one score threshold for every class (default: calibrated, else 0.5)")
  parser.add_argument("--max-points", type=float, default=40.0,
                      help="acceptance limit in points per 100 yd^2 (a contract term)")
  parser.add_argument("--overlap", type=int, default=None,
                      help="tile overlap in px (default: a quarter of the tile, at most 64)")
  parser.add_argument("--batch-size", type=int, default=8)


def run(args: argparse.Namespace) -> int:
  from fabgen.data.readers.images import ReadError, image_size, read_image  # pylint: disable=g-import-not-at-top
  from fabgen.detector import infer  # pylint: disable=g-import-not-at-top
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  from fabgen.inspection import roll, web as web_lib  # pylint: disable=g-import-not-at-top
  err = lambda m: print(f"fabgen inspect-roll: error: {m}", file=sys.stderr) or 2  # noqa: E731
  outputs = {os.path.abspath(os.path.join(args.out, f))
             for f in ("defects.json", "defects.csv", "roll_map.png")}
  clash = [p for p in args.strips if os.path.abspath(p) in outputs]
  if clash:
    return err(f"--out {args.out} would overwrite the input strip {clash[0]}")
  try:
    sizes = []
    for p in args.strips:
      if not os.path.isfile(p):
        raise OSError(f"strip {p!r} does not exist")
      sizes.append(tuple(image_size(p)))
    widths = {w for _, w in sizes}
    if len(widths) != 1:
      raise ValueError("strips differ in width: " + ", ".join(
          f"{p} {w}px" for p, (_, w) in zip(args.strips, sizes)))
    web = web_lib.Web(tuple(h for h, _ in sizes), widths.pop(), args.pitch_mm, args.width_m,
                      args.across_offset_m)
    predict_fn, info = infer.load_predictor(args.checkpoint)
    by_label, how = thresholds_lib.resolve(args.threshold, info)
  except (OSError, ValueError, ReadError) as e:
    return err(e)
  names = dict(zip(info["class_ids"], info["class_names"]))
  overlap = args.overlap if args.overlap is not None else min(64, min(info["tile"]) // 4)
  print(f"{len(args.strips)} strips = {web.length_m:.3f} m x {web.inspected_width_m:.3f} m "
        f"inspected of a {web.width_m} m web; {how}", flush=True)
  try:
    report = roll.inspect_roll(predict_fn, lambda k: read_image(args.strips[k]), len(args.strips),
                               web, names, by_label, info["tile"], overlap, args.batch_size,
                               args.max_points, log=lambda line: print(line, flush=True))
  except (OSError, ValueError, ReadError) as e:
    return err(e)
  report["strip_files"] = [os.path.abspath(p) for p in args.strips]
  report["checkpoint"] = os.path.abspath(args.checkpoint)
  paths = roll.write_outputs(report, args.out, title=os.path.basename(args.out.rstrip("/")))
  g = report["grade"]
  print(f"{len(report['defects'])} defects ({report['pieces_joined']} joined across strips), "
        f"{g['total_points']} points = {g['points_per_100m2']:.2f} / 100 m^2, "
        f"{g['points_per_100yd2']:.2f} / 100 yd^2: "
        f"{'accepted' if g['accepted'] else 'rejected'} at {g['limit_points_per_100yd2']:g}")
  print(f"wrote {paths['json']}, {paths['csv']} and {paths['map']}")
  return 0
