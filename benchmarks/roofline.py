"""Roofline table per production model from XLA's cost analysis of its compiled train step.

  python -m benchmarks.roofline --out benchmarks/roofline.md               # compiles each model
  python -m benchmarks.roofline --from-json 'runs/compile/*.json' --out benchmarks/roofline.md

For each model: FLOPs per image and bytes accessed per image (`compiled.cost_analysis()` of the
whole train step, summed over the mesh's devices and divided by the global batch), their ratio
(arithmetic intensity, FLOP/byte), and the images/s a device would reach at 40 % of its dense
bf16 peak (`harness.PEAK_FLOPS`: H100, H200, TPU v5e), with the FLOP/byte ridge of each device
(its peak over its HBM bandwidth) so a step below the ridge reads as memory-bound. The compile
is the `fabgen compile` one (`aot.aot_compile`, abstract shapes only, XLA:CPU at -O0: the same
cost analysis), so this runs on any host; `--from-json` reads reports `fabgen compile --json`
wrote instead of compiling again. FLOPs are XLA's count of the program (backward and R1/R2
included, not an analytic estimate); bytes are XLA:CPU's fusion decisions, an accelerator's
fuse differently, so the bytes column is indicative.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any, Sequence

from benchmarks import harness

# Production configs (the accelerator benchmark's set).
MODELS = {
    "stage1_64": "configs/stage1.py:64",
    "stage1_128": "configs/stage1.py:128",
    "fusion_64": "configs/fusion.py:64",
    "fusion_128": "configs/fusion.py:128",
    "inpainter_64": "configs/inpainter.py:64",
    "detector_base": "configs/detector.py:base",
    "diffusion_64": "configs/diffusion.py:64",
    "dgt_64": "configs/dgt.py:64",
}
# HBM bandwidth, bytes/s (vendor data sheets): the ridge point is peak FLOP/s over this.
HBM_BYTES_PER_S = {"H100": 3.35e12, "H200": 4.8e12, "TPU v5e": 0.819e12}
MFU = 0.4


def row(label: str, report: dict[str, Any]) -> dict[str, Any]:
  """Per-image figures of one `aot_compile` / `fabgen compile --json` report."""
  devices, batch = report["devices"], report["global_batch"]
  flops = report["flops_per_device"] * devices / batch
  bytes_ = report["bytes_accessed_per_device"] * devices / batch
  out = {"label": label, "task": report["task"], "global_batch": batch,
         "mesh": report["mesh"], "gflop_per_image": flops / 1e9,
         "mb_per_image": bytes_ / 1e6, "flop_per_byte": flops / bytes_}
  for device, bandwidth in HBM_BYTES_PER_S.items():
    out[f"img_s_{device}"] = MFU * harness.PEAK_FLOPS[device] / flops
    out[f"img_s_hbm_{device}"] = bandwidth / bytes_  # if every accessed byte crossed HBM once
  return out


def compile_report(spec: str, dtype: str) -> dict[str, Any]:
  from fabgen.platform import aot  # pylint: disable=g-import-not-at-top
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  config = config_lib.get(spec, [f"precision.compute_dtype={dtype}"])
  return aot.aot_compile(config, {"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1],
                         compiler_options=aot.MEMORY_CHECK_OPTIONS)


def markdown(rows: Sequence[dict[str, Any]], source: str) -> str:
  ridge = ", ".join(f"{d} {harness.PEAK_FLOPS[d] / b:.0f}" for d, b in HBM_BYTES_PER_S.items())
  lines = [f"Roofline of the production train steps ({source}). Each device column: img/s at "
           f"{MFU:.0%} MFU of the dense bf16 peak, and in brackets the img/s at which the bytes "
           f"accessed would saturate HBM bandwidth; a step whose FLOP/byte is below the device's "
           f"ridge point ({ridge}) is bandwidth-bound unless fusion keeps its "
           f"intermediates on chip.", "",
           "| model | batch | GFLOP/image | MB/image | FLOP/byte | H100 img/s | H200 img/s "
           "| TPU v5e img/s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    cells = " | ".join(f"{r[f'img_s_{d}']:.0f} ({r[f'img_s_hbm_{d}']:.0f})"
                       for d in HBM_BYTES_PER_S)
    lines.append(f"| {r['label']} | {r['global_batch']} | {r['gflop_per_image']:.2f} "
                 f"| {r['mb_per_image']:.1f} | {r['flop_per_byte']:.1f} | {cells} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--from-json", default="",
                      help="glob of `fabgen compile --json` reports (label = file name)")
  parser.add_argument("--only", default="", help=f"comma-separated labels of {list(MODELS)}")
  parser.add_argument("--dtype", default="bfloat16", help="precision.compute_dtype to compile")
  parser.add_argument("--out", default="", help="write the markdown table here")
  parser.add_argument("--json", default="", help="write the rows here")
  args = parser.parse_args(argv)
  rows = []
  if args.from_json:
    order = {label: i for i, label in enumerate(MODELS)}
    paths = sorted(glob.glob(args.from_json), key=lambda p: (
        order.get(os.path.splitext(os.path.basename(p))[0], len(order)), p))
    if not paths:
      raise SystemExit(f"benchmarks.roofline: no report matches {args.from_json!r}")
    for path in paths:
      with open(path, encoding="utf-8") as f:
        report = json.load(f)
      if report.get("flops_per_device") is None or report.get("global_batch") is None:
        raise SystemExit(f"benchmarks.roofline: {path} has no flops_per_device/global_batch "
                         f"(written by an older fabgen compile?)")
      rows.append(row(os.path.splitext(os.path.basename(path))[0], report))
    names = ", ".join(os.path.basename(p) for p in paths)
    source = f"from the JSON reports of fabgen compile: {names}"
  else:
    labels = [l for l in args.only.split(",") if l] or list(MODELS)
    for label in labels:
      if label not in MODELS:
        raise SystemExit(f"benchmarks.roofline: unknown model {label!r}; known: {list(MODELS)}")
      rows.append(row(label, compile_report(MODELS[label], args.dtype)))
      print(f"{label}: {rows[-1]['gflop_per_image']:.2f} GFLOP/image", flush=True)
    source = f"compiled on one {args.dtype} XLA:CPU device by `python -m benchmarks.roofline`"
  table = markdown(rows, source)
  print(table)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(table)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=2)
  return 0


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  sys.exit(main())
