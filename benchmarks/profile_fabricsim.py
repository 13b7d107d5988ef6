"""Where FabricSim's time goes: CPU-seconds per image of each stage of `render_image`, jitted.

  python -m benchmarks.profile_fabricsim [--preset simple] [--batch 32] [--repeats 2]

Each stage is compiled on its own as `jit(vmap(stage))` over a batch of records of the preset
(inputs of a stage are the outputs of the previous ones, computed beforehand), and timed in
process CPU-seconds (load-robust on a shared machine), best of `--repeats`, with XLA's thread
pool off as in `bench_fabricsim`. The stages add up to about the whole render (`total`, the
simulator's own jitted batch render, timed the same way); the difference is what fusing them in
one program saves or costs.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position

from fabgen.data import labels as labels_lib  # pylint: disable=wrong-import-position
from fabgen.data import sample as sample_lib  # pylint: disable=wrong-import-position
from fabgen.data.fabricsim import FabricSim  # pylint: disable=wrong-import-position
from fabgen.data.fabricsim import defects as defects_lib  # pylint: disable=wrong-import-position
from fabgen.data.fabricsim import identity  # pylint: disable=wrong-import-position
from fabgen.data.fabricsim import render as render_lib  # pylint: disable=wrong-import-position


def _cpu_time(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t = time.process_time()
    jax.block_until_ready(fn(*args))
    best = min(best, time.process_time() - t)
  return best


def stages(sim: FabricSim):
  """name -> per-record function (root, fabric_id, image_index, defect_class, *deps) -> out."""
  preset, root = sim.preset, sim._root  # noqa: SLF001
  size, channels = preset.image_size, 3 if preset.colour else 1

  def params(f, i, c):
    fabric = identity.fabric_params(identity.fabric_key(root, f), preset,
                                    is_target=f >= preset.num_source_fabrics)
    return fabric, identity.image_params(identity.image_key(root, f, i), fabric)

  def geometry(f, i, c):
    fabric, image = params(f, i, c)
    return render_lib.geometry(fabric, image, size)

  def yarns(f, i, c, geo):
    return render_lib.yarns(params(f, i, c)[0], geo, channels, preset.print_prob > 0)

  def sensor(f, i, c, geo):
    fabric, image = params(f, i, c)
    return render_lib.sensor(fabric, image, geo, channels, preset.line_scan)

  def shade_clean(f, i, c, geo, yarn):
    return render_lib.shade(params(f, i, c)[0], geo, yarn)

  def defect_fields(f, i, c, geo):
    fabric, image = params(f, i, c)
    dkey = identity.defect_key(root, f, i, jnp.maximum(c, 0))
    k_inst, k_tint = jax.random.split(dkey)
    inst = defects_lib.instance_params(k_inst, c, size, preset.instance_probs)
    return defects_lib.defect_fields(inst, c, fabric, image, geo, channels, k_tint)

  def shade_defect(f, i, c, geo, yarn, fields):
    return render_lib.shade(params(f, i, c)[0], geo, yarn, fields[0])

  def camera(f, i, c, cloth, sens):
    return render_lib.camera(cloth, params(f, i, c)[0], sens)

  def components(f, i, c, cloth, clean_cloth):
    mask = jnp.where(jnp.max(jnp.abs(cloth - clean_cloth), -1) * 255.0 > 2.0, 1, 0) * (c >= 0)
    return labels_lib.component_boxes(mask.astype(jnp.int32), sample_lib.MAX_BOXES,
                                      preset.min_component_area, max_candidates=64)

  return params, [("geometry", geometry, ()), ("yarns", yarns, ("geometry",)),
                  ("sensor", sensor, ("geometry",)),
                  ("shade clean", shade_clean, ("geometry", "yarns")),
                  ("defect fields", defect_fields, ("geometry",)),
                  ("shade defect", shade_defect, ("geometry", "yarns", "defect fields")),
                  ("camera (x1)", camera, ("shade defect", "sensor")),
                  ("components", components, ("shade defect", "shade clean"))]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="simple")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  sim = FabricSim(args.preset, 0)
  rows = sim.record_specs("train", 0, args.batch)
  f, i, c = (jnp.asarray(rows[:, k]) for k in range(3))
  params_fn, table = stages(sim)
  outputs, times = {}, {}
  for name, fn, deps in table:
    batched = jax.jit(jax.vmap(fn))
    args_ = (f, i, c, *(outputs[d] for d in deps))
    outputs[name] = batched(*args_)
    times[name] = _cpu_time(batched, *args_, repeats=args.repeats)
  times["params"] = _cpu_time(jax.jit(jax.vmap(params_fn)), f, i, c, repeats=args.repeats)
  total = _cpu_time(lambda: sim.render_batch(f, i, c), repeats=args.repeats)
  n = args.batch
  print(f"FabricSim {args.preset} {sim.preset.image_size}px, batch {n}, CPU-ms per image "
        f"(XLA single-threaded):")
  for name, t in times.items():
    print(f"  {name:<14} {1e3 * t / n:8.2f}")
  print(f"  {'sum of stages':<14} {1e3 * sum(times.values()) / n:8.2f}")
  print(f"  {'total render':<14} {1e3 * total / n:8.2f}  -> {n / total:.1f} images per CPU-second")


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
