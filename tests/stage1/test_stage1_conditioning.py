"""The conditioning check on a trained model, not only on hand-built generators.

`configs/stage1.py:tiny` trained for its default 150 steps through the platform must generate
patches whose Gram texture is closer to the fabric it was conditioned on than to another fabric
(0.5 = chance; a generator that ignores its condition scores exactly that, see
`test_stage1_eval`). Its default condition is the texture network fabgen trains on FabricSim
(`configs/texture.py:tiny`, trained here into a fresh cache first). Measured on 2 shared CPU
cores over 256 cross-fabric pairs, same generator config: 0.961 with the trained features,
0.770 with fixed random filters (`texture=random`; 0.63 before the R3GAN-faithful layers).
The bar 0.75 keeps a margin of 0.2 below the trained figure. An `e2e` test (texture network
about 1 min, 150 stage-1 steps, FabricSim and VGG-evaluation compiles: 3-5 min on 2 cores).
"""

import json
import os

import jax
import pytest

from fabgen.platform import config as config_lib
from fabgen.platform import trainer


@pytest.mark.e2e
def test_tiny_trained_generator_follows_its_condition(tmp_path, monkeypatch):
  monkeypatch.setenv("FABGEN_CACHE", str(tmp_path / "cache"))
  config = config_lib.get("configs/stage1.py:tiny", ["checkpoint.asynchronous=False"])
  assert config.condition.features_checkpoint == "train:configs/texture.py:tiny"
  workdir = str(tmp_path / "run")
  assert trainer.train(config, workdir, devices=jax.devices()[:1])["step"] == 150
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    checks = [row["eval/cond_check"] for row in map(json.loads, f) if "eval/cond_check" in row]
  assert checks, "the run logged no eval/cond_check"
  # chance is 0.5; 256 pairs. Margin: measured 0.961 with the trained texture features (0.770
  # with random filters), so the 0.75 bar sits 0.21 below the measured value, about 7 standard
  # errors of a 256-pair proportion (0.03): it holds on another CPU's trajectory.
  assert checks[-1] >= 0.75, checks
  with open(os.path.join(workdir, "stage1_condition.json")) as f:
    assert json.load(f)["feature_network"].startswith("texture:")
