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

_OVERRIDE = "--config."


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """(other args, ["a.b=value", ...]) from argv holding `--config.a.b=v` / `--config.a.b v`."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(_OVERRIDE):
      key = arg[len(_OVERRIDE):]
      if "=" in key:
        overrides.append(key)
      else:
        if i + 1 >= len(argv):
          raise SystemExit(f"fabgen train: {arg} needs a value")
        overrides.append(f"{key}={argv[i + 1]}")
        i += 1
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", required=True,
                      help="config file and variant, e.g. configs/reference.py:tiny")
  parser.add_argument("--workdir", required=True, help="checkpoints, TensorBoard, metrics.jsonl")
  parser.add_argument("--log-level", default="INFO")
  # `fabgen` parses with parse_args, which rejects unknown options; the --config.a.b overrides
  # are open-ended, so this parser peels them off first and keeps them in args.overrides.
  plain_parse = parser.parse_args

  def parse_args(args=None, namespace=None):
    rest, overrides = split_overrides(list(sys.argv[2:] if args is None else args))
    ns = plain_parse(rest, namespace)
    ns.overrides = overrides
    return ns

  parser.parse_args = parse_args


def run(args: argparse.Namespace) -> int:
  logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                      format="%(asctime)s %(levelname)s %(message)s")
  from fabgen.platform import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize()
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import faults  # pylint: disable=g-import-not-at-top
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  # After the imports (TensorFlow resets absl's level): absl INFO is mostly orbax's per-save
  # chatter; keep clu's progress notes (steps/s, % done, ETA), which non-TTY logs need.
  absl_logger = logging.getLogger("absl")
  absl_logger.setLevel(logging.INFO)
  absl_logger.addFilter(lambda r: r.levelno >= logging.WARNING or "/clu/" in r.pathname)
  logging.getLogger("jax").setLevel(logging.WARNING)
  try:
    config = config_lib.get(args.config, getattr(args, "overrides", []))
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
