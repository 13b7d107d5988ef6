"""Ahead-of-time compilation of a task's train step for a target mesh, without allocating.

The state and batch are `jax.ShapeDtypeStruct`s carrying the target mesh's shardings (the batch
from `Task.abstract_batch`, so no training set is built), so the
step compiles for a pod-sized mesh (forced CPU devices or a TPU topology description) on a
workstation, and `compiled.memory_analysis()` says whether it will fit per device before the pod
is held. Used by `fabgen compile` and by `benchmarks.harness`.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from fabgen.platform import mesh as mesh_lib
from fabgen.platform import registry
from fabgen.platform import sharding as sharding_lib
from fabgen.platform import trainer


# For a program compiled only to be measured, never run, on XLA:CPU: LLVM code generation at -O0.
# Buffer assignment (memory_analysis) and the cost analysis (FLOPs, bytes) are computed on the
# optimised HLO, before code generation, so they are unchanged (tests/platform/test_aot.py checks
# it); the CPU time of a stage-1 compile halves.
MEMORY_CHECK_OPTIONS = {"xla_backend_optimization_level": 0}


def flops(compiled) -> float | None:
  """FLOPs of the compiled (per-device, partitioned) program from XLA's cost analysis."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost:
    return None
  value = cost.get("flops")
  return float(value) if value is not None and value >= 0 else None


def memory(compiled) -> dict[str, int]:
  """Bytes per device from XLA's memory analysis, plus the live total."""
  mem = compiled.memory_analysis()
  if mem is None:
    return {}
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes", "generated_code_size_in_bytes")
  out = {f: int(getattr(mem, f)) for f in fields if hasattr(mem, f)}
  # Donated state aliases its output: live memory is arguments + outputs - aliased + temps.
  out["total_bytes_per_device"] = (out.get("argument_size_in_bytes", 0)
                                   + out.get("output_size_in_bytes", 0)
                                   - out.get("alias_size_in_bytes", 0)
                                   + out.get("temp_size_in_bytes", 0))
  return out


def cost(compiled) -> dict[str, float]:
  """XLA's cost analysis of the compiled program: flops, bytes accessed (per device)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  out = {}
  for key in ("flops", "bytes accessed", "transcendentals"):
    value = (analysis or {}).get(key)
    if value is not None and value >= 0:
      out[key.replace(" ", "_")] = float(value)
  return out


def abstract_inputs(task, config, mesh: jax.sharding.Mesh, batch: Mapping | None = None):
  """(jitted step, abstract state, abstract batch, abstract rng), all carrying `mesh`'s shardings.

  Nothing is read or allocated: the state's shapes come from `jax.eval_shape(task.init_state)`
  and the batch's from `task.abstract_batch()` (or `batch`'s arrays, when given).
  """
  if batch is None:
    spec = dict(task.abstract_batch())
  else:
    spec = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype) for k, v in batch.items()}
  _, step_rng, abstract = trainer.abstract_state(task, config)
  shardings = sharding_lib.state_shardings(abstract, mesh, config)
  bsh = trainer.batch_shardings(task, mesh, spec)
  step_fn = trainer.build_step(task, shardings, mesh, bsh)
  abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=bsh[k])
                    for k, v in spec.items()}
  rng = jax.ShapeDtypeStruct(step_rng.shape, step_rng.dtype,
                             sharding=sharding_lib.replicated(mesh))
  return step_fn, sharding_lib.with_shardings(abstract, shardings), abstract_batch, rng


def aot_compile(config, mesh_sizes: Mapping[str, int] | None = None, *, task=None,
                batch: Mapping | None = None,
                devices: Sequence[jax.Device] | None = None,
                compiler_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Compiles the train step for a mesh without reading data or allocating state.

  Everything is abstract (`jax.ShapeDtypeStruct`s carrying shardings), so a model too large for
  the host compiles all the same, and no training set is built. `mesh_sizes` overrides
  `config.mesh`. `compiler_options` go to XLA (e.g. `MEMORY_CHECK_OPTIONS` on CPU). The report
  holds memory per device (`memory`), XLA's per-device cost (`flops_per_device`,
  `bytes_accessed_per_device`), the global batch size and the lowering and compile times.
  """
  sizes = dict(config.mesh.to_dict() if hasattr(config.mesh, "to_dict") else config.mesh)
  sizes.update(mesh_sizes or {})
  mesh = mesh_lib.make_mesh(sizes, devices)
  task = task or registry.build_task(config)
  step_fn, state, abstract_batch, rng = abstract_inputs(task, config, mesh, batch)
  t = time.perf_counter()
  with jax.set_mesh(mesh):
    lowered = step_fn.lower(state, abstract_batch, rng)
    lower_s = time.perf_counter() - t
    compiled = lowered.compile(compiler_options=dict(compiler_options or {}) or None)
  compile_s = time.perf_counter() - t
  param_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))
  costs = cost(compiled)
  batch_rows = {int(v.shape[0]) for v in abstract_batch.values() if v.shape}
  return {"task": config.task, "mesh": {k: int(v) for k, v in mesh.shape.items()},
          "devices": mesh.size, "platform": mesh.devices.flat[0].platform,
          "device_kind": mesh.devices.flat[0].device_kind, "lower_s": lower_s,
          "compile_s": compile_s, "global_batch": max(batch_rows) if batch_rows else None,
          "state_bytes_total": param_bytes, "flops_per_device": costs.get("flops"),
          "bytes_accessed_per_device": costs.get("bytes_accessed"),
          "memory": memory(compiled)}
