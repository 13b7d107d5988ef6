"""`python -m benchmarks.roofline` turns `fabgen compile --json` reports into the roofline table.

A real report (the reference config compiled for a 2-device mesh) goes through the script: the
per-image FLOPs and bytes are XLA's per-device counts times the devices over the global batch,
and the img/s at 40 % MFU follow from the vendor peaks.
"""

import json

import jax
import pytest

from benchmarks import harness
from benchmarks import roofline
from fabgen.platform import aot
from fabgen.platform import config as config_lib


def test_roofline_from_a_compile_report(tmp_path):
  config = config_lib.get("configs/reference.py:tiny", [])
  report = aot.aot_compile(config, {"data": 2}, devices=jax.devices()[:2],
                           compiler_options=aot.MEMORY_CHECK_OPTIONS)
  (tmp_path / "ref_tiny.json").write_text(json.dumps(report))
  out = tmp_path / "roofline.md"
  assert roofline.main(["--from-json", str(tmp_path / "*.json"), "--out", str(out),
                        "--json", str(tmp_path / "rows.json")]) == 0
  (r,) = json.loads((tmp_path / "rows.json").read_text())
  flops = report["flops_per_device"] * 2 / config.batch_size
  assert r["gflop_per_image"] == pytest.approx(flops / 1e9)
  assert r["flop_per_byte"] == pytest.approx(
      report["flops_per_device"] / report["bytes_accessed_per_device"])
  assert r["img_s_H100"] == pytest.approx(0.4 * harness.PEAK_FLOPS["H100"] / flops)
  assert r["img_s_H200"] >= r["img_s_H100"] > r["img_s_TPU v5e"] > 0
  assert "| ref_tiny |" in out.read_text()


def test_roofline_says_which_report_is_unusable(tmp_path):
  (tmp_path / "old.json").write_text(json.dumps({"task": "x", "devices": 1}))
  with pytest.raises(SystemExit, match="old.json"):
    roofline.main(["--from-json", str(tmp_path / "*.json")])
