"""Export a trained detector for the line: jax.export, TF SavedModel or ONNX, parity-checked.

  fabgen export --checkpoint runs/detector --out export/
  fabgen export --checkpoint runs/detector --out export_tf/ --format savedmodel
  fabgen export --checkpoint runs/detector --out export_onnx/ --format onnx --batch 4
  fabgen export --checkpoint runs/detector --out export/ --platforms cpu,cuda --batch 8

jax: detector.jaxexport (StableHLO with the weights embedded; symbolic batch unless --batch).
savedmodel: saved_model/ through jax2tf (tensorflow-cpu of the default install; fixed batch,
default 8). onnx: detector.onnx through jax2onnx, run by onnxruntime (`pip install
'fabgen[export]'`; fixed batch, default 8). Each export is loaded back with its own runtime and
compared with the training code on a few images before detector.json is written (tolerances in
`fabgen.detector.export.TOLERANCES`); detector.json carries the class names, input size, tiling
settings and the per-class thresholds of <checkpoint>/thresholds.json (`fabgen calibrate`).
`fabgen detect`, `evaluate` and `inspect-roll` accept the folder as --checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--checkpoint", required=True, help="detector training workdir")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--format", default="jax", choices=("jax", "savedmodel", "onnx"),
                      help="artifact format (default: jax)")
  parser.add_argument("--height", type=int, default=None, help="input height (default: training)")
  parser.add_argument("--width", type=int, default=None, help="input width (default: training)")
  parser.add_argument("--batch", type=int, default=None,
                      help="fixed batch size (jax default: symbolic; savedmodel/onnx default: 8)")
  parser.add_argument("--platforms", default=None,
                      help="comma-separated lowering platforms, e.g. cpu,cuda (default: current)")
  parser.add_argument("--threshold", type=float, default=None,
                      help="one threshold for every class in the metadata (default: the "
                           "checkpoint's thresholds.json, if any)")


def run(args: argparse.Namespace) -> int:
  from fabgen.detector import export  # pylint: disable=g-import-not-at-top
  from fabgen.detector import export_savedmodel  # pylint: disable=g-import-not-at-top
  for name, v in (("--height", args.height), ("--width", args.width)):
    if v is not None and (v <= 0 or v % 32):
      print(f"fabgen export: error: {name} {v} must be a positive multiple of 32",
            file=sys.stderr)
      return 2
  if args.batch is not None and args.batch <= 0:
    print(f"fabgen export: error: --batch {args.batch} must be positive", file=sys.stderr)
    return 2
  if os.path.abspath(args.out) == os.path.abspath(args.checkpoint):
    print("fabgen export: error: --out must not be the checkpoint folder", file=sys.stderr)
    return 2
  platforms = args.platforms.split(",") if args.platforms else None
  thresholds = None
  if args.threshold is not None:
    if not 0.0 <= args.threshold <= 1.0:
      print(f"fabgen export: error: --threshold {args.threshold} is not in [0, 1]",
            file=sys.stderr)
      return 2
    from fabgen.data import classes as classes_lib  # pylint: disable=g-import-not-at-top
    thresholds = {n: args.threshold for n in classes_lib.CLASSES}
  try:
    path = export.export_detector(args.checkpoint, args.out, args.height, args.width,
                                  args.batch, platforms, fmt=args.format, thresholds=thresholds)
  except (OSError, ValueError) as e:  # ParityError and ConversionError are ValueErrors
    kind = ("parity" if isinstance(e, export.ParityError) else
            "conversion" if isinstance(e, export_savedmodel.ConversionError) else "")
    print(f"fabgen export: {kind + ' ' if kind else ''}error: {e}", file=sys.stderr)
    return 2
  with open(os.path.join(args.out, export.META), encoding="utf-8") as f:
    meta = json.load(f)
  size = sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(path) for n in ns) \
      if os.path.isdir(path) else os.path.getsize(path)
  parity = {k: v for k, v in meta["parity"].items() if k.endswith("diff") or k == "labels_disagree"}
  print(f"wrote {path} ({size / 1e6:.1f} MB, {args.format}) and "
        f"{os.path.join(args.out, export.META)}; parity on {meta['parity']['images']} images: "
        + ", ".join(f"{k} {v:.2g}" for k, v in parity.items()))
  return 0
