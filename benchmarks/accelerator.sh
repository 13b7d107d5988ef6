#!/usr/bin/env bash
# Every production training step in bf16 on the accelerator JAX sees; table + JSON in OUT.
#   benchmarks/accelerator.sh [OUT] [--only stage1_64,detector_base] [--steps 10]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench_accel}"; shift || true
exec "${PYTHON:-.venv/bin/python}" -m benchmarks.accelerator --out "$OUT" "$@"
