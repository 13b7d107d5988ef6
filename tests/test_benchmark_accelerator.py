"""`python -m benchmarks.accelerator` writes its JSON and table and survives a failing model.

Default test: the platform's reference config (seconds to compile) next to a config that does
not exist: the reference row is measured (positive step time, XLA FLOPs, MFU against the CPU's
measured peak), the broken row says it failed, and both are in accelerator.json/.md. The e2e
test runs one production model's tiny variant in bf16 the same way.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import accelerator
from fabgen.platform import config as config_lib
from fabgen.platform import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, *args):
  out = tmp_path / "acc"
  p = subprocess.run([sys.executable, "-m", "benchmarks.accelerator", "--tiny", "--out", str(out),
                      *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                     env={**os.environ, "PYTHONPATH": ROOT})
  assert p.returncode == 0, p.stderr[-3000:]
  with open(out / "accelerator.json", encoding="utf-8") as f:
    summary = json.load(f)
  table = (out / "accelerator.md").read_text()
  return summary, table


def test_accelerator_reports_each_model_and_goes_on_after_a_failure(tmp_path):
  summary, table = _run(tmp_path, "--only", "ref=configs/reference.py:tiny,"
                        "broken=configs/no_such_model.py:tiny", "--steps", "2")
  rows = {r["label"]: r for r in summary["results"]}
  assert rows["ref"]["status"] == "ok"
  assert rows["ref"]["step_ms"] > 0 and rows["ref"]["flops_per_step"] > 0
  assert 0 < rows["ref"]["mfu"] < 1.5  # against the measured CPU matmul peak
  assert rows["ref"]["dtype"] == "bfloat16" and rows["ref"]["platform"] == "cpu"
  broken = rows["broken"]["status"]
  assert broken.startswith("failed") and "no_such_model" in broken
  assert "| ref |" in table and "| broken |" in table and summary["device_kind"] == "cpu"


def test_synthetic_batch_follows_the_abstract_batch():
  config = config_lib.get("configs/detector.py:tiny", [])
  spec = registry.build_task(config).abstract_batch()
  batch = accelerator.synthetic_batch(spec)
  for key, s in spec.items():
    assert batch[key].shape == s.shape and batch[key].dtype == s.dtype, key
  assert set(np.unique(batch["instance_mask"])) == {0, 1}
  assert (batch["instance_class"][:, 0] == 0).all() and (batch["instance_class"][:, 1:] == -1).all()
  x0, y0, x1, y1 = batch["boxes"][0, 0]
  assert x1 > x0 and y1 > y0 and (batch["boxes"][:, 1:] == 0).all()


@pytest.mark.e2e
def test_accelerator_tiny_production_model(tmp_path):
  # The per-model limit is generous: this checks the run, not the speed of a shared CI host.
  summary, _ = _run(tmp_path, "--only", "detector_base", "--steps", "2", "--timeout-s", "850",
                    "--budget-s", "900")
  (row,) = summary["results"]
  assert row["status"] == "ok", row["status"]
  assert row["config"] == "configs/detector.py:tiny" and row["images_per_s"] > 0
