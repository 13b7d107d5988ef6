"""Train any model from a config file; resumes from the workdir's newest checkpoint.

  fabgen train --config configs/reference.py:tiny --workdir /tmp/ref
  fabgen train --config configs/fusion.py:64 --workdir runs/f64 --config.batch_size=64 \
      --config.mesh.fsdp=2

`--config.a.b=value` (or `--config.a.b value`) overrides a field; it must exist and the value
must parse as its type. SIGTERM/SIGINT write a checkpoint and exit 0; rerunning resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

TAKES_CONFIG_OVERRIDES = True  # `--config.a.b=v` reach run() as args.overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", required=True,
                      help="config file and variant, e.g. configs/reference.py:tiny")
  parser.add_argument("--workdir", required=True, help="checkpoints, TensorBoard, metrics.jsonl")
  parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
  logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                      format="%(asctime)s %(levelname)s %(message)s")
  from fabgen.platform import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize()
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import faults  # pylint: disable=g-import-not-at-top
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  from fabgen.platform import metrics  # pylint: disable=g-import-not-at-top
  metrics.quiet_logs(scalars=True)
  try:
    config = config_lib.get(args.config, args.overrides)
  except config_lib.ConfigError as e:
    print(f"fabgen train: {e}", file=sys.stderr)
    return 2
  try:
    result = trainer.train(config, args.workdir)
  except faults.NonFiniteError as e:
    print(f"fabgen train: {e}", file=sys.stderr)
    return 3
  print(json.dumps(result, sort_keys=True))
  return 0
