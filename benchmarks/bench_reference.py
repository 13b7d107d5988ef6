"""Train-step throughput of the platform's reference task, through the shared harness.

  python -m benchmarks.bench_reference [--variant tiny|default|big] [--steps 10] \
      [--mesh data=8] [--json out/bench_reference.json]

Also the smallest example of how a model's bench file uses `benchmarks.harness.benchmark_task`.
"""

from __future__ import annotations

import argparse

from benchmarks import harness
from configs import reference
from fabgen.platform import config as config_lib

SMALL_ARGS = ["--variant", "tiny", "--steps", "5"]  # what benchmarks/run_all.py passes


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="default")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--mesh", default="", help="e.g. data=4,fsdp=2 (default: config's)")
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)
  config = reference.get_config(args.variant)
  if args.mesh:
    config_lib.apply_overrides(config, [f"mesh.{kv}" for kv in args.mesh.split(",")])
  return harness.benchmark_task(config, steps=args.steps, json_path=args.json,
                                label=f"reference:{args.variant}")


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
