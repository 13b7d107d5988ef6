"""Per-class F-measure (defect, pixel, image level) and box mAP of a detector on a data source.

  fabgen evaluate --checkpoint runs/detector --data fabricsim:simple:target_test
  fabgen evaluate --checkpoint export/ --data data/aitex@defect --out eval/ --threshold 0.4

  fabgen evaluate --checkpoint export/ --data data/aitex@defect --good data/aitex@good \
      --val-fraction 0.3 --pixel-pitch-mm 0.1

--checkpoint: a detector training workdir or a `fabgen export` folder. --data: any reader spec
(`fabgen.data.readers.open_source`). Images larger than the detector's input are tiled; tiles of
consecutive images share batches. --good adds defect-free images (false alarms per defect-free
image; per metre of fabric with --pixel-pitch-mm). --val-fraction holds out that share of the
images to choose a score threshold per class, reported beside the fixed-threshold table.
Memory does not grow with the number of images; report.json / report.md are rewritten every
minute while it runs, and an unreadable record is skipped and listed in the report. Prints the
table and writes report.json, report.md, confusion_matrix.png and pr_curves.png to --out.
"""

from __future__ import annotations

import argparse
import os
import re
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--checkpoint", required=True, help="detector workdir or export folder")
  parser.add_argument("--data", required=True, help="labelled data source (reader spec/folder)")
  parser.add_argument("--out", default=None,
                      help="report folder (default: <checkpoint>/eval/<data>)")
  parser.add_argument("--threshold", type=float, default=None,
                      help="one score threshold for the table (default: the per-class thresholds "
                           "of `fabgen calibrate` if the checkpoint has them, else 0.5)")
  parser.add_argument("--fabric", type=int, default=None,
                      help="FabricSim sources: only records of this fabric id")
  parser.add_argument("--limit", type=int, default=None,
                      help="evaluate N images spread over each source (splits are class-ordered)")
  parser.add_argument("--overlap", type=int, default=None,
                      help="tile overlap for large images (default: 64, at most half a tile)")
  parser.add_argument("--batch-size", type=int, default=8)
  parser.add_argument("--good", action="append", default=[],
                      help="defect-free images to add (reader spec; repeatable)")
  parser.add_argument("--val-fraction", type=float, default=0.0,
                      help="share of the images that choose per-class thresholds (e.g. 0.3)")
  parser.add_argument("--pixel-pitch-mm", type=float, default=None,
                      help="fabric length per image row (line-scan pitch): false alarms per metre")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def select_indices(source, fabric: int | None, limit: int | None) -> list[int]:
  """Indices of a source restricted to one FabricSim fabric and/or `limit` spread over it."""
  from fabgen.data.readers import spread_indices  # pylint: disable=g-import-not-at-top
  indices = list(range(len(source)))
  if fabric is not None:
    sim = getattr(source, "sim", None)
    if sim is None:
      raise ValueError(f"--fabric needs a FabricSim source; {source.name!r} is not one")
    specs = sim.record_specs(source.split)
    indices = [i for i in indices if int(specs[i, 0]) == fabric]
    if not indices:
      raise ValueError(f"{source.name!r} has no records of fabric {fabric}; its fabrics: "
                       f"{sorted(set(specs[:, 0].tolist()))}")
  return [indices[i] for i in spread_indices(len(indices), limit)] if limit else indices


def _print_skips(line: str) -> None:
  """The progress bar shows progress; only skipped records are printed (to stderr)."""
  if line.lstrip().startswith("skipped"):
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
  from fabgen.adapt import evaluation  # pylint: disable=g-import-not-at-top
  from fabgen.data.readers import open_source  # pylint: disable=g-import-not-at-top
  from fabgen.detector import infer  # pylint: disable=g-import-not-at-top
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  try:
    predict_fn, info = infer.load_predictor(args.checkpoint)
    by_label, how = thresholds_lib.resolve(args.threshold, info)
    source = open_source(args.data)
    indices = select_indices(source, args.fabric, args.limit)
    good = []
    for spec in args.good:
      src = open_source(spec)
      good.append((src, select_indices(src, args.fabric, args.limit)))
  except (OSError, ValueError) as e:
    print(f"fabgen evaluate: error: {e}", file=sys.stderr)
    return 2
  out = args.out or os.path.join(args.checkpoint, "eval", re.sub(r"[^\w.-]+", "_", args.data))
  n_good = sum(len(i) for _, i in good)
  overlap = args.overlap if args.overlap is not None else min(64, min(info["tile"]) // 2)
  print(f"evaluating {args.checkpoint} on {source.name} ({len(indices)} images"
        + (f" + {n_good} defect-free" if good else "")
        + f", tile {info['tile'][0]}x{info['tile'][1]})", flush=True)
  threshold = args.threshold if args.threshold is not None else thresholds_lib.DEFAULT
  if args.threshold is None and info.get("thresholds"):
    # Per-class thresholds: scores are remapped per class so that each threshold lands on 0.5
    # (monotone per class: AP, PR curves and mAP are unchanged), and the table is taken at 0.5.
    threshold, raw_fn = 0.5, predict_fn
    predict_fn = lambda images: _rescaled(raw_fn(images), by_label)  # noqa: E731
    how += " (table scores rescaled per class so each threshold is 0.5)"
  print(how, flush=True)
  try:
    ev, _ = evaluation.evaluate(
        predict_fn, source, threshold=threshold, tile=info["tile"], overlap=overlap,
        batch_size=args.batch_size, indices=indices, seg_class_ids=info["class_ids"],
        log=_print_skips,
        good_sources=good, val_fraction=args.val_fraction, pixel_pitch_mm=args.pixel_pitch_mm,
        progress=not args.no_progress, partial_dir=out, detector_class_ids=info["class_ids"])
  except ValueError as e:
    print(f"fabgen evaluate: error: {e}", file=sys.stderr)
    return 2
  evaluation.write_report(ev, out, title=f"{args.checkpoint} on {source.name}; {how}")
  with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
    print(f.read())
  print(f"wrote {out}/report.json, report.md, confusion_matrix.png, pr_curves.png")
  return 0


def _rescaled(out, by_label):
  """A batch prediction with scores remapped per class (`thresholds.rescale_scores`)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  out = {k: np.asarray(v) for k, v in out.items()}
  scores = thresholds_lib.rescale_scores(out["scores"], out["labels"], by_label)
  out["scores"] = scores.reshape(out["scores"].shape).astype(np.float32)
  return out
