"""Train-step throughput of the stage-2 fusion GAN and the single-stage inpainter, via the harness.

  python -m benchmarks.bench_stage2 [--variant tiny|64|128] [--steps 5] [--mesh data=8]
      [--objective rpgan] [--json out/bench_stage2.json]

Both tasks go through `benchmarks.harness.benchmark_task` (compile time, step time, images/s,
XLA FLOPs, MFU against the measured CPU peak or the vendor peak, memory per device) on the
platform's mesh and shardings. The batch is synthetic (random uint8 crops, a centred window), the
same every step, so the figure is compute, not input; no data source is read (the inpainter's
mask bank, filled only by `warm_start`, is not part of the step).
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import harness
from configs import fusion as fusion_config
from configs import inpainter as inpainter_config
from fabgen.platform import config as config_lib
from fabgen.stage2.inpainter_task import InpainterTask
from fabgen.stage2.fusion_task import FusionTask

SMALL_ARGS = ["--variant", "tiny", "--steps", "3"]  # what benchmarks/run_all.py passes


def synthetic_batch(task_name: str, b: int, s: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A global batch of the task's input shapes: random crops, a centred rectangular window."""
  rng = np.random.default_rng(seed)
  img = lambda: rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8)  # noqa: E731
  window = np.zeros((b, s, s), np.float32)
  window[:, s // 4: 3 * s // 4, s // 3: 2 * s // 3] = 1
  classes = (np.arange(b) % 2 + 1).astype(np.int32)
  if task_name == "fusion":
    return {"x": img(), "y": img(), "window": window, "class_id": classes}
  return {"y": img(), "mask": window, "class_id": classes}


def bench(config, steps: int, json_path: str | None = None) -> dict:
  """One task's harness figures for `config` on all devices."""
  batch = synthetic_batch(config.task, config.batch_size, config.image_size)
  if config.task == "fusion":
    task = FusionTask(config)
  else:
    task = InpainterTask(config)
  return harness.benchmark_task(config, steps=steps, batch=batch, task=task,
                                json_path=json_path, label=f"{config.task}:{config.image_size}px")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="64")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--mesh", default="", help="e.g. data=4,fsdp=2 (default: config's)")
  parser.add_argument("--objective", default="", help="override both tasks' loss.objective")
  parser.add_argument("--json", default=None, help="prefix; writes <prefix>_<task>.json")
  parser.add_argument("--precision", default="", choices=("", "float32", "bfloat16"),
                      help="precision.compute_dtype (default: the config's)")
  args = parser.parse_args(argv)
  results = []
  for module in (fusion_config, inpainter_config):
    config = module.get_config(args.variant)
    overrides = [f"mesh.{kv}" for kv in args.mesh.split(",") if kv]
    if args.objective:
      overrides.append(f"loss.objective={args.objective}")
    if args.precision:
      overrides.append(f"precision.compute_dtype={args.precision}")
    config_lib.apply_overrides(config, overrides)
    config_lib.validate(config)
    path = f"{args.json}_{config.task}.json" if args.json else None
    results.append(bench(config, args.steps, path))
  harness.print_table(results)
  return results


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
