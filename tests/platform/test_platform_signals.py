"""SIGTERM mid-run: `fabgen train` checkpoints and exits 0; resuming ends where an uninterrupted run
ends. The signalled run is a real subprocess (the CLI), the reference runs are in-process."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import reference
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import config as config_lib
from fabgen.platform import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 200
OVERRIDES = ["checkpoint.every_steps=1000", "log_every_steps=1", "summary_every_steps=0"]


def _config():
  c = reference.get_config(f"tiny,steps={STEPS}")
  config_lib.apply_overrides(c, OVERRIDES)
  return c


def _last_step(path):
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    steps = [json.loads(l)["step"] for l in f if l.strip()]
  return max(steps, default=0)


def test_sigterm_checkpoints_and_resume_matches_uninterrupted(tmp_path):
  workdir = str(tmp_path / "signalled")
  cmd = [sys.executable, "-m", "fabgen.cli.main", "train", "--config",
         f"configs/reference.py:tiny,steps={STEPS}", "--workdir", workdir]
  cmd += [f"--config.{o}" for o in OVERRIDES]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 240
  while _last_step(os.path.join(workdir, "metrics.jsonl")) < 5:
    assert proc.poll() is None, proc.communicate()
    assert time.time() < deadline, "the training subprocess did not start stepping"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-3000:]
  result = json.loads(out.strip().splitlines()[-1])
  assert result["stopped_by"] == "SIGTERM"
  stopped = result["step"]
  assert 5 <= stopped < STEPS, result
  ckpt = checkpoint_lib.Checkpointer(workdir, 1000, 3, asynchronous=False)
  assert ckpt.latest_step() == stopped
  ckpt.close()

  resumed = trainer.train(_config(), workdir)
  uninterrupted = trainer.train(_config(), str(tmp_path / "uninterrupted"))
  assert resumed["step"] == uninterrupted["step"] == STEPS
  np.testing.assert_allclose(resumed["loss"], uninterrupted["loss"], rtol=1e-5)
  a = checkpoint_lib.restore(workdir)[2]
  b = checkpoint_lib.restore(str(tmp_path / "uninterrupted"))[2]
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
               jax.device_get(a), jax.device_get(b))
