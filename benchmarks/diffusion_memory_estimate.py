"""Memory per device of a diffusion / DefectFill train step on a mesh, without compiling it.

  XLA_FLAGS=--xla_force_host_platform_device_count=16 python -m benchmarks.diffusion_memory_estimate \
      --task diffusion --variant sd2 --mesh data=4,fsdp=4 --batch 16 --json out.json

Why: `fabgen compile` of the SD-2 step (XLA:CPU, 16 forced devices) ran 42 min on the shared
host and was OOM-killed; libtpu's topology compile needs CPU time this host rarely has. This
estimate needs only tracing (minutes), and says which part is exact and which is not:

  state      exact: every leaf of `eval_shape(init_state)` at its shard shape under the
             config's sharding rules on the target mesh (params, Adam moments, frozen weights).
  gradients  the trainable leaves at their shard shape (fsdp reduce-scatters to the owner), f32.
  residuals  what the backward pass keeps: `saved_residuals` of the loss traced at the
             per-device batch (global batch / (data x fsdp)), leaves that are arguments
             (weights, the batch) excluded: the weights are already in `state`. The activation peak of a plain
             (no-remat) backward; XLA may reuse or fuse some buffers (lower) and adds its own
             temporaries and the all-gathered weights of the layer it is on (higher: the largest
             gathered leaf is reported and added twice, forward and backward).
Not XLA's buffer assignment: a compile (`fabgen compile`) remains the authoritative figure.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import numpy as np

from benchmarks import bench_diffusion
from fabgen.platform import config as config_lib
from fabgen.platform import mesh as mesh_lib
from fabgen.platform import registry
from fabgen.platform import sharding as sharding_lib
from fabgen.platform import trainer

GIB = 2 ** 30


def nbytes(shape, dtype) -> int:
  return int(np.prod(shape)) * np.dtype(dtype).itemsize


def shard_bytes(tree, shardings) -> int:
  """Bytes per device of `tree` laid out by `shardings` (the largest shard of each leaf)."""
  return sum(nbytes(s.shard_shape(x.shape), x.dtype)
             for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)))


def residual_bytes(fn, *args) -> tuple[int, int]:
  """(bytes of the residuals `fn`'s backward keeps that are not arguments, their count)."""
  from jax._src.ad_checkpoint import saved_residuals  # pylint: disable=g-import-not-at-top
  saved = saved_residuals(fn, *args)
  kept = [aval for aval, where in saved if not where.startswith("from the argument")]
  return sum(nbytes(a.shape, a.dtype) for a in kept), len(kept)


def estimate(task_name: str, variant: str, mesh_spec: str, batch: int, extra=()) -> dict:
  opts = f"{variant},batch={batch}" + "".join(f",{e}" for e in extra)
  config = config_lib.load_config(f"configs/{task_name}.py:{opts}")
  sizes = {k: int(v) for k, v in (kv.split("=") for kv in mesh_spec.split(","))}
  config_lib.apply_overrides(config, [f"mesh.{k}={v}" for k, v in sizes.items()])
  mesh = mesh_lib.make_mesh(sizes, jax.devices()[:math.prod(sizes.values())])
  task = registry.build_task(config)
  t = time.perf_counter()
  _, _, abstract = trainer.abstract_state(task, config)
  shardings = sharding_lib.state_shardings(abstract, mesh, config)
  state_dev = shard_bytes(abstract, shardings)
  state_all = sum(nbytes(x.shape, x.dtype) for x in jax.tree.leaves(abstract))
  trainable = "params" if "params" in abstract else "train"
  grads_dev = sum(nbytes(s.shard_shape(x.shape), np.float32) for x, s in
                  zip(jax.tree.leaves(abstract[trainable]),
                      jax.tree.leaves(shardings[trainable])))
  weights = abstract["params"] if "params" in abstract else abstract["frozen"]
  largest = max(nbytes(x.shape, x.dtype) for x in jax.tree.leaves(weights))

  per_device = batch // (sizes.get("data", 1) * sizes.get("fsdp", 1))
  spec = lambda v: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype)
  one = {k: spec(v) for k, v in bench_diffusion.synthetic_batch(
      per_device, int(config.data.image_size)).items()}
  rng = jax.random.key(0)
  if trainable == "params":
    loss = lambda p, b: task.loss(p, b, rng)[0]
    res, count = residual_bytes(loss, abstract["params"], one)
  else:
    loss = lambda tr, fr, b: task.losses(tr, fr, b, rng)[0]
    res, count = residual_bytes(loss, abstract["train"], abstract["frozen"], one)
  total = state_dev + grads_dev + res + 2 * largest
  return {"task": task_name, "variant": variant, "mesh": sizes, "global_batch": batch,
          "per_device_batch": per_device, "image_size": int(config.data.image_size),
          "compute_dtype": str(config.precision.compute_dtype),
          "remat": bool(config.model.get("remat", False)),
          "state_gib_all_devices": state_all / GIB, "state_gib_per_device": state_dev / GIB,
          "grads_gib_per_device": grads_dev / GIB, "residuals_gib_per_device": res / GIB,
          "residual_count": count, "largest_gathered_leaf_gib": largest / GIB,
          "estimate_gib_per_device": total / GIB, "trace_s": time.perf_counter() - t}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", default="diffusion", choices=("diffusion", "defectfill"))
  parser.add_argument("--variant", default="sd2")
  parser.add_argument("--mesh", default="data=4,fsdp=4")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--extra", default="", help="more config options, e.g. remat=True")
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)
  out = estimate(args.task, args.variant, args.mesh, args.batch,
                 [e for e in args.extra.split(",") if e])
  for k, v in out.items():
    print(f"  {k:<28} {v:.3f}" if isinstance(v, float) else f"  {k:<28} {v}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=2)
  return out


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
