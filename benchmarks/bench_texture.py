"""Train-step throughput of the texture network (`configs/texture.py`), through the harness.

  python -m benchmarks.bench_texture [--variant tiny|default] [--steps 10] [--json out.json]

A synthetic batch of the config's crop size (the step's cost does not depend on the pixels), so
the figure is compute, not FabricSim rendering.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import harness
from configs import texture

SMALL_ARGS = ["--variant", "tiny", "--steps", "5"]  # what benchmarks/run_all.py passes


def synthetic_batch(config) -> dict:
  rng = np.random.default_rng(0)
  b, p = config.batch_size, config.data.patch_size
  return {"image": rng.integers(0, 256, (b, p, p, 3), dtype=np.uint8),
          "label": rng.integers(0, config.data.num_fabrics, (b,)).astype(np.int32)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="default")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--json", default=None)
  parser.add_argument("--precision", default="", choices=("", "float32", "bfloat16"),
                      help="precision.compute_dtype (default: the config's)")
  args = parser.parse_args(argv)
  config = texture.get_config(args.variant)
  if args.precision:
    config.precision.compute_dtype = args.precision
  return harness.benchmark_task(config, steps=args.steps, json_path=args.json,
                                batch=synthetic_batch(config), label=f"texture:{args.variant}")


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
