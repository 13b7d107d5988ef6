"""Runs every `benchmarks/bench_*.py` with small settings, one after the other.

  python -m benchmarks.run_all [--only reference,stage2] [--full]

Each bench module's `main()` runs with `sys.argv` set to its `SMALL_ARGS` list (if it has one;
otherwise its defaults, which are small by convention); `--full` uses the defaults for all. A
failing benchmark is reported and the others still run; the exit status says whether all passed.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import os
import sys
import time
import traceback


def discover() -> list[str]:
  here = os.path.dirname(os.path.abspath(__file__))
  return sorted(os.path.basename(p)[len("bench_"):-3]
                for p in glob.glob(os.path.join(here, "bench_*.py")))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default="", help="comma-separated names (bench_<name>.py)")
  parser.add_argument("--full", action="store_true", help="each benchmark's default settings")
  args = parser.parse_args(argv)
  names = discover()
  if args.only:
    wanted = args.only.split(",")
    unknown = sorted(set(wanted) - set(names))
    if unknown:
      raise SystemExit(f"run_all: no benchmarks/bench_{unknown[0]}.py; known: {names}")
    names = [n for n in names if n in wanted]
  failures = []
  saved_argv = sys.argv
  for name in names:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    small = [] if args.full else list(getattr(module, "SMALL_ARGS", []))
    print(f"\n=== bench_{name} {' '.join(small)}", flush=True)
    start = time.perf_counter()
    sys.argv = [f"bench_{name}"] + small
    try:
      module.main()
    except Exception:  # pylint: disable=broad-except
      traceback.print_exc()
      failures.append(name)
    finally:
      sys.argv = saved_argv
    print(f"=== bench_{name}: {time.perf_counter() - start:.1f}s", flush=True)
  if failures:
    print(f"\nfailed: {', '.join(failures)}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  sys.exit(main())
