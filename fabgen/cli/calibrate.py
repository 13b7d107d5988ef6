"""Per-class score thresholds from defect-free images, to a false-alarm budget.

  fabgen calibrate --checkpoint runs/detector --good fabricsim:simple:target_good \
      --false-alarms 0.1/image
  fabgen calibrate --checkpoint export/ --good data/good_strips --defects data/aitex@defect \
      --false-alarms 0.5/m --pitch-mm 0.1

--good: a reader spec of images of good product (every detection on them is a false alarm; an
image with labelled defects is an error). --false-alarms RATE/UNIT, UNIT one of image, m (metres
of web along the image rows) or 100m2 (the last two need --pitch-mm). The budget is shared
equally among the classes (`fabgen.detector.calibration`). --defects: a labelled set; the recall
each class's threshold gives is reported. Writes <checkpoint>/thresholds.json (atomically), which
`fabgen detect`, `evaluate`, `inspect-roll` and `export` then use unless --threshold is given.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--checkpoint", required=True, help="detector workdir or export folder")
  parser.add_argument("--good", required=True, help="defect-free images (reader spec/folder)")
  parser.add_argument("--defects", default=None, help="labelled defect images, for recall")
  parser.add_argument("--false-alarms", required=True,
                      help="budget, e.g. 0.1/image, 0.5/m or 2/100m2")
  parser.add_argument("--pitch-mm", type=float, default=None,
                      help="pixel pitch in mm (budgets per m or per 100 m^2)")
  parser.add_argument("--limit", type=int, default=None,
                      help="use N images of each set, spread over it")
  parser.add_argument("--floor", type=float, default=0.05, help="lowest threshold handed out")
  parser.add_argument("--overlap", type=int, default=64, help="tile overlap for large images")
  parser.add_argument("--batch-size", type=int, default=8)


def _images(source, limit):
  from fabgen.data.readers import spread_indices  # pylint: disable=g-import-not-at-top
  idx = spread_indices(len(source), limit) if limit else range(len(source))
  return [int(i) for i in idx]


def run(args: argparse.Namespace) -> int:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fabgen.data.readers import open_source  # pylint: disable=g-import-not-at-top
  from fabgen.detector import calibration, infer  # pylint: disable=g-import-not-at-top
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  err = lambda m: print(f"fabgen calibrate: error: {m}", file=sys.stderr) or 2  # noqa: E731
  try:
    budget = calibration.parse_budget(args.false_alarms)
    if budget.unit != "image" and not (args.pitch_mm and args.pitch_mm > 0):
      return err(f"--false-alarms {budget} needs --pitch-mm (mm per pixel)")
    if not 0.0 <= args.floor < 1.0:
      return err(f"--floor {args.floor} is not in [0, 1)")
    good = open_source(args.good)
    good_idx = _images(good, args.limit)
    if not good_idx:
      return err(f"--good {args.good!r} has no images")
    samples = [good[i] for i in good_idx]
    for i, s in zip(good_idx, samples):
      if np.any(np.asarray(s.get("box_class", [-1])) >= 0):
        return err(f"--good image {good.path_of(i)} has labelled defects; calibration needs "
                   f"defect-free images")
    predict_fn, info = infer.load_predictor(args.checkpoint)
  except (OSError, ValueError) as e:
    return err(e)
  ids, names = info["class_ids"], info["class_names"]
  print(f"calibrating {args.checkpoint} on {len(samples)} defect-free images of {good.name} "
        f"for {budget} false alarms", flush=True)
  preds = calibration.predict_all(predict_fn, [s["image"] for s in samples], info["tile"],
                                  args.overlap, args.batch_size, args.floor,
                                  log=lambda line: print(line, flush=True))
  sizes = [tuple(np.asarray(s["image"]).shape[:2]) for s in samples]
  result = calibration.calibrate(preds, sizes, ids, budget, args.pitch_mm, args.floor)
  recall = {}
  if args.defects:
    try:
      dsrc = open_source(args.defects)
    except (OSError, ValueError) as e:
      return err(e)
    didx = _images(dsrc, args.limit)
    dsamples = [dsrc[i] for i in didx]
    dpreds = calibration.predict_all(predict_fn, [s["image"] for s in dsamples], info["tile"],
                                     args.overlap, args.batch_size, args.floor)
    recall = calibration.recall_at(dsamples, dpreds, result["by_label"], max(ids) + 1)
  table = {n: result["by_label"][c] for c, n in zip(ids, names)}
  extra = {"budget": str(budget), "pitch_mm": args.pitch_mm, "good": args.good,
           "good_images": len(samples), "expected_alarms": result["expected_alarms"],
           "allowed": {n: result["allowed"][c] for c, n in zip(ids, names)},
           "false_alarms": {n: result["false_alarms"][c] for c, n in zip(ids, names)},
           "defects": args.defects,
           "recall": {n: recall[c] for c, n in zip(ids, names) if c in recall}}
  try:
    path = thresholds_lib.save(args.checkpoint, table, extra)
  except OSError as e:
    return err(f"cannot write thresholds beside {args.checkpoint}: {e}")
  print(f"{'class':14s} {'threshold':>9s} {'alarms':>6s} {'allowed':>7s} {'recall':>8s}")
  for c, n in zip(ids, names):
    r = recall.get(c)
    rtext = f"{100 * r['recall']:6.1f}% of {r['defects']}" if r else "-"
    print(f"{n:14s} {table[n]:9.4f} {result['false_alarms'][c]:6d} {result['allowed'][c]:7d} "
          f"{rtext:>8s}")
  print(f"{sum(result['false_alarms'].values())} false alarms on {len(samples)} good images "
        f"(budget {result['expected_alarms']:.2f}); wrote {path}")
  return 0
