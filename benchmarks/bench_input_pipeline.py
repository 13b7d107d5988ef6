"""Input-pipeline throughput: samples/s through grain from disk (PNG+COCO) and from FabricSim.

  python -m benchmarks.bench_input_pipeline [--preset tiny] [--num 64] [--batch 16] [--steps 8]
      [--threads 0] [--crop 64]

1. Writes `--num` FabricSim records as a sample set (PNG + instance masks + COCO) in a temp dir,
   then times batches read back through `fabgen.data.pipeline` (decode + random crop + stack).
2. Times batches of the FabricSim source itself (jit(vmap) render, shuffled indices).
The first batch of each (compile, cache warm-up) is excluded; prints one line per path.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax


def _time_batches(it, steps: int, batch: int) -> float:
  next(it)  # warm-up: compile / first decode
  start = time.perf_counter()
  for _ in range(steps):
    b = next(it)
  jax.block_until_ready(b)
  return steps * batch / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="tiny")
  parser.add_argument("--num", type=int, default=24, help="records written (tiny has 24)")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--threads", type=int, default=0, help="grain read threads")
  parser.add_argument("--crop", type=int, default=64)
  args = parser.parse_args()
  from fabgen.cli import data as data_cli  # pylint: disable=g-import-not-at-top
  from fabgen.data import pipeline  # pylint: disable=g-import-not-at-top
  from fabgen.data.readers import open_source  # pylint: disable=g-import-not-at-top

  print(f"devices: {jax.devices()[0].platform} x{jax.device_count()}, cpu cores: "
        f"{os.cpu_count()}, preset {args.preset}, batch {args.batch}, threads {args.threads}")
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    data_cli.synth(args.preset, "train", args.num, tmp, batch_size=args.batch, log=None)
    print(f"write sample set: {args.num / (time.perf_counter() - start):.1f} samples/s "
          f"(render + PNG + COCO, incl. compile)")
    disk = open_source(tmp)
    ds = pipeline.make_dataset(disk, args.batch, seed=0, process_index=0, process_count=1,
                               transform=pipeline.make_transform("crop", (args.crop, args.crop)))
    rate = _time_batches(pipeline.make_iterator(ds, num_threads=args.threads), args.steps,
                         args.batch)
    print(f"disk (PNG + COCO -> crop {args.crop} -> batch): {rate:.1f} samples/s")
  sim = open_source(f"fabricsim:{args.preset}:train")
  ds = pipeline.make_dataset(sim, args.batch, seed=0, process_index=0, process_count=1)
  rate = _time_batches(pipeline.make_iterator(ds, num_threads=args.threads), args.steps,
                       args.batch)
  print(f"fabricsim (render_batch, shuffled): {rate:.1f} samples/s")


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
