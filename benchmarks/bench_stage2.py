"""Train-step throughput of the stage-2 fusion GAN and the single-stage inpainter.

  python -m benchmarks.bench_stage2 [--variant tiny|64|128] [--steps 5]

Times the jitted train step (after one compile step) on random uint8 batches of the config's
shape, so it measures compute, not input. Reports images per second per task.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from configs import fusion as fusion_config
from configs import r3gan_inpaint as r3gan_config
from fabgen.stage2.single_stage_task import SingleStageTask
from fabgen.stage2.task import FusionTask


def _batch(task_name, b, s, rng):
  img = lambda: rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8)  # noqa: E731
  mask = np.zeros((b, s, s), np.float32)
  mask[:, s // 4: 3 * s // 4, s // 3: 2 * s // 3] = 1
  if task_name == "fusion":
    return {"x": img(), "y": img(), "window": mask, "class_id": np.ones(b, np.int32)}
  return {"y": img(), "mask": mask, "class_id": np.ones(b, np.int32)}


def bench(name, task, steps):
  c = task.config
  rng = np.random.default_rng(0)
  if name == "r3gan_inpaint":
    task.crops = (np.zeros((2, c.image_size, c.image_size, 3), np.uint8),
                  np.ones((2, c.image_size, c.image_size), np.float32), np.ones(2, np.int32))
  state = task.init_state(jax.random.key(0))
  step = jax.jit(task.train_step, donate_argnums=0)
  batch = _batch(name, c.batch_size, c.image_size, rng)
  state, m = step(state, batch, jax.random.key(0))
  jax.block_until_ready(m)
  start = time.perf_counter()
  for i in range(steps):
    state, m = step(state, batch, jax.random.key(i))
  jax.block_until_ready(m)
  dt = (time.perf_counter() - start) / steps
  print(f"{name:<15} {c.image_size:>4}px batch {c.batch_size:>3}: {dt * 1e3:8.1f} ms/step "
        f"{c.batch_size / dt:8.1f} img/s ({c.loss.objective})")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="tiny")
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}")
  bench("fusion", FusionTask(fusion_config.get_config(args.variant)), args.steps)
  bench("r3gan_inpaint", SingleStageTask(r3gan_config.get_config(args.variant)), args.steps)


if __name__ == "__main__":
  main()
