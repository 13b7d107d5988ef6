"""Two JAX processes on localhost (2 CPU devices each) train exactly as one process on 4 devices.

Each process runs `fabgen train` with FABGEN_COORDINATOR/NUM_PROCESSES/PROCESS_ID set (what
`launch/local.sh` does), feeds its half of every global batch, and they share one workdir.
"""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import reference
from fabgen.platform import config as config_lib
from fabgen.platform import metrics as metrics_lib
from fabgen.platform import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OVERRIDES = ["checkpoint.every_steps=3", "log_every_steps=1", "summary_every_steps=0",
             "checkpoint.asynchronous=false"]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _losses(workdir):
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.mark.multiprocess
def test_two_processes_agree_with_one(tmp_path):
  workdir = str(tmp_path / "two")
  port = _free_port()
  procs = []
  for i in range(2):
    env = dict(os.environ, FABGEN_COORDINATOR=f"localhost:{port}", FABGEN_NUM_PROCESSES="2",
               FABGEN_PROCESS_ID=str(i), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    cmd = [sys.executable, "-m", "fabgen.cli.main", "train", "--config",
           "configs/reference.py:tiny,steps=6", "--workdir", workdir]
    cmd += [f"--config.{o}" for o in OVERRIDES]
    cmd += ["--config.mesh.fsdp=2"]
    procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-4000:]

  config = reference.get_config("tiny,steps=6")
  config_lib.apply_overrides(config, OVERRIDES + ["mesh.fsdp=2"])
  one = str(tmp_path / "one")
  trainer.train(config, one, devices=jax.devices()[:4])
  two_losses, one_losses = _losses(workdir), _losses(one)
  assert sorted(two_losses) == list(range(1, 7))
  np.testing.assert_allclose([two_losses[s] for s in range(1, 7)],
                             [one_losses[s] for s in range(1, 7)], rtol=1e-5, atol=1e-6)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[:2] == ["3", "6"]

  # The 2-process checkpoint (4 devices, fsdp=2) continues in this one process on 1 device: the
  # weights reshard; the per-process input position cannot carry over, so the input restarts.
  config = reference.get_config("tiny,steps=8")
  # A longer schedule than the checkpoint's is a deliberate change: allowed by name.
  config_lib.apply_overrides(config, OVERRIDES + ["resume_allow_changes=total_steps"])
  result = trainer.train(config, workdir, devices=jax.devices()[:1])
  assert result["step"] == 8 and np.isfinite(result["loss"])
  assert sorted(_losses(workdir)) == list(range(1, 9))
