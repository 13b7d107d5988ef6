"""Ahead-of-time compilation of a task's train step for a target mesh, without allocating.

The state and batch are `jax.ShapeDtypeStruct`s carrying the target mesh's shardings, so the
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


def aot_compile(config, mesh_sizes: Mapping[str, int] | None = None, *, task=None,
                batch: Mapping | None = None,
                devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Compiles the train step for a mesh without allocating state; memory per device.

  Everything is abstract (`jax.ShapeDtypeStruct`s carrying shardings), so a model too large for
  the host compiles all the same. `mesh_sizes` overrides `config.mesh`.
  """
  sizes = dict(config.mesh.to_dict() if hasattr(config.mesh, "to_dict") else config.mesh)
  sizes.update(mesh_sizes or {})
  mesh = mesh_lib.make_mesh(sizes, devices)
  task = task or registry.build_task(config)
  if batch is None:
    batch = next(iter(task.dataset(0, 1, config.seed)))
  batch = {k: np.asarray(v) for k, v in batch.items()}
  _, step_rng, abstract = trainer.abstract_state(task, config)
  shardings = sharding_lib.state_shardings(abstract, mesh, config)
  bsh = trainer.batch_shardings(task, mesh, batch)
  step_fn = trainer.build_step(task, shardings, mesh, bsh)
  abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=bsh[k])
                    for k, v in batch.items()}
  rng = jax.ShapeDtypeStruct(step_rng.shape, step_rng.dtype,
                             sharding=sharding_lib.replicated(mesh))
  t = time.perf_counter()
  with jax.set_mesh(mesh):
    compiled = step_fn.lower(sharding_lib.with_shardings(abstract, shardings), abstract_batch,
                             rng).compile()
  compile_s = time.perf_counter() - t
  param_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(abstract))
  return {"task": config.task, "mesh": {k: int(v) for k, v in mesh.shape.items()},
          "devices": mesh.size, "platform": mesh.devices.flat[0].platform,
          "device_kind": mesh.devices.flat[0].device_kind, "compile_s": compile_s,
          "state_bytes_total": param_bytes, "flops_per_device": flops(compiled),
          "memory": memory(compiled)}
