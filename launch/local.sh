#!/usr/bin/env bash
# Train on this machine: one process, or N processes on localhost (multi-process rehearsal of a
# pod run, or one process per GPU).
#
#   launch/local.sh configs/reference.py:tiny /tmp/ref                       # one process
#   launch/local.sh -n 2 configs/reference.py:tiny /tmp/ref2 --config.mesh.fsdp=2
#   CPU_DEVICES=4 launch/local.sh -n 2 configs/reference.py:tiny /tmp/ref3  # 2 x 4 CPU devices
#
# With -n N > 1 every process gets FABGEN_COORDINATOR/NUM_PROCESSES/PROCESS_ID (read by
# fabgen.platform.distributed) and, when GPUs are visible, its own GPU. Extra arguments go to
# `fabgen train`. SIGTERM/SIGINT are forwarded: every process checkpoints and exits.
# FABGEN_DRY_RUN=1 prints each process's command (with its environment) and runs nothing.
set -euo pipefail

NUM=1
if [[ "${1:-}" == "-n" ]]; then NUM="$2"; shift 2; fi
if [[ $# -lt 2 ]]; then
  echo "usage: $0 [-n NUM_PROCESSES] CONFIG[:variant] WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
CONFIG="$1"; WORKDIR="$2"; shift 2
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"

if [[ "$NUM" == 1 ]]; then
  CMD=("$PY" -m fabgen.cli.main train --config "$CONFIG" --workdir "$WORKDIR" "$@")
  if [[ -n "${FABGEN_DRY_RUN:-}" ]]; then printf '%q ' "${CMD[@]}"; echo; exit 0; fi
  exec "${CMD[@]}"
fi

PORT="${PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}"
GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then GPUS="$(nvidia-smi -L | wc -l)"; fi
if [[ -z "${FABGEN_DRY_RUN:-}" ]]; then mkdir -p "$WORKDIR"; fi
PIDS=()
for ((i = 0; i < NUM; i++)); do
  ENV=(FABGEN_COORDINATOR="localhost:$PORT" FABGEN_NUM_PROCESSES="$NUM" FABGEN_PROCESS_ID="$i")
  if [[ "$GPUS" -ge "$NUM" ]]; then
    ENV+=(CUDA_VISIBLE_DEVICES="$i")
  else
    ENV+=(JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=${CPU_DEVICES:-1}")
  fi
  CMD=(env "${ENV[@]}" "$PY" -m fabgen.cli.main train --config "$CONFIG" --workdir "$WORKDIR" "$@")
  if [[ -n "${FABGEN_DRY_RUN:-}" ]]; then printf '%q ' "${CMD[@]}"; echo; continue; fi
  "${CMD[@]}" > >(sed "s/^/[$i] /") 2>&1 &
  PIDS+=($!)
done
if [[ -n "${FABGEN_DRY_RUN:-}" ]]; then exit 0; fi
trap 'kill -TERM "${PIDS[@]}" 2>/dev/null' TERM INT
STATUS=0
for pid in "${PIDS[@]}"; do wait "$pid" || STATUS=$?; done
exit "$STATUS"
