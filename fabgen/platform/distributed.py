"""Multi-process start-up: `jax.distributed.initialize` when the run spans several processes.

One code path for every launcher: under SLURM (srun), on TPU pods (gcloud ... --worker=all) and
with explicit environment variables, `jax.distributed.initialize()` detects the coordinator,
the process count and this process's id. On a single process (a laptop, one GPU node with one
process) nothing is initialised. Must run before anything touches a JAX backend.

Explicit variables (what `launch/local.sh` and the tests set):
  FABGEN_COORDINATOR=host:port  FABGEN_NUM_PROCESSES=N  FABGEN_PROCESS_ID=i
or FABGEN_DISTRIBUTED=1 to let JAX auto-detect the cluster (what `launch/tpu_pod.sh` sets: TPU
VMs describe the slice through their metadata server, not the environment).
"""

from __future__ import annotations

import logging
import os

import jax

_initialized = False


def is_multiprocess_env(environ=None) -> bool:
  """True when the environment describes a run of more than one process."""
  env = os.environ if environ is None else environ
  if env.get("FABGEN_DISTRIBUTED", "0") not in ("", "0"):
    return True
  if int(env.get("FABGEN_NUM_PROCESSES", "1")) > 1:
    return True
  if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in env:
    return True
  if "JAX_COORDINATOR_ADDRESS" in env:
    return True
  # TPU pod slices: several workers listed by the TPU runtime.
  hosts = env.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def initialize(environ=None) -> bool:
  """Initialises jax.distributed if the environment calls for it; returns whether it did."""
  global _initialized
  if _initialized:
    return True
  env = os.environ if environ is None else environ
  if not is_multiprocess_env(env):
    return False
  if "FABGEN_COORDINATOR" in env:
    jax.distributed.initialize(coordinator_address=env["FABGEN_COORDINATOR"],
                               num_processes=int(env["FABGEN_NUM_PROCESSES"]),
                               process_id=int(env["FABGEN_PROCESS_ID"]))
  else:
    jax.distributed.initialize()  # SLURM / TPU / JAX_* variables, detected by JAX
  _initialized = True
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True
