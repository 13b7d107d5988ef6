"""`python -m benchmarks.bench_r3gan_compare --tiny`: the side-by-side benchmark's plumbing.

The real comparison (batch 16, 64x64) takes minutes per step on 2 cores; `--tiny` shrinks both
sides to the same 3-stage, 16x16 networks so the benchmark itself runs in the suite. With a
Python that has torch (`$FABGEN_TORCH_PYTHON`), the PyTorch worker runs too and must build
networks with exactly fabgen's parameter counts and the same intra-op thread count.
"""

import json
import os

import jax
import numpy as np
import pytest

from benchmarks import bench_r3gan_compare as bench
from fabgen.stage1 import model as model_lib

TORCH_PYTHON = os.environ.get("FABGEN_TORCH_PYTHON", "")
# ~30 CPU-s (the compile of the tiny step with its R1/R2 double backward): over the default
# suite's 10 s allowance for a benchmark test, so it runs with the e2e tests.
pytestmark = pytest.mark.e2e


def _param_count(net) -> int:
  shapes = jax.eval_shape(net.init, jax.random.key(0))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def test_tiny_compare_times_fabgen_and_writes_its_json(tmp_path):
  out = tmp_path / "compare.json"
  result = bench.main(["--tiny", "--batch", "2", "--repeats", "2", "--json", str(out),
                       "--torch-python", ""])  # fabgen alone, whatever $FABGEN_TORCH_PYTHON says
  fab = result["fabgen"]
  assert result["tiny"] and "reference" not in result  # no torch given: fabgen alone
  assert len(fab["runs"]) == 2 and all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in fab["runs"])
  assert fab["img_per_s"] == pytest.approx(2 / fab["s_per_step"])
  assert fab["flops_per_step"] > 0 and fab["temp_bytes"] > 0
  assert json.loads(out.read_text())["fabgen"]["s_per_step"] == fab["s_per_step"]


@pytest.mark.skipif(not TORCH_PYTHON, reason="set FABGEN_TORCH_PYTHON to a Python with torch")
def test_tiny_compare_runs_the_same_architecture_in_torch():
  result = bench.main(["--tiny", "--batch", "2", "--repeats", "1",
                       "--torch-python", TORCH_PYTHON])
  ref = result["reference"]
  g, d = model_lib.networks(bench.compare_config(2, tiny=True).model, 8)
  assert (ref["g_params"], ref["d_params"]) == (_param_count(g), _param_count(d))
  assert ref["threads"] == result["fabgen"]["xla_cpu_threads"]
  assert ref["img_per_s"] > 0 and result["ratio_wall"] > 0
