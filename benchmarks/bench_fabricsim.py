"""FabricSim throughput: images per second (with masks and boxes) per CPU core, after warm-up.

  taskset -c 0 python -m benchmarks.bench_fabricsim [--preset simple] [--batch 64] [--batches 3]

Pin to one core with `taskset -c 0` for the per-core figure (XLA's Eigen thread pool is also
turned off via XLA_FLAGS, set before jax is imported). On a shared machine wall time understates the
rate, so the CPU time the process received is reported too (images per CPU-second = images per
second of one dedicated core). Compilation time is
measured and reported separately from the steady-state rate. Prints one JSON line and a
one-line table.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fabgen.data.fabricsim import FabricSim  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="simple")
  parser.add_argument("--split", default="train")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--batches", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  sim = FabricSim(args.preset, args.seed)
  specs = sim.record_specs(args.split, 0, args.batch * (args.batches + 1))

  def run(k):
    rows = specs[k * args.batch:(k + 1) * args.batch]
    return jax.block_until_ready(sim.render_batch(rows[:, 0], rows[:, 1], rows[:, 2]))

  t0 = time.perf_counter()
  run(0)  # compile + first batch
  compile_s = time.perf_counter() - t0
  t0, c0 = time.perf_counter(), time.process_time()
  for k in range(1, args.batches + 1):
    out = run(k)
  elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
  n = args.batch * args.batches
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  result = {
      "bench": "fabricsim", "preset": args.preset, "image_size": sim.preset.image_size,
      "batch": args.batch, "images": n, "seconds": round(elapsed, 3),
      "images_per_s": round(n / elapsed, 1), "cores": cores,
      "images_per_s_per_core": round(n / elapsed / cores, 1),
      # CPU seconds actually received: the honest per-core rate on a shared, loaded machine.
      "cpu_seconds": round(cpu, 3), "images_per_cpu_s": round(n / cpu, 1),
      "compile_plus_first_batch_s": round(compile_s, 2),
      "defect_pixel_fraction": round(float(np.mean(np.asarray(out["instance_mask"]) > 0)), 4),
      "backend": jax.default_backend(),
  }
  print(json.dumps(result))
  print(f"| fabricsim {args.preset} {sim.preset.image_size}px | batch {args.batch} | "
        f"{result['images_per_s']} img/s on {cores} core(s) | "
        f"{result['images_per_s_per_core']} img/s/core | {result['images_per_cpu_s']} img/cpu-s | compile {result['compile_plus_first_batch_s']} s |")
  return 0


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  raise SystemExit(main())
