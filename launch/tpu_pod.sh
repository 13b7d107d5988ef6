#!/usr/bin/env bash
# Train on every worker of a Cloud TPU pod slice at once.
#
#   REPO=<git url> TPU=my-v5e-32 ZONE=us-west4-a launch/tpu_pod.sh setup   # clone + venv, once
#   TPU=my-v5e-32 ZONE=us-west4-a launch/tpu_pod.sh train configs/fusion.py:128 gs://b/runs/f128 \
#       --config.mesh.fsdp=4
#   TPU=my-v5e-32 ZONE=us-west4-a launch/tpu_pod.sh stop                   # SIGTERM: checkpoint
#
# `gcloud compute tpus tpu-vm ssh --worker=all` runs the same command on every host;
# FABGEN_DISTRIBUTED=1 makes each call jax.distributed.initialize(), which learns the slice from
# the TPU metadata server. The workdir must be shared (a gs:// bucket; orbax writes it directly).
# Check memory first, without the pod: fabgen compile --config ... --mesh data=8,fsdp=4
# Dry run (prints every gcloud command it would run, runs nothing; no gcloud needed):
#   FABGEN_DRY_RUN=1 TPU=my-v5e-32 ZONE=us-west4-a launch/tpu_pod.sh train configs/fusion.py:64 DIR
set -euo pipefail

: "${TPU:?set TPU=<tpu name>}"
: "${ZONE:?set ZONE=<zone>}"
PROJECT_FLAG=()
if [[ -n "${PROJECT:-}" ]]; then PROJECT_FLAG=(--project "$PROJECT"); fi
DIR="${REMOTE_DIR:-fabgen}"

on_all() {
  local cmd=(gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" "${PROJECT_FLAG[@]}"
             --worker=all --command "$1")
  if [[ -n "${FABGEN_DRY_RUN:-}" ]]; then
    printf '%q ' "${cmd[@]}"; echo
    return 0
  fi
  "${cmd[@]}"
}

quote() { printf '%q ' "$@"; }

case "${1:-}" in
  setup)
    : "${REPO:?set REPO=<git URL of your fabgen repository>}"
    on_all "set -e; [ -d $DIR ] || git clone $REPO $DIR; cd $DIR && git pull --ff-only && \
      python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]' \
      -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
    ;;
  train)
    shift
    if [[ $# -lt 2 ]]; then echo "usage: $0 train CONFIG WORKDIR [--config.k=v ...]" >&2; exit 2; fi
    CONFIG="$1"; WORKDIR="$2"; shift 2
    ARGS="$(quote "$@")"
    # nohup + a log per worker: the run survives the ssh session; `stop` signals it.
    on_all "cd $DIR && FABGEN_DISTRIBUTED=1 nohup .venv/bin/python -m fabgen.cli.main train \
      --config $(quote "$CONFIG") --workdir $(quote "$WORKDIR") $ARGS \
      > fabgen-train.log 2>&1 & echo \$! > fabgen-train.pid"
    ;;
  stop)
    on_all "cd $DIR && kill -TERM \$(cat fabgen-train.pid)"
    ;;
  logs)
    on_all "tail -n 20 $DIR/fabgen-train.log"
    ;;
  *)
    echo "usage: $0 setup | train CONFIG WORKDIR [overrides] | stop | logs" >&2
    exit 2
    ;;
esac
