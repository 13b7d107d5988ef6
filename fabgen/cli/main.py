"""`fabgen <command> ...`: dispatches to one module per sub-command.

Each sub-command module defines `add_arguments(parser)` and `run(args) -> int`; one that sets
`TAKES_CONFIG_OVERRIDES` gets `--config.a.b=v` overrides as `args.overrides`. Modules are
imported only when their command runs, so `fabgen --help` is instant and a broken optional
dependency of one command does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fabgen.cli import overrides as overrides_lib
from fabgen.platform import cpu_runtime

COMMANDS = {
    "data": ("fabgen.cli.data", "synthesize FabricSim sets and inspect data sets on disk"),
    "train": ("fabgen.cli.train", "train any model from a config file"),
    "synthesize": ("fabgen.cli.synthesize", "write a labelled synthetic defect set for a fabric"),
    "detect": ("fabgen.cli.detect", "run a trained detector on images"),
    "evaluate": ("fabgen.cli.evaluate", "per-class F-measure and mAP of a detector on a data set"),
    "export": ("fabgen.cli.export", "export the detector (jax, TF SavedModel, ONNX) with parity"),
    "calibrate": ("fabgen.cli.calibrate", "per-class thresholds from good images to an alarm budget"),
    "inspect-roll": ("fabgen.cli.inspect_roll", "a roll's strips as one web: defect map, list, grade"),
    "adapt": ("fabgen.cli.adapt", "the adaptation protocol for one target fabric"),
    "adapt-aggregate": ("fabgen.cli.adapt_aggregate",
                        "the protocol over several target fabrics and seeds, with 95%% CIs"),
    "demo": ("fabgen.cli.demo", "the whole pipeline on FabricSim, on a CPU, in minutes"),
    "compile": ("fabgen.cli.compile", "ahead-of-time compile a train step for a target mesh"),
    "openset": ("fabgen.cli.openset", "open-set defect recognition protocol (DGT, DIS, DFC)"),
}


def main(argv: list[str] | None = None) -> int:
  if argv is None and sys.argv[1:2] not in (["compile"], ["demo"]):
    # The real entry point, not a call from Python: the CPU process settings. Not for `compile`
    # (no step; the single malloc arena slows XLA's compiler: 21-28 s against 20-21 s) nor `demo`
    # (tiny models, compile-bound: 12 min 02 s, 1053 CPU-s, 7.0 GB under the settings against
    # 11 min 22 s, 797 CPU-s, 4.9 GB without).
    cpu_runtime.start()
  argv = sys.argv[1:] if argv is None else argv
  parser = argparse.ArgumentParser(prog="fabgen", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  for name, (_, help_text) in COMMANDS.items():
    sub.add_parser(name, help=help_text, add_help=False)
  if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
    parser.print_help()
    return 0 if not argv or argv[0] in ("-h", "--help") else 2
  module = importlib.import_module(COMMANDS[argv[0]][0])
  cmd_parser = argparse.ArgumentParser(prog=f"fabgen {argv[0]}", description=module.__doc__)
  module.add_arguments(cmd_parser)
  rest, overrides = overrides_lib.split_overrides(argv[1:])
  if overrides and not getattr(module, "TAKES_CONFIG_OVERRIDES", False):
    cmd_parser.error(f"takes no --config.* overrides (got --config.{overrides[0]})")
  args = cmd_parser.parse_args(rest)
  args.overrides = overrides
  return int(module.run(args) or 0)


if __name__ == "__main__":
  sys.exit(main())
