"""`fabgen compile --topology v5e:2x2` compiles for a TPU slice through libtpu, on any host.

Needs the optional `tpu-compile` extra (libtpu; no TPU): skipped, with the reason, where libtpu
is not importable. The compile runs in a subprocess (the test process's JAX is CPU-only) for the
reference config, and must report 4 TPU v5e devices, memory per device and XLA's FLOPs.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu is not installed (pip install -e '.[tpu-compile]')")
def test_compile_for_a_v5e_topology(tmp_path):
  out = tmp_path / "report.json"
  p = subprocess.run(
      [sys.executable, "-m", "fabgen.cli.main", "compile", "--config", "configs/reference.py:tiny",
       "--topology", "v5e:2x2", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
      timeout=900, env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
                        "TPU_SKIP_MDS_QUERY": "1"})
  assert p.returncode == 0, p.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["devices"] == 4 and report["platform"] == "tpu"
  assert "v5" in report["device_kind"].lower()
  assert report["memory"]["argument_size_in_bytes"] > 0
  assert report["memory"]["generated_code_size_in_bytes"] > 0  # TPU code, unlike XLA:CPU's 0
  assert report["flops_per_device"] > 0
  assert "memory per device" in p.stdout and "GFLOP" in p.stdout
