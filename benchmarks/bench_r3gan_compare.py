"""fabgen's `configs/stage1.py:r3gan_compare` step against a PyTorch R3GAN step, in one run.

  python -m benchmarks.bench_r3gan_compare                                   # fabgen alone
  python -m benchmarks.bench_r3gan_compare --torch-python /work/venv-19c/bin/python
  python -m benchmarks.bench_r3gan_compare --torch-python venv/bin/python --official ~/R3GAN

The PyTorch side runs in a subprocess (`benchmarks/r3gan_torch_reference.py`, under the Python
given by `--torch-python` or `$FABGEN_TORCH_PYTHON`, which must have torch): with `--official`
(or `$R3GAN_OFFICIAL`, the path of a local checkout of the official R3GAN code; nothing of it is
in fabgen) it trains the official networks, otherwise fabgen's own same-architecture PyTorch
reference, which is *not* the official code and is reported as such.

Both steps are the same work: 64x64, batch 16, unconditional, G widths 256,256,256,128,64 (D
reversed), group width 16, 2 blocks per stage, noise 64, a D step with RpGAN + R1 + R2 and a G
step, Adam, EMA. The machine may be shared, so the two are timed interleaved (fabgen k steps,
torch k steps, repeated) and every figure is given twice: wall seconds per step, and process
CPU-seconds per step (user + system of that process and its threads), which a loaded machine
changes much less. The ratio is fabgen img/s / reference img/s, > 1 = fabgen faster; the load
average before and after is printed beside it.

Both sides run at the same intra-op thread count (`--threads`, default this process's CPUs, the
size of XLA:CPU's pool) and, by default, under the same process settings: run as a script, this
restarts under `fabgen.platform.cpu_runtime` (glibc malloc tunables and XLA:CPU flags, or a
preloaded tcmalloc / jemalloc where one is installed) and the PyTorch worker inherits them (the
tunables halve its step too); `--torch-settings default` runs PyTorch under glibc's defaults
instead, `tuned` under the tunables. Only a quiet host gives this comparison (README,
Benchmarks: at load average 8-16 the ratio came out 5x too favourable). `--tiny` shrinks both
sides to the same 3-stage 16x16 networks: a test of this script, not a speed figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax

from benchmarks import harness
from benchmarks.bench_stage1 import synthetic_batch
from configs import stage1 as stage1_config
from fabgen.platform import cpu_runtime
from fabgen.platform import sharding as sharding_lib
from fabgen.stage1.task import Stage1Task

# The same shrunk networks as the worker's `TINY` (the worker runs under torch's Python and is not
# imported here; tests/test_benchmark_r3gan_compare.py checks that both sides count the same
# parameters).
TINY = {"widths": (32, 32, 16), "group_width": 8, "blocks": 1, "noise": 16}
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "r3gan_torch_reference.py")


def compare_config(batch: int, conv_impl: str = "config", tiny: bool = False):
  """`configs/stage1.py:r3gan_compare` on one device; `tiny`: shrunk like the worker's `--tiny`.

  conv_impl "config" keeps the config's grouped-conv formulation ("auto")."""
  config = stage1_config.get_config(f"r3gan_compare,batch={batch}")
  config.mesh.data = 1
  if conv_impl != "config":
    config.model.conv_impl = conv_impl
  if tiny:
    m, t = config.model, TINY
    m.g_widths, m.d_widths = t["widths"], tuple(reversed(t["widths"]))
    m.group_width, m.blocks, m.noise_dim = t["group_width"], t["blocks"], t["noise"]
    config.patch_size = 4 * 2 ** (len(t["widths"]) - 1)
  return config


def build_fabgen(batch: int, conv_impl: str, tiny: bool = False):
  """The compiled r3gan_compare step on one device, its state and batch: `run(k)` -> timings."""
  config = compare_config(batch, conv_impl, tiny)
  task = Stage1Task(config)
  mesh, task, batch_np, init_rng, step_rng, _, shardings, step_fn = harness._setup(  # noqa: SLF001
      config, task, synthetic_batch(task), jax.devices()[:1])
  with jax.set_mesh(mesh):
    state = jax.jit(task.init_state, out_shardings=shardings)(init_rng)
    global_batch = sharding_lib.global_batch(batch_np, mesh, task.batch_axes())
    t = time.perf_counter()
    compiled = step_fn.lower(state, global_batch, step_rng).compile()
  compile_s = time.perf_counter() - t
  memory = compiled.memory_analysis()
  holder = {"state": state}

  def run(steps: int) -> dict:
    state = holder["state"]
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      state, metrics = compiled(state, global_batch, step_rng)
    jax.block_until_ready((state, metrics))
    holder["state"] = state
    return {"steps": steps, "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu}

  run.compiled = compiled  # for benchmarks.profile_r3gan_step
  run(1)  # warm-up
  return run, {"compile_s": compile_s, "flops_per_step": harness.aot.flops(compiled),
               "temp_bytes": getattr(memory, "temp_size_in_bytes", None),
               "argument_bytes": getattr(memory, "argument_size_in_bytes", None),
               "xla_cpu_threads": len(os.sched_getaffinity(0)),
               "cpu_runtime": cpu_runtime.describe()}


class TorchWorker:
  """The PyTorch step in a subprocess that runs N steps per request (see the worker's doc)."""

  def __init__(self, python: str, official: str, batch: int, threads: int, tiny: bool = False,
               settings: str = "same"):
    cmd = [python, WORKER, "--serve", "--batch", str(batch), "--threads", str(threads)]
    cmd += ["--tiny"] if tiny else []
    if official:
      cmd += ["--official", official]
    env = dict(os.environ)
    if settings != "same":  # not fabgen's allocator either
      for key in ("LD_PRELOAD", cpu_runtime.PRELOADED, *cpu_runtime.ALLOCATOR_SETTINGS):
        env.pop(key, None)
    if settings == "default":  # PyTorch as a user starts it: glibc's own malloc behaviour
      env.pop("GLIBC_TUNABLES", None)
    elif settings == "tuned":  # PyTorch under the malloc tunables, whatever fabgen runs under
      env["GLIBC_TUNABLES"] = cpu_runtime.wanted_environment(
          {k: v for k, v in env.items() if k != cpu_runtime.OPT_OUT}).get("GLIBC_TUNABLES", "")
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=env)

  def ready(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"the PyTorch worker {WORKER} exited ({self.proc.wait()}) before it "
                         f"was ready: see its stderr above")
    return json.loads(line)

  def run(self, steps: int) -> dict:
    self.proc.stdin.write(f"{steps}\n")
    self.proc.stdin.flush()
    return json.loads(self.proc.stdout.readline())

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


def _conv_impl_arg(argv: list[str]) -> str:
  """--conv-impl from a command line, before the parser runs (the restart needs it first)."""
  for i, arg in enumerate(argv):
    if arg.startswith("--conv-impl="):
      return arg.split("=", 1)[1]
    if arg == "--conv-impl" and i + 1 < len(argv):
      return argv[i + 1]
  return "config"


def summarize(runs: list[dict], batch: int) -> dict:
  wall = statistics.median(r["wall_s"] / r["steps"] for r in runs)
  cpu = statistics.median(r["cpu_s"] / r["steps"] for r in runs)
  return {"s_per_step": wall, "cpu_s_per_step": cpu, "img_per_s": batch / wall,
          "img_per_cpu_s": batch / cpu, "runs": runs}


def main(argv: list[str] | None = None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch-python", default=os.environ.get("FABGEN_TORCH_PYTHON", ""),
                      help="a Python with torch (empty: time fabgen alone)")
  parser.add_argument("--official", default=os.environ.get("R3GAN_OFFICIAL", ""),
                      help="path of a local official R3GAN checkout (empty: fabgen's reference)")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--steps", type=int, default=1, help="steps per timed round")
  parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
  parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                      help="torch intra-op threads (default: this process's CPUs, which is the "
                      "size of XLA:CPU's intra-op pool)")
  parser.add_argument("--conv-impl", default="config",
                      help="fabgen's grouped conv formulation (config: the config's)")
  parser.add_argument("--torch-settings", choices=("same", "default", "tuned"), default="same",
                      help="same: PyTorch runs under fabgen's process settings; default: under "
                      "glibc's defaults, as PyTorch is usually started; tuned: under the glibc "
                      "malloc tunables of fabgen.platform.cpu_runtime (PyTorch's fastest measured)")
  parser.add_argument("--json", default="", help="also write the result here")
  parser.add_argument("--tiny", action="store_true",
                      help="both sides shrunk to 3 stages at 16x16 (a plumbing test, not a speed "
                      "figure)")
  args = parser.parse_args(argv)
  if args.official and not args.torch_python:
    parser.error("--official needs --torch-python (a Python with torch)")
  if args.official and args.tiny:
    parser.error("--tiny shrinks fabgen's own PyTorch reference, not the official networks")
  load_before = os.getloadavg()
  worker = TorchWorker(args.torch_python, args.official, args.batch, args.threads, args.tiny,
                       args.torch_settings) if args.torch_python else None
  run_fabgen, info = build_fabgen(args.batch, args.conv_impl, args.tiny)  # compiles while torch warms up
  ref_info = worker.ready() if worker else None
  fab_runs, ref_runs = [], []
  for _ in range(args.repeats):
    fab_runs.append(run_fabgen(args.steps))
    if worker:
      ref_runs.append(worker.run(args.steps))
  if worker:
    worker.close()
  result = {"fabgen": {**info, "conv_impl": args.conv_impl, **summarize(fab_runs, args.batch)},
            "load_before": load_before, "load_after": os.getloadavg(), "batch": args.batch,
            "tiny": args.tiny}
  fab = result["fabgen"]
  print(f"fabgen r3gan_compare ({args.conv_impl}): {fab['s_per_step']:.2f} s/step wall, "
        f"{fab['cpu_s_per_step']:.2f} CPU-s/step, {fab['img_per_s']:.3f} img/s, "
        f"{fab['img_per_cpu_s']:.3f} img/CPU-s, compile {fab['compile_s']:.0f} s, "
        f"XLA temporaries {fab['temp_bytes'] / 1e9:.2f} GB, {fab['xla_cpu_threads']} threads")
  print(f"  process settings (fabgen.platform.cpu_runtime): {fab['cpu_runtime']}")
  if worker:
    ref = result["reference"] = {**ref_info, **summarize(ref_runs, args.batch),
                                 "process_settings": args.torch_settings}
    result["ratio_wall"] = fab["img_per_s"] / ref["img_per_s"]
    result["ratio_cpu"] = fab["img_per_cpu_s"] / ref["img_per_cpu_s"]
    print(f"{ref['implementation']} (torch {ref['torch']}, {ref['threads']} threads, "
          f"{args.torch_settings} process settings): "
          f"{ref['s_per_step']:.2f} s/step wall, {ref['cpu_s_per_step']:.2f} CPU-s/step, "
          f"{ref['img_per_s']:.3f} img/s, {ref['img_per_cpu_s']:.3f} img/CPU-s")
    print(f"ratio fabgen / reference img/s: {result['ratio_wall']:.2f}x wall, "
          f"{result['ratio_cpu']:.2f}x per CPU-second")
  print("load average before {:.1f} {:.1f} {:.1f}, after {:.1f} {:.1f} {:.1f}".format(
      *load_before, *result["load_after"]))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  # Under a preloaded tcmalloc / jemalloc where one is installed (auto then runs per_group: the
  # fastest measured, fabgen.platform.cpu_runtime); else per_group without the malloc tunables (in
  # one arena its oneDNN workspace mallocs take 38 % of the CPU), the other formulations with them.
  _impl = compare_config(16, _conv_impl_arg(sys.argv[1:])).model.conv_impl
  if _impl in ("auto", "per_group") and cpu_runtime.find_allocator(os.environ):
    os.environ.setdefault(cpu_runtime.OPT_OUT, cpu_runtime.ALLOCATOR)
  elif _impl == "per_group":
    os.environ.setdefault(cpu_runtime.OPT_OUT, cpu_runtime.FLAGS_ONLY)
  cpu_runtime.start()
  sys.exit(0 if main() else 1)
