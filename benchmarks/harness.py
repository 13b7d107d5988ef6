"""Train-step benchmark and ahead-of-time compile for any fabgen Task, on the platform's mesh.

Model benchmarks call one function:

  from benchmarks import harness
  result = harness.benchmark_task(config, steps=20, batch=my_batch)   # prints a table, -> dict

It builds the mesh, shardings and jitted donated step exactly as `fabgen train` does, compiles
once (compile time reported), warms up, times `steps` steps with `block_until_ready`, and reports
images/s, step time, XLA's FLOPs per step (`compiled.cost_analysis()`), and model-FLOPs
utilisation against a peak: measured with a large f32 matmul in the same run on CPUs, the
vendors' dense bf16 figures on H100/H200/TPUs. `aot_compile` (re-exported from
`fabgen.platform.aot`) compiles for a mesh shape without running and reports memory per device,
so an out-of-memory shows up before a pod is held (`fabgen compile`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.platform import aot
from fabgen.platform import mesh as mesh_lib
from fabgen.platform import registry
from fabgen.platform import sharding as sharding_lib
from fabgen.platform import trainer

# Dense bf16 peak FLOP/s per device (vendors' data sheets, without sparsity).
PEAK_FLOPS = {
    "H100": 989e12,   # H100 SXM5
    "H200": 989e12,   # same compute as H100 SXM
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,  # v6e (Trillium)
    "TPU v6e": 918e12,
}


def measure_cpu_peak(n: int = 1024, repeats: int = 5) -> float:
  """FLOP/s of an n x n f32 matmul on the first device (best of `repeats`): the CPU's peak."""
  a = jax.device_put(jnp.ones((n, n), jnp.float32), jax.devices()[0])
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2.0 * n ** 3 / best


def peak_flops(device=None) -> tuple[float | None, str]:
  """(peak FLOP/s of one device, where the figure comes from)."""
  device = device or jax.devices()[0]
  if device.platform == "cpu":
    return measure_cpu_peak(), "measured: 1024^2 f32 matmul"
  kind = device.device_kind
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):
    if name.lower() in kind.lower():
      return PEAK_FLOPS[name], f"vendor dense bf16 ({name})"
  return None, f"unknown device kind {kind!r}"


aot_compile = aot.aot_compile


def _setup(config, task=None, batch=None, devices=None):
  """Mesh, task, abstract state + shardings, a global batch, and the jitted step."""
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  task = task or registry.build_task(config)
  if batch is None:
    batch = next(iter(task.dataset(0, 1, config.seed)))
  batch = {k: np.asarray(v) for k, v in batch.items()}
  init_rng, step_rng, abstract = trainer.abstract_state(task, config)
  shardings = sharding_lib.state_shardings(abstract, mesh, config)
  step_fn = trainer.build_step(task, shardings, mesh, trainer.batch_shardings(task, mesh, batch))
  return mesh, task, batch, init_rng, step_rng, abstract, shardings, step_fn


def benchmark_task(config, *, steps: int = 10, warmup: int = 2, batch: Mapping | None = None,
                   task=None, devices: Sequence[jax.Device] | None = None,
                   json_path: str | None = None, label: str | None = None,
                   quiet: bool = False) -> dict[str, Any]:
  """Times `config.task`'s train step on this host's mesh; returns (and prints) the figures.

  Args:
    config: a full task config (e.g. `configs/x.py`'s `get_config("tiny")`).
    steps: timed steps, after `warmup` untimed ones (compile excluded from both).
    batch: one global batch (numpy dict); default: the first batch of `task.dataset(0, 1)`.
      The same batch is reused every step, so the figure is compute, not input.
    task: a prepared Task (e.g. with in-memory examples); default: built from the registry.
    devices: mesh devices (default all); json_path: where to write the JSON result.
  Returns:
    dict with compile_s, step_ms, images_per_s, flops_per_step (all devices), tflops_per_s,
    peak_tflops_per_s, mfu, memory (per device), mesh, devices, device_kind.
  """
  mesh, task, batch, init_rng, step_rng, _, shardings, step_fn = _setup(
      config, task, batch, devices)
  with jax.set_mesh(mesh):
    state = jax.jit(task.init_state, out_shardings=shardings)(init_rng)
  global_batch = sharding_lib.global_batch(batch, mesh, task.batch_axes())

  t = time.perf_counter()
  with jax.set_mesh(mesh):
    compiled = step_fn.lower(state, global_batch, step_rng).compile()
  compile_s = time.perf_counter() - t
  for _ in range(warmup):
    state, metrics = compiled(state, global_batch, step_rng)
  jax.block_until_ready((state, metrics) if warmup else state)
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, global_batch, step_rng)
  jax.block_until_ready((state, metrics))
  step_s = (time.perf_counter() - t) / max(steps, 1)

  device = mesh.devices.flat[0]
  # XLA's cost analysis is of the partitioned (per-device) program.
  per_device = aot.flops(compiled)
  flops = per_device * mesh.size if per_device is not None else None
  peak, peak_source = peak_flops(device)
  if peak is not None and device.platform != "cpu":
    peak_total = peak * mesh.size
  else:
    peak_total = peak  # forced CPU "devices" share one host: its measured peak is the total
  batch_size = next(iter(batch.values())).shape[0]
  result = {
      "label": label or f"{config.task}", "task": config.task, "device_kind": device.device_kind,
      "platform": device.platform, "devices": mesh.size,
      "mesh": {k: int(v) for k, v in mesh.shape.items()}, "batch_size": int(batch_size),
      "compile_s": compile_s, "step_ms": step_s * 1e3, "images_per_s": batch_size / step_s,
      "flops_per_step": flops,
      "tflops_per_s": flops / step_s / 1e12 if flops else None,
      "peak_tflops_per_s": peak_total / 1e12 if peak_total else None, "peak_source": peak_source,
      "mfu": flops / step_s / peak_total if flops and peak_total else None,
      "memory": aot.memory(compiled), "steps": steps, "warmup": warmup,
  }
  if json_path:
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
  if not quiet:
    print_table([result])
  return result


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def print_table(results: Sequence[Mapping[str, Any]]) -> None:
  """A short terminal table of `benchmark_task` results."""
  header = (f"{'benchmark':<24} {'devices':>12} {'batch':>5} {'compile s':>9} {'step ms':>9} "
            f"{'img/s':>9} {'GFLOP/step':>10} {'TFLOP/s':>8} {'peak':>8} {'MFU':>6} "
            f"{'MiB/dev':>8}")
  print(header)
  print("-" * len(header))
  for r in results:
    mem = r.get("memory", {}).get("total_bytes_per_device")
    print(f"{r['label'][:24]:<24} {str(r['devices']) + 'x' + r['platform']:>12} "
          f"{r['batch_size']:>5} {r['compile_s']:>9.2f} {r['step_ms']:>9.2f} "
          f"{r['images_per_s']:>9.1f} "
          f"{_fmt(r['flops_per_step'] and r['flops_per_step'] / 1e9, '10.3f'):>10} "
          f"{_fmt(r['tflops_per_s'], '8.4f'):>8} {_fmt(r['peak_tflops_per_s'], '8.3f'):>8} "
          f"{_fmt(r['mfu'] and 100 * r['mfu'], '5.1f') + '%':>6} "
          f"{_fmt(mem and mem / 2 ** 20, '8.2f'):>8}")
