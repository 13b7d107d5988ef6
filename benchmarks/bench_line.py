"""Detector speed in line units: strips/s, web speed in m/min, latency per strip.

  python -m benchmarks.bench_line                                   # small and base, CPU
  python -m benchmarks.bench_line --variants small --strips 5 --pitch-mm 0.1 --json line.json

An inspection line states its speed in metres per minute. A line-scan strip of `--strip-rows`
lines (along the web) by `--strip-width` pixels (across it) covers strip_rows x pitch of web, so
a detector that keeps up with S strips/s sustains S x strip_rows x pitch_mm / 1000 x 60 m/min.
Each strip goes through the tiled inference `fabgen inspect-roll` uses
(`fabgen.detector.infer.tiled_predict`, tiles of the detector's training size, overlap a
quarter tile up to 64 px): throughput with `--batch` tiles per device call, latency with one
tile per call (batch 1, the smallest memory footprint). Weights are freshly initialized (speed
does not depend on their values); one strip is run first to compile.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from configs import detector as detector_config
from fabgen.data import tiling
from fabgen.detector import infer
from fabgen.detector.task import DetectorTask

SMALL_ARGS = ["--variants", "tiny", "--strip-width", "1024", "--strips", "1"]


def strip_seconds(fn, strip: np.ndarray, tile: tuple[int, int], overlap: int, batch: int,
                  repeats: int) -> float:
  """Median wall seconds of tiled inference over one strip (after one compile run)."""
  infer.tiled_predict(fn, strip, tile, overlap, batch)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    infer.tiled_predict(fn, strip, tile, overlap, batch)
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variants", default="small,base", help="comma-separated detector sizes")
  parser.add_argument("--strip-width", type=int, default=4096, help="pixels across the web")
  parser.add_argument("--strip-rows", type=int, default=256, help="lines along the web")
  parser.add_argument("--pitch-mm", type=float, default=0.1, help="mm per pixel")
  parser.add_argument("--batch", type=int, default=8, help="tiles per call for throughput")
  parser.add_argument("--strips", type=int, default=2, help="timed strips per setting")
  parser.add_argument("--no-latency", action="store_true", help="skip the batch-1 runs")
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)

  strip = np.random.default_rng(0).integers(90, 160, (args.strip_rows, args.strip_width, 3),
                                            dtype=np.uint8)
  metres = args.strip_rows * args.pitch_mm / 1000.0
  results = {"device": jax.devices()[0].device_kind, "strip": [args.strip_rows, args.strip_width],
             "pitch_mm": args.pitch_mm, "strip_m": metres, "variants": {}}
  for variant in [v for v in args.variants.split(",") if v]:
    config = detector_config.get_config(variant)
    task = DetectorTask(config)
    state = jax.jit(task.init_state)(jax.random.key(0))
    predict = jax.jit(task.predict)
    fn = lambda x, p=predict, s=state: p(s, x)  # noqa: E731
    tile = (config.image_size, config.image_size)
    overlap = min(64, config.image_size // 4)
    padded = infer.pad_to_multiple(strip, 32, *tile)
    tiles = len(tiling.tile_grid(padded.shape[0], padded.shape[1], tile, overlap))
    r = {"tile": list(tile), "overlap": overlap, "tiles_per_strip": tiles}
    s = strip_seconds(fn, strip, tile, overlap, args.batch, args.strips)
    r.update(batch=args.batch, strip_s=s, strips_per_s=1.0 / s,
             m_per_min=metres / s * 60.0, tiles_per_s=tiles / s)
    if not args.no_latency:
      r["latency_batch1_s"] = strip_seconds(fn, strip, tile, overlap, 1, args.strips)
    results["variants"][variant] = r
    print(f"{variant:5s} {tile[0]}px tiles x {tiles}/strip: {r['strips_per_s']:.3f} strips/s "
          f"(batch {args.batch}) = {r['m_per_min']:.2f} m/min at {args.pitch_mm} mm/px, "
          f"{args.strip_rows}-line strips"
          + (f"; latency {r['latency_batch1_s']:.2f} s/strip at batch 1"
             if "latency_batch1_s" in r else ""), flush=True)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
