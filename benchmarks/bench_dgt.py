"""Train-step throughput of DGT (G + DIS + DFC, with the look-ahead downstream losses), via the harness.

  python -m benchmarks.bench_dgt [--variant tiny|64|128] [--steps 5] [--mesh data=8]
      [--no-lookahead] [--json out/bench_dgt.json]

Goes through `benchmarks.harness.benchmark_task` (compile time, step time, images/s, XLA FLOPs,
MFU, memory per device) on the platform's mesh and shardings. The batch is synthetic (random
uint8 fabric and a dark rectangular defect, the same every step), so the figure is compute, not
input, and no FabricSim frames are rendered. `--no-lookahead` zeroes the three real-image
downstream weights (a5, a6, a8) to show what the differentiable look-ahead costs.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import harness
from configs import dgt as dgt_config
from fabgen.dgt.task import DGTTask
from fabgen.platform import config as config_lib

SMALL_ARGS = ["--variant", "tiny", "--steps", "3"]  # what benchmarks/run_all.py passes


def synthetic_pairs(b: int, s: int, num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Aligned (clean, image, mask, label): the image is the clean one with a dark window."""
  rng = np.random.default_rng(seed)
  clean = rng.integers(60, 200, (b, s, s, 3), dtype=np.uint8)
  mask = np.zeros((b, s, s), np.float32)
  mask[:, s // 4: 3 * s // 4, s // 3: 2 * s // 3] = 1
  image = np.where(mask[..., None] > 0, clean // 3, clean).astype(np.uint8)
  label = (np.arange(b) % num_classes).astype(np.int32)
  return {"clean": clean, "image": image, "mask": mask, "label": label, "class_id": label}


def bench(config, steps: int, json_path: str | None = None) -> dict:
  task = DGTTask(config)
  task.pairs = synthetic_pairs(config.batch_size, config.image_size, task.num_classes)
  batch = {k: v for k, v in task.pairs.items() if k != "class_id"}
  return harness.benchmark_task(config, steps=steps, batch=batch, task=task, json_path=json_path,
                                label=f"dgt:{config.image_size}px")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="64")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--mesh", default="", help="e.g. data=4,fsdp=2 (default: config's)")
  parser.add_argument("--no-lookahead", action="store_true",
                      help="zero loss.weights.seg_real_fore / seg_real_back / cls_real")
  parser.add_argument("--json", default=None)
  parser.add_argument("--precision", default="", choices=("", "float32", "bfloat16"),
                      help="precision.compute_dtype (default: the config's)")
  args = parser.parse_args(argv)
  config = dgt_config.get_config(args.variant)
  if args.precision:
    config.precision.compute_dtype = args.precision
  overrides = [f"mesh.{kv}" for kv in args.mesh.split(",") if kv]
  if args.no_lookahead:
    overrides += [f"loss.weights.{k}=0.0" for k in ("seg_real_fore", "seg_real_back", "cls_real")]
  config_lib.apply_overrides(config, overrides)
  config_lib.validate(config)
  result = bench(config, args.steps, args.json)
  return [result]


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
