"""Stage-1 speed: the grouped-conv formulations per pass, and the G+D train step per config.

  python -m benchmarks.bench_stage1 --conv issue            # issue 4's conv case (slow on CPU)
  python -m benchmarks.bench_stage1 --variants 64,128,r3gan_compare --batch 16
  python -m benchmarks.bench_stage1                         # small defaults (run_all)

Part 1 times a grouped 3x3 conv (`--conv issue` = batch 16, 32x32, 512 channels, 32 groups)
in each formulation of `fabgen.nn.grouped_conv` (xla = feature_group_count, einsum = im2col +
batched einsum, custom = XLA forward + custom VJP, matmul = group-major batched dots in every
pass) and the dense conv of the same width, for the
forward pass, the input gradient and the weight gradient separately: this is the measurement
the per-backend choice (`default_impl`) rests on.

Part 2 times one full stage-1 step (D step with RpGAN + R1 + R2, G step, Adam, EMA) through
`benchmarks.harness.benchmark_task` (the platform's mesh, shardings and donated jit), on a
synthetic batch of the config's shapes, with and without R1+R2; it prints the R1+R2 cost as a
ratio. `r3gan_compare` is the unconditional 64x64 config that matches the official R3GAN step.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from configs import stage1 as stage1_config
from fabgen.nn import grouped_conv as gc
from fabgen.stage1.task import Stage1Task

SMALL_ARGS = ["--conv", "small", "--variants", "tiny", "--steps", "3"]
CONV_CASES = {"issue": (16, 32, 512, 32), "small": (8, 16, 128, 8)}


def _time(fn, *args, repeats: int = 3) -> float:
  jax.block_until_ready(fn(*args))  # compile
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t)
  return best


def bench_conv(case: str, repeats: int) -> dict:
  """Seconds per pass for every formulation on `CONV_CASES[case]` = (batch, size, C, groups)."""
  b, s, c, g = CONV_CASES[case]
  kx, kw, kd = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (b, s, s, c))
  w = jax.random.normal(kw, (3, 3, c // g, c)) * 0.05
  wd = jax.random.normal(kd, (3, 3, c, c)) * 0.05
  dy = jax.random.normal(kd, (b, s, s, c))
  results = {}
  impls = {"xla": lambda x, w: gc.xla_conv(x, w, g), "einsum": lambda x, w: gc.einsum_conv(x, w, g),
           "custom": lambda x, w: gc.custom_conv(x, w, g),
           "matmul": lambda x, w: gc.matmul_conv(x, w, g), "dense": lambda x, w: gc.xla_conv(x, w, 1)}
  for name, conv in impls.items():
    weight = wd if name == "dense" else w
    fwd = jax.jit(conv)
    vjp = lambda x, w, conv=conv: jax.vjp(conv, x, w)[1](dy)  # noqa: E731
    dx = jax.jit(lambda x, w, vjp=vjp: vjp(x, w)[0])
    dw = jax.jit(lambda x, w, vjp=vjp: vjp(x, w)[1])
    results[name] = {p: _time(f, x, weight, repeats=repeats)
                     for p, f in (("forward", fwd), ("input_grad", dx), ("weight_grad", dw))}
  flops = 2 * b * s * s * 9 * c * (c // g)
  print(f"grouped conv {case}: batch {b}, {s}x{s}, {c} ch, {g} groups, 3x3 "
        f"({flops / 1e9:.2f} GFLOP per pass; dense {flops * g / 1e9:.2f}) on "
        f"{jax.devices()[0].platform}; auto = {gc.default_impl()}")
  print(f"{'impl':<8} {'forward s':>10} {'input grad s':>13} {'weight grad s':>14}")
  for name, r in results.items():
    print(f"{name:<8} {r['forward']:>10.4f} {r['input_grad']:>13.4f} {r['weight_grad']:>14.4f}")
  return results


def synthetic_batch(task: Stage1Task) -> dict:
  c = task.config
  b, p = c.batch_size, c.patch_size
  rng = np.random.default_rng(0)
  mask = np.zeros((b, p, p), np.float32)
  mask[:, p // 4: 3 * p // 4, p // 3: 2 * p // 3] = 1.0
  return {"patch": rng.integers(0, 256, (b, p, p, 3), dtype=np.uint8), "mask": mask,
          "clean": rng.integers(0, 256, (b, p, p, 3), dtype=np.uint8),
          "cond": rng.random((b, task.conditioner.dim)).astype(np.float32),
          "class_id": (np.arange(b) % 6).astype(np.int32)}


def bench_step(variant: str, batch: int, steps: int, conv_impl: str = "auto",
               precision: str = "") -> list[dict]:
  """Step figures with and without R1+R2 for one config variant."""
  results = []
  for penalties in (True, False):
    arg = f"{variant},r1={penalties},r2={penalties}" + (f",batch={batch}" if batch else "")
    config = stage1_config.get_config(arg)
    config.mesh.data = 1  # one device: the figure is per device, comparable with R3GAN's
    config.model.conv_impl = conv_impl
    if precision:
      config.precision.compute_dtype = precision
    task = Stage1Task(config)
    label = f"stage1:{variant}:{conv_impl}{'' if penalties else ' no R1R2'}"
    results.append(harness.benchmark_task(config, steps=steps, warmup=1, task=task,
                                          batch=synthetic_batch(task), label=label,
                                          devices=jax.devices()[:1], quiet=True))
  with_r, without = results
  print(f"{variant}: R1+R2 step cost ratio = {with_r['step_ms'] / without['step_ms']:.2f}x "
        f"({with_r['step_ms']:.1f} ms vs {without['step_ms']:.1f} ms)")
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--conv", default="small", help="|".join(CONV_CASES) + "|none")
  parser.add_argument("--variants", default="tiny", help="comma-separated configs/stage1.py "
                      "variants: tiny,64,128,r3gan_compare (empty: skip)")
  parser.add_argument("--batch", type=int, default=0, help="override the configs' batch size")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--conv-impl", default="auto", help="grouped conv formulation (model)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--precision", default="", choices=("", "float32", "bfloat16"),
                      help="precision.compute_dtype (default: the config's)")
  args = parser.parse_args()
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}")
  if args.conv != "none":
    bench_conv(args.conv, args.repeats)
  rows = []
  for variant in filter(None, args.variants.split(",")):
    rows += bench_step(variant, args.batch, args.steps, args.conv_impl, args.precision)
  if rows:
    harness.print_table(rows)


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
