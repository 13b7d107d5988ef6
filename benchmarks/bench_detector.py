"""Detector throughput: training and inference images/s, 4096x256 strips by tiling, and the
matcher's share of the train step (host scipy vs JAX-native auction).

  python -m benchmarks.bench_detector                       # small model at 256x256, CPU
  python -m benchmarks.bench_detector --variant base --batch 32 --steps 20   # accelerator

Training: the platform's jitted, donated step (`benchmarks.harness.benchmark_task`) on one fixed
batch of FabricSim-like synthetic images, once per matcher. Matcher share: the matcher alone,
jitted, on the step's cost-matrix shape ((decoder layers + 1) * batch sets of
num_queries x MAX_BOXES) divided by the step time. Inference: `task.predict` jitted at --size x --size
(default 256), and `fabgen.detector.infer.predict_stream` over 4096x256 strips (--size tiles,
min(64, size / 2) px overlap, tiles of consecutive strips in the same batches, one compiled shape).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from configs import detector as detector_config
from fabgen.data import sample as sample_lib
from fabgen.detector import matcher as matcher_lib
from fabgen.detector.task import DetectorTask


def synthetic_batch(batch: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A batch with a few boxes per image (shapes as the data pipeline yields them)."""
  rng = np.random.default_rng(seed)
  image = rng.integers(90, 160, (batch, size, size, 3), dtype=np.uint8)
  mask = np.zeros((batch, size, size), np.int32)
  boxes = np.zeros((batch, sample_lib.MAX_BOXES, 4), np.float32)
  box_class = np.full((batch, sample_lib.MAX_BOXES), -1, np.int32)
  inst_class = np.full((batch, sample_lib.MAX_INSTANCES), -1, np.int32)
  for b in range(batch):
    for k in range(3):
      y, x = rng.integers(0, size - 24, 2)
      h, w = rng.integers(6, 24, 2)
      image[b, y:y + h, x:x + w] = 30 + 60 * k
      mask[b, y:y + h, x:x + w] = k + 1
      boxes[b, k] = (x, y, x + w, y + h)
      box_class[b, k] = inst_class[b, k] = k
  return {"image": image, "instance_mask": mask, "instance_class": inst_class, "boxes": boxes,
          "box_class": box_class}


def time_fn(fn, *args, repeats: int = 5) -> float:
  """Median seconds of a jitted call (after one compile call)."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def matcher_seconds(method: str, sets: int, queries: int, seed: int = 0) -> float:
  """One matcher call on `sets` random cost matrices [queries, MAX_BOXES], 3-8 real targets."""
  rng = np.random.default_rng(seed)
  cost = jnp.asarray(rng.normal(size=(sets, queries, sample_lib.MAX_BOXES)) * 3, jnp.float32)
  valid = np.zeros((sets, sample_lib.MAX_BOXES), bool)
  for s in range(sets):
    valid[s, :rng.integers(3, 9)] = True
  fn = jax.jit(lambda c, v: matcher_lib.match(c, v, method))
  return time_fn(fn, cost, jnp.asarray(valid))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="small", choices=("tiny", "small", "base"))
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--strips", type=int, default=2, help="4096x256 strips to time")
  parser.add_argument("--json", default="")
  parser.add_argument("--precision", default="", choices=("", "float32", "bfloat16"),
                      help="precision.compute_dtype (default: the config's)")
  args = parser.parse_args(argv)

  results = {"device": jax.devices()[0].device_kind, "variant": args.variant, "size": args.size,
             "batch": args.batch}
  batch = synthetic_batch(args.batch, args.size)
  for method in matcher_lib.METHODS:
    config = detector_config.get_config(f"{args.variant},matcher={method}")
    config.image_size = args.size
    config.batch_size = args.batch
    if args.precision:
      config.precision.compute_dtype = args.precision
    task = DetectorTask(config)
    r = harness.benchmark_task(config, steps=args.steps, warmup=1, batch=batch, task=task,
                               devices=jax.devices()[:1], quiet=True)
    sets = (config.model.decoder_layers + 1) * args.batch
    m = matcher_seconds(method, sets, config.model.num_queries)
    results[f"train_{method}"] = {"images_per_s": r["images_per_s"], "step_ms": r["step_ms"],
                                  "compile_s": r["compile_s"], "matcher_ms": m * 1e3,
                                  "matcher_share": m * 1e3 / r["step_ms"]}
    print(f"train ({method:7s}): {r['images_per_s']:8.2f} img/s  step {r['step_ms']:8.1f} ms  "
          f"matcher alone {m * 1e3:7.2f} ms = {100 * m * 1e3 / r['step_ms']:5.1f}% of the step",
          flush=True)

  state = jax.jit(task.init_state)(jax.random.key(0))
  predict = jax.jit(task.predict)
  images = jnp.asarray(batch["image"])
  s = time_fn(predict, state, images)
  results["infer_image"] = {"images_per_s": args.batch / s, "batch_ms": s * 1e3,
                            "size": args.size}
  print(f"inference {args.size}x{args.size}: {args.batch / s:8.2f} img/s (batch {args.batch}, "
        f"{s * 1e3:.1f} ms)", flush=True)

  from fabgen.detector import infer  # pylint: disable=g-import-not-at-top
  fn = lambda x: predict(state, x)  # noqa: E731
  strips = [np.random.default_rng(k).integers(90, 160, (256, 4096, 3), dtype=np.uint8)
             for k in range(max(args.strips, 1))]
  shapes = set()

  def counted(x):
    shapes.add(x.shape)
    return fn(x)

  overlap = min(64, args.size // 2)
  infer.tiled_predict(fn, strips[0], (args.size, args.size), overlap=overlap,
                      batch_size=args.batch)  # compile
  t = time.perf_counter()
  for _ in infer.predict_stream(counted, enumerate(strips), (args.size, args.size),
                                overlap=overlap, batch_size=args.batch):
    pass  # tiles of consecutive strips share batches
  per_strip = (time.perf_counter() - t) / len(strips)
  results["infer_4096x256"] = {"strips_per_s": 1.0 / per_strip, "strip_ms": per_strip * 1e3,
                               "tile": args.size, "batch_shapes": len(shapes)}
  print(f"inference 4096x256 strips (tiled {args.size}x{args.size}, batched across strips): "
        f"{1.0 / per_strip:6.3f} strips/s ({per_strip * 1e3:.0f} ms per strip, "
        f"{len(shapes)} batch shape)", flush=True)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
