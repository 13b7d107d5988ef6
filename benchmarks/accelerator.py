"""One command for an accelerator: every production training step in bf16, one table.

  python -m benchmarks.accelerator --out bench_accel            # GPU/TPU: at most 8 min
  benchmarks/accelerator.sh                                     # the same, output in bench_accel/
  python -m benchmarks.accelerator --tiny --out /tmp/acc        # CPU smoke run (tiny variants)

On whatever JAX sees, each model in `MODELS` (stage 1 at 64 and 128, fusion, inpainter, detector
base, the diffusion U-Net, DGT) trains for a few timed steps through `benchmarks.harness` (the
platform's mesh, shardings and donated jitted step) with `precision.compute_dtype=bfloat16`, on a
synthetic batch built from the task's `abstract_batch()` (no data is read or rendered, so the
figure is compute). Each model runs in its own subprocess with a time limit (and the whole run
within `--budget-s`, 480 s), so one that fails, runs out of memory or hangs is reported and the
next one runs; a separate process also makes
the device's `peak_bytes_in_use` that model's own peak. Writes `accelerator.json` and
`accelerator.md` (images/s, step time, XLA FLOPs per step, MFU against the vendor's dense bf16
peak of `harness.PEAK_FLOPS`, or the measured matmul peak on a CPU, peak memory).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

import numpy as np

# label -> (config spec, the tiny spec --tiny runs instead). Production variants as the README's
# model sections name them; batch sizes are the configs' own.
MODELS = {
    "stage1_64": ("configs/stage1.py:64", "configs/stage1.py:tiny"),
    "stage1_128": ("configs/stage1.py:128", "configs/stage1.py:tiny,batch=4"),
    "fusion_64": ("configs/fusion.py:64", "configs/fusion.py:tiny"),
    "inpainter_64": ("configs/inpainter.py:64", "configs/inpainter.py:tiny"),
    "detector_base": ("configs/detector.py:base", "configs/detector.py:tiny"),
    "diffusion_64": ("configs/diffusion.py:64", "configs/diffusion.py:tiny"),
    "dgt_64": ("configs/dgt.py:64", "configs/dgt.py:tiny"),
}


def synthetic_batch(spec, seed: int = 0) -> dict[str, np.ndarray]:
  """A plausible batch for `spec` (name -> ShapeDtypeStruct), following fabgen's batch layouts.

  uint8 images random; [B,H,W] masks (float or instance ids) a centred rectangle; [B] ids 0;
  [B,N] per-instance ids 0 then -1 padding; [B,N,4] boxes the rectangle then zero padding;
  other floats uniform in [0, 1).
  """
  rng = np.random.default_rng(seed)
  out = {}
  for key, s in spec.items():
    shape, dtype = tuple(s.shape), np.dtype(s.dtype)
    if dtype == np.uint8:
      out[key] = rng.integers(0, 256, shape, dtype=np.uint8)
    elif len(shape) == 3 and shape[1] == shape[2] and shape[1] > 4:  # [B, H, W] mask
      h = shape[1]
      mask = np.zeros(shape, dtype)
      mask[:, h // 4: 3 * h // 4, h // 4: 3 * h // 4] = 1
      out[key] = mask
    elif np.issubdtype(dtype, np.integer):
      value = np.zeros(shape, dtype)
      if len(shape) == 2:
        value[:, 1:] = -1  # one instance / box per image, the rest padding
      out[key] = value
    elif len(shape) == 3 and shape[-1] == 4:  # boxes (x0, y0, x1, y1) pixels
      side = max(spec[k].shape[1] for k in spec if len(spec[k].shape) >= 3)
      boxes = np.zeros(shape, dtype)
      boxes[:, 0] = (side / 4, side / 4, 3 * side / 4, 3 * side / 4)
      out[key] = boxes
    else:
      out[key] = rng.random(shape).astype(dtype)
  return out


def peak_memory_bytes() -> int | None:
  """The first device's `peak_bytes_in_use` (None where the backend keeps no statistics)."""
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.devices()[0].memory_stats()
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def bench_one(label: str, spec: str, *, steps: int, warmup: int, dtype: str,
              overrides: Sequence[str] = ()) -> dict[str, Any]:
  """Times one model's train step in this process; returns the harness's result, annotated."""
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import registry  # pylint: disable=g-import-not-at-top
  config = config_lib.get(spec, [f"precision.compute_dtype={dtype}", *overrides])
  task = registry.build_task(config)
  batch = synthetic_batch(task.abstract_batch(), config.seed)
  result = harness.benchmark_task(config, steps=steps, warmup=warmup, batch=batch, task=task,
                                  label=label, quiet=True)
  result.update(config=spec, dtype=dtype, peak_memory_bytes=peak_memory_bytes(), status="ok")
  return result


def _child(argv: Sequence[str]) -> int:
  """`--child LABEL SPEC`: one model, its result as JSON on the last stdout line."""
  parser = argparse.ArgumentParser()
  parser.add_argument("label")
  parser.add_argument("spec")
  parser.add_argument("--steps", type=int)
  parser.add_argument("--warmup", type=int)
  parser.add_argument("--dtype")
  parser.add_argument("--override", action="append", default=[])
  a = parser.parse_args(argv)
  result = bench_one(a.label, a.spec, steps=a.steps, warmup=a.warmup, dtype=a.dtype,
                     overrides=a.override)
  print("RESULT " + json.dumps(result))
  return 0


def run_model(label: str, spec: str, *, steps: int, warmup: int, dtype: str, timeout_s: float,
              overrides: Sequence[str] = ()) -> dict[str, Any]:
  """One model in a subprocess; a failure, a crash or the time limit becomes a reported row."""
  cmd = [sys.executable, "-m", "benchmarks.accelerator", "--child", label, spec,
         "--steps", str(steps), "--warmup", str(warmup), "--dtype", dtype]
  for o in overrides:
    cmd += ["--override", o]
  t = time.perf_counter()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
  try:
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s, env=env)
  except subprocess.TimeoutExpired:
    return {"label": label, "config": spec, "status": f"timeout after {timeout_s:.0f}s",
            "wall_s": time.perf_counter() - t}
  lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
  if p.returncode or not lines:
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"]
    return {"label": label, "config": spec, "status": f"failed: {tail[0][:300]}",
            "wall_s": time.perf_counter() - t}
  result = json.loads(lines[-1][len("RESULT "):])
  result["wall_s"] = time.perf_counter() - t
  return result


def _fmt(value, spec: str, scale: float = 1.0) -> str:
  return "-" if value is None else format(value * scale, spec)


def markdown(results: Sequence[dict], header: str) -> str:
  """The table the README shows."""
  lines = [header, "",
           "| model | config | batch | step ms | img/s | GFLOP/step | MFU | peak GiB | compile s "
           "| status |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
  for r in results:
    mfu = r.get("mfu")
    lines.append(
        f"| {r['label']} | `{r['config']}` | {r.get('batch_size', '-')} "
        f"| {_fmt(r.get('step_ms'), '.1f')} | {_fmt(r.get('images_per_s'), '.1f')} "
        f"| {_fmt(r.get('flops_per_step'), '.1f', 1e-9)} "
        f"| {_fmt(mfu, '.1f', 100) + (' %' if mfu is not None else '')} "
        f"| {_fmt(r.get('peak_memory_bytes'), '.2f', 2 ** -30)} "
        f"| {_fmt(r.get('compile_s'), '.1f')} | {r['status']} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["--child"]:
    return _child(argv[1:])
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="bench_accel", help="directory for the JSON and table")
  parser.add_argument("--tiny", action="store_true", help="tiny variants (a CPU smoke run)")
  parser.add_argument("--only", default="",
                      help=f"comma-separated labels of {list(MODELS)}, or label=config spec")
  parser.add_argument("--steps", type=int, default=None, help="timed steps (10; tiny: 2)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--dtype", default="bfloat16", help="precision.compute_dtype")
  parser.add_argument("--timeout-s", type=float, default=None,
                      help="per model (150; tiny: 300)")
  parser.add_argument("--budget-s", type=float, default=480.0,
                      help="the whole run; a model that would start past it is reported skipped")
  args = parser.parse_args(argv)
  models = dict(MODELS)
  labels = []
  for entry in filter(None, args.only.split(",")):
    label, _, spec = entry.partition("=")
    if spec:  # `label=configs/x.py:variant`: any other config, tiny or not
      models[label] = (spec, spec)
    elif label not in models:
      raise SystemExit(f"benchmarks.accelerator: unknown model {label!r}; known: {list(MODELS)} "
                       f"(or label=configs/x.py:variant)")
    labels.append(label)
  labels = labels or list(MODELS)
  steps = args.steps or (2 if args.tiny else 10)
  warmup = 1 if args.tiny and args.warmup == 2 else args.warmup
  timeout_s = args.timeout_s or (300.0 if args.tiny else 150.0)
  # This process never initialises JAX: a GPU's memory (preallocated) and a TPU (one process
  # at a time) belong to the model subprocesses; the device is read from their results.
  started = time.perf_counter()
  results = []
  for label in labels:
    spec = models[label][1 if args.tiny else 0]
    left = args.budget_s - (time.perf_counter() - started)
    if left < 10:
      results.append({"label": label, "config": spec, "wall_s": 0.0,
                      "status": f"skipped: the {args.budget_s:.0f}s budget is spent"})
      continue
    r = run_model(label, spec, steps=steps, warmup=warmup, dtype=args.dtype,
                  timeout_s=min(timeout_s, left))
    results.append(r)
    print(f"{label:<14} {r['status']:<10.60} step {_fmt(r.get('step_ms'), '.1f')} ms  "
          f"{_fmt(r.get('images_per_s'), '.1f')} img/s  {r['wall_s']:.0f}s", flush=True)
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  ran = [r for r in results if r["status"] == "ok"]
  kind = ran[0]["device_kind"] if ran else "unknown"
  platform = ran[0]["platform"] if ran else "unknown"
  count = ran[0]["devices"] if ran else 0
  summary = {"date": when, "device_kind": kind, "platform": platform,
             "device_count": count, "dtype": args.dtype, "tiny": args.tiny,
             "steps": steps, "warmup": warmup, "total_s": time.perf_counter() - started,
             "results": results}
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "accelerator.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  header = (f"Measured {when} on {count} x {kind} ({platform}), {args.dtype}, {steps} timed "
            f"steps after {warmup} "
            f"warm-up{' (tiny variants)' if args.tiny else ''}; whole run "
            f"{summary['total_s']:.0f} s.")
  table = markdown(results, header)
  with open(os.path.join(args.out, "accelerator.md"), "w", encoding="utf-8") as f:
    f.write(table)
  print(table)
  return 0


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  sys.exit(main())
