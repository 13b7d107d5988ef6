"""The adaptation protocol for one target fabric: before/after per-class F-measure per method.

  fabgen adapt --config configs/adapt.py --workdir runs/adapt_simple
  fabgen adapt --config configs/adapt.py:complex --workdir runs/adapt_complex \
      --config.target_fabric=43 --config.methods='("cutpaste","multistage")'

Resumable: rerun the same command and finished stages are skipped. Writes table.md, table.json,
samples.png and one folder per stage (detector_source/, stage1/, fusion/, inpainter/, synth_<m>/,
finetune_<m>/, eval_source/, eval_<m>/) under --workdir.
"""

from __future__ import annotations

import argparse
import sys
import time


TAKES_CONFIG_OVERRIDES = True  # `--config.a.b=v` reach run() as args.overrides


def add_arguments(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
  parser.add_argument("--config", required=default_config is None, default=default_config,
                      help="adapt config file and variant, e.g. configs/adapt.py:complex")
  parser.add_argument("--workdir", required=True, help="where every stage writes")


def prepare_process(config, workdir: str) -> None:
  """Logging and the persistent compilation cache, once per process running protocols."""
  import logging  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
  from fabgen.platform import metrics  # pylint: disable=g-import-not-at-top
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  # Progress inside a training stage: a tqdm bar on a terminal, clu's notes (steps/s, ETA) in logs.
  metrics.quiet_logs(scalars=False)
  if config.get("compilation_cache", False):
    # Every stage compiles in this process; the fine-tunes of different methods (and all the
    # evaluations) compile the same programs, and a resumed run recompiles everything: a
    # persistent cache under the workdir turns those into cache hits.
    trainer.use_compilation_cache(os.path.abspath(os.path.join(workdir, "jax_cache")))


def progress_log():
  """A `log(line)` that prints each line with the seconds since this call."""
  t0 = time.time()
  return lambda line: print(f"[{time.time() - t0:6.0f}s] {line}", flush=True)


def load_protocol_config(args: argparse.Namespace, command: str):
  """The protocol config of `--config` plus overrides, validated; None (printed why) if bad."""
  from fabgen.adapt import protocol  # pylint: disable=g-import-not-at-top
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.load_config(args.config)
    config_lib.apply_overrides(config, args.overrides)
    protocol.validate(config)
  except (config_lib.ConfigError, ValueError) as e:
    print(f"fabgen {command}: {e}", file=sys.stderr)
    return None
  return config


def run_config(args: argparse.Namespace, command: str) -> int:
  """Loads the config (+ overrides) and runs the protocol with the platform backend."""
  from fabgen.adapt import protocol, real_target  # pylint: disable=g-import-not-at-top
  log = progress_log()
  config = load_protocol_config(args, command)
  if config is None:
    return 2
  try:  # a real target (config.target.good) or a FabricSim one
    backend = real_target.make_backend(config, log)
  except ValueError as e:
    print(f"fabgen {command}: {e}", file=sys.stderr)
    return 2
  prepare_process(config, args.workdir)
  result = protocol.run_protocol(config, args.workdir, backend, log)
  log(f"wrote {args.workdir}/table.md, table.json and {', '.join(result['pictures']) or 'no'} "
      f"pictures; this run took {result['wall_s']:.0f}s")
  return 0


def run(args: argparse.Namespace) -> int:
  return run_config(args, "adapt")
