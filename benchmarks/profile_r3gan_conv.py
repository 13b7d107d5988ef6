"""Per-pass cost of each grouped-conv formulation at the shapes of `stage1.py:r3gan_compare`.

  python -m benchmarks.profile_r3gan_conv                          # every impl, every D shape
  python -m benchmarks.profile_r3gan_conv --impls xla,matmul --shapes 64
  XLA_FLAGS=--xla_cpu_use_xnnpack=true python -m benchmarks.profile_r3gan_conv   # a runtime flag

The r3gan_compare step is dominated by its grouped 3x3 convolutions (group width 16): D sees 32
images (real + fake) at 64/32/16/8/4 px with 128/256/512/512/512 hidden channels, and R1/R2
differentiate its input gradient once more. For each formulation of `fabgen.nn.grouped_conv`
and each shape this times, in process CPU-seconds (load-robust on a shared machine; wall
seconds beside them), best of `--repeats`:

  forward, input grad, weight grad   the three passes of one conv;
  penalty                            grad_w of ||grad_x sum(conv)||^2, the R1/R2 pattern
                                     (forward, input grad, and their derivatives).

GFLOP/s is the useful (grouped) FLOP count over CPU time. This is the measurement behind
`grouped_conv.CPU_DEFAULT`.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from fabgen.nn import grouped_conv as gc

# D's grouped convs in r3gan_compare at batch 2 x 16: (batch, size, hidden channels, groups).
SHAPES = {64: (32, 64, 128, 8), 32: (32, 32, 256, 16), 16: (32, 16, 512, 32),
          8: (32, 8, 512, 32)}
IMPLS = {"xla": gc.xla_conv, "custom": gc.custom_conv, "einsum": gc.einsum_conv,
         "matmul": gc.matmul_conv, "per_group": gc.per_group_conv}


def _time(fn, args, repeats):
  jax.block_until_ready(fn(*args))
  cpu, wall = float("inf"), float("inf")
  for _ in range(repeats):
    c, w = time.process_time(), time.perf_counter()
    jax.block_until_ready(fn(*args))
    cpu, wall = min(cpu, time.process_time() - c), min(wall, time.perf_counter() - w)
  return cpu, wall


def passes(conv, groups):
  """name -> jitted f(x, w, dy)."""
  f = lambda x, w: conv(x, w, groups)  # noqa: E731

  def penalty(x, w, dy):
    gx = jax.grad(lambda x: jnp.sum(f(x, w) * dy))(x)
    return jnp.sum(gx * gx)

  return {"forward": jax.jit(lambda x, w, dy: f(x, w)),
          "input grad": jax.jit(lambda x, w, dy: jax.vjp(f, x, w)[1](dy)[0]),
          "weight grad": jax.jit(lambda x, w, dy: jax.vjp(f, x, w)[1](dy)[1]),
          "penalty": jax.jit(jax.grad(lambda w, x, dy: penalty(x, w, dy)))}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--impls", default=",".join(IMPLS))
  parser.add_argument("--shapes", default="64,32,16", help=f"of {sorted(SHAPES)}")
  parser.add_argument("--passes", default="forward,input grad,weight grad,penalty")
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  wanted = args.passes.split(",")
  print(f"{'shape (b,s,c,g)':<20} {'impl':<7} {'pass':<12} {'CPU s':>8} {'wall s':>8} "
        f"{'GFLOP/CPU-s':>11}")
  for size in map(int, args.shapes.split(",")):
    b, s, c, g = SHAPES[size]
    kx, kw, kd = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (b, s, s, c))
    w = jax.random.normal(kw, (3, 3, c // g, c)) * 0.05
    dy = jax.random.normal(kd, (b, s, s, c))
    flops = 2 * b * s * s * 9 * c * (c // g)
    for impl in args.impls.split(","):
      for name, fn in passes(IMPLS[impl], g).items():
        if name not in wanted:
          continue
        if name == "penalty":
          cpu, wall = _time(fn, (w, x, dy), args.repeats)
          useful = 4 * flops  # forward, input grad, and the two derivatives of the input grad
        else:
          cpu, wall = _time(fn, (x, w, dy), args.repeats)
          useful = flops
        print(f"{str((b, s, c, g)):<20} {impl:<7} {name:<12} {cpu:8.3f} {wall:8.3f} "
              f"{useful / cpu / 1e9:11.1f}", flush=True)


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
