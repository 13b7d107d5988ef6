"""Latent inpainting diffusion: train-step images/s + MFU (pre-training or DefectFill LoRA step)
and inpainting sampling images/s (DDIM + guidance), through the shared harness.

  python -m benchmarks.bench_diffusion --variant tiny [--task diffusion|defectfill] [--steps 5]
  XLA_FLAGS=--xla_force_host_platform_device_count=16 python -m benchmarks.bench_diffusion \
      --variant sd2 --compile-only --mesh data=4,fsdp=4 --batch 16   # SD-2 memory per device
  python -m benchmarks.bench_diffusion --variant sd2 --task defectfill --batch 4 \
      --sample-steps 50 --json out/bench_diffusion_sd2.json     # on an accelerator

The batch is synthetic (random crops with square masks): the figure is compute, not input.
Weights are random (init_state): throughput does not depend on them.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from fabgen.diffusion import sampling
from fabgen.platform import config as config_lib

SMALL_ARGS = ["--variant", "tiny", "--steps", "3", "--sample-steps", "10"]


def synthetic_batch(batch: int, size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  masks = np.zeros((batch, size, size), np.float32)
  masks[:, size // 4: size // 2, size // 3: size // 2] = 1.0
  return {"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8), "mask": masks,
          "class_id": np.full((batch,), 2, np.int32)}


def bench_sampling(task, state, batch, steps: int, guidance: float = 7.5, repeats: int = 2):
  """Images/s of `steps`-step DDIM inpainting (CFG: two U-Net passes per step)."""
  if "train" in state:
    model, params, v_star = task.inference_params(state)
    cond = jnp.asarray(task.obj_ids)
    uncond = jnp.asarray(task.uncond_ids)
  else:
    model, params, v_star = task.model, state["params"], None
    cond, uncond = jnp.asarray(task.prompt_ids[2]), jnp.asarray(task.prompt_ids[-1])
  images = jnp.asarray(batch["image"], jnp.float32) / 127.5 - 1.0
  masks = jnp.asarray(batch["mask"])
  fn = jax.jit(lambda p, k: sampling.inpaint(model, p, v_star, images, masks, cond[None],
                                             uncond[None], k, steps, guidance))
  t = time.perf_counter()
  jax.block_until_ready(fn(params, jax.random.key(0)))
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  for i in range(repeats):
    jax.block_until_ready(fn(params, jax.random.key(i + 1)))
  per_call = (time.perf_counter() - t) / repeats
  return {"sample_steps": steps, "sample_compile_s": compile_s,
          "sample_images_per_s": images.shape[0] / per_call}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="tiny")
  parser.add_argument("--task", default="diffusion", choices=("diffusion", "defectfill"))
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--batch", type=int, default=0)
  parser.add_argument("--sample-steps", type=int, default=50, help="0 = no sampling benchmark")
  parser.add_argument("--mesh", default="")
  parser.add_argument("--remat", action="store_true")
  parser.add_argument("--compile-only", action="store_true",
                      help="AOT-compile the train step for --mesh; report memory per device")
  parser.add_argument("--json", default=None)
  parser.add_argument("--precision", default="", choices=("", "float32", "bfloat16"),
                      help="precision.compute_dtype (default: the config's)")
  args = parser.parse_args(argv)
  name = "diffusion" if args.task == "diffusion" else "defectfill"
  opts = f"{args.variant},remat={args.remat}" + (f",batch={args.batch}" if args.batch else "")
  config = config_lib.load_config(f"configs/{name}.py:{opts}")
  if args.mesh:
    config_lib.apply_overrides(config, [f"mesh.{kv}" for kv in args.mesh.split(",")])
  if args.precision:
    config.precision.compute_dtype = args.precision
  batch = synthetic_batch(config.batch_size, int(config.data.image_size))
  from fabgen.platform import registry  # pylint: disable=g-import-not-at-top
  task = registry.build_task(config)
  if args.compile_only:
    result = harness.aot_compile(config, task=task, batch=batch)
    print({k: v for k, v in result.items()})
    return result
  result = harness.benchmark_task(config, steps=args.steps, batch=batch, task=task,
                                  json_path=None, label=f"{name}:{args.variant}")
  if args.sample_steps:
    state = jax.jit(task.init_state)(jax.random.key(0))
    n = min(config.batch_size, 4)
    small = {k: v[:n] for k, v in batch.items()}
    result.update(bench_sampling(task, state, small, args.sample_steps))
    print(f"sampling: {result['sample_steps']} DDIM steps, guidance 7.5, batch {n}: "
          f"{result['sample_images_per_s']:.3f} images/s (compile {result['sample_compile_s']:.1f}"
          f" s)")
  if args.json:
    import json  # pylint: disable=g-import-not-at-top
    import os  # pylint: disable=g-import-not-at-top
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2, default=str)
  return result


if __name__ == "__main__":
  main()
