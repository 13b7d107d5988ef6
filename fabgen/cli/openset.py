"""Open-set defect recognition: known classes train DGT + DIS + DFC, held-out classes test it.

  fabgen openset --config configs/openset.py:tiny --workdir /tmp/openset
  fabgen openset --config configs/openset.py --workdir runs/openset --config.eval.num_records=600

Prints one row per known/unknown split (closed-set accuracy, unknown-class AUROC and open-set
macro-F1 for the DFC OpenMax classifier and for the softmax-threshold baseline, DIS pixel F1 and
AUROC) and writes table.md and openset.json to the workdir. A rerun resumes finished splits.
"""

from __future__ import annotations

import argparse
import sys

TAKES_CONFIG_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", default="configs/openset.py", help="config file and variant")
  parser.add_argument("--workdir", default="openset_out", help="where splits and the table go")


def run(args: argparse.Namespace) -> int:
  from fabgen.openset import protocol  # pylint: disable=g-import-not-at-top
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.load_config(args.config)  # a protocol config: no platform fields
    config_lib.apply_overrides(config, args.overrides)
    protocol.validate(config)
  except (config_lib.ConfigError, ValueError) as e:
    print(f"fabgen openset: {e}", file=sys.stderr)
    return 2
  out = protocol.run_openset(config, args.workdir, log=lambda line: print(line, flush=True))
  print(out["table"])
  return 0
