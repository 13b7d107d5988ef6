"""Serialize a trained detector with `jax.export`: inference without the training code.

  fabgen export --checkpoint runs/detector --out export/
  fabgen export --checkpoint runs/detector --out export/ --platforms cpu,cuda --batch 8

The folder holds detector.jaxexport (StableHLO with the weights embedded) and detector.json;
`fabgen.detector.export.load(folder)` (jax + numpy only) returns a callable, and
`fabgen detect` / `fabgen evaluate` accept the folder as --checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--checkpoint", required=True, help="detector training workdir")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--height", type=int, default=None, help="input height (default: training)")
  parser.add_argument("--width", type=int, default=None, help="input width (default: training)")
  parser.add_argument("--batch", type=int, default=None,
                      help="fixed batch size (default: symbolic, any batch)")
  parser.add_argument("--platforms", default=None,
                      help="comma-separated lowering platforms, e.g. cpu,cuda (default: current)")


def run(args: argparse.Namespace) -> int:
  from fabgen.detector import export  # pylint: disable=g-import-not-at-top
  for name, v in (("--height", args.height), ("--width", args.width)):
    if v is not None and (v <= 0 or v % 32):
      print(f"fabgen export: error: {name} {v} must be a positive multiple of 32",
            file=sys.stderr)
      return 2
  platforms = args.platforms.split(",") if args.platforms else None
  try:
    path = export.export_detector(args.checkpoint, args.out, args.height, args.width,
                                  args.batch, platforms)
  except (OSError, ValueError) as e:
    print(f"fabgen export: error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB) and "
        f"{os.path.join(args.out, export.META)}")
  return 0
