"""The adaptation protocol over several target fabrics and seeds, aggregated with 95 % CIs.

  fabgen adapt-aggregate --config configs/adapt.py:medium --workdir runs/agg \
      --fabrics 40,41,42 --seeds 0,1
  fabgen adapt-aggregate --config configs/adapt.py:demo --workdir runs/agg_demo --fabrics 40,41 \
      --seeds 0 --config.methods='("cutpaste",)'
  fabgen adapt-aggregate --config configs/adapt.py:medium --workdir runs/agg --aggregate-only
  fabgen adapt-aggregate --config configs/adapt.py:medium --workdir runs/abl_donors \
      --reuse runs/agg --config.methods='("multistage",)' --config.fusion_donors=real

One protocol run per (fabric, seed) in <workdir>/fabric<F>_seed<S>/ (resumable; finished units
are skipped; units of one seed share their target-independent stages), then aggregate.md /
aggregate.json: per method, mean F per class and overall with a 95 % Student-t interval over the
units, and the paired difference of each method against the control (fabgen/adapt/aggregate.py).
"""

from __future__ import annotations

import argparse
import os
import sys

TAKES_CONFIG_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", required=True, help="adapt config, e.g. configs/adapt.py:medium")
  parser.add_argument("--workdir", required=True, help="one subfolder per (fabric, seed)")
  parser.add_argument("--fabrics", default="40,41,42", help="held-out target fabric ids")
  parser.add_argument("--seeds", default="0,1", help="seeds (data, models, synthesis)")
  parser.add_argument("--aggregate-only", action="store_true",
                      help="aggregate the finished units without running anything")
  parser.add_argument("--reuse", default="",
                      help="an ablation's baseline aggregate workdir: its finished stages are "
                           "linked in and only those the config changes run again; the table "
                           "then gives each row's paired difference against the baseline")


def run(args: argparse.Namespace) -> int:
  # pylint: disable=g-import-not-at-top
  from fabgen.adapt import multi_run, platform_backend, protocol
  from fabgen.cli import adapt as adapt_cli  # pylint: disable=g-import-not-at-top
  log = adapt_cli.progress_log()
  config = adapt_cli.load_protocol_config(args, "adapt-aggregate")
  if config is None:
    return 2
  try:
    fabrics = multi_run.parse_ints(args.fabrics, "fabrics")
    seeds = multi_run.parse_ints(args.seeds, "seeds")
  except ValueError as e:
    print(f"fabgen adapt-aggregate: {e}", file=sys.stderr)
    return 2
  os.makedirs(args.workdir, exist_ok=True)
  units = [os.path.join(args.workdir, multi_run.unit_name(f, s)) for s in seeds for f in fabrics]
  if not args.aggregate_only:
    adapt_cli.prepare_process(config, args.workdir)

    def run_one(cfg, unit_dir):
      protocol.run_protocol(cfg, unit_dir, platform_backend.PlatformBackend(cfg, log), log)

    units = multi_run.run_units(config, args.workdir, fabrics, seeds, run_one, log,
                                reuse=args.reuse or None)
  try:
    out = multi_run.write_aggregate(
        args.workdir, units, f"Adaptation aggregate: {args.config}, fabrics {args.fabrics}, "
        f"seeds {args.seeds}", compare_to=args.reuse or None)
  except ValueError as e:  # no finished unit, or units that cannot be paired
    print(f"fabgen adapt-aggregate: {args.workdir}: {e}", file=sys.stderr)
    return 2
  print(out["markdown"], flush=True)
  log(f"wrote {args.workdir}/aggregate.md and aggregate.json; "
      f"{multi_run.describe(out['aggregate'])}")
  return 0
