"""`fabgen train` of configs/stage1.py:tiny through the platform: trains on FabricSim, checkpoints,
resumes, writes sample grids and metrics, and the checkpoint serves `Stage1Generator`.

An `e2e` test (two platform runs with end-of-run KID and conditioning check: about 2.5 minutes of
the 20 that `make test` may take on 2 cores); `make test-e2e` and CI run it."""

import json
import os

import jax
import numpy as np
import pytest

from fabgen.platform import config as config_lib
from fabgen.platform import trainer
from fabgen.stage1.generate import Stage1Generator


def _config(steps, cache):
  return config_lib.get("configs/stage1.py:tiny", [
      f"total_steps={steps}", "resume_allow_changes=total_steps",  # the test extends the run
      "checkpoint.every_steps=2", "log_every_steps=1",
      f"compilation_cache_dir={cache}", "data.max_records=8", "eval.kid_samples=16",
      "eval.num_fabrics=2", "eval.num_draws=2", "checkpoint.asynchronous=False",
      "condition.features_checkpoint="])  # random filters: no texture network to train here


@pytest.mark.e2e
def test_tiny_trains_checkpoints_resumes_and_serves_the_generator(tmp_path):
  wd, cache = str(tmp_path / "run"), str(tmp_path / "xla")
  first = trainer.train(_config(2, cache), wd, devices=jax.devices()[:1])
  assert first["step"] == 2 and np.isfinite(first["d_loss"])
  second = trainer.train(_config(4, cache), wd, devices=jax.devices()[:1])  # resumes at 2
  assert second["step"] == 4 and np.isfinite(second["g_loss"]) and second["r1"] > 0
  for step in (2, 4):  # the run's end writes a grid each time
    assert os.path.getsize(os.path.join(wd, "samples", f"grid_{step:07d}.png")) > 0
  with open(os.path.join(wd, "stage1_condition.json")) as f:
    assert json.load(f)["feature_network"].startswith("vgg19:random(seed=0")
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert any("eval/cond_check" in r for r in rows) and any("eval/kid" in r for r in rows)
  steps_logged = [r["step"] for r in rows if "train/d_loss" in r]
  assert steps_logged == [1, 2, 3, 4]  # no step lost or repeated across the resume

  gen = Stage1Generator.from_checkpoint(wd)
  with open(os.path.join(wd, "config.json")) as f:  # the classes its 8 training records hold
    trained = tuple(json.load(f)["data"]["class_ids"])
  assert gen.patch_size == 16 and gen.class_ids == trained and set(trained) <= set(range(6))
  bg = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  out = gen.generate(bg, np.array([0, 3], np.int32), jax.random.key(0))
  assert out["patch"].shape == (2, 16, 16, 3) and out["mask"].shape == (2, 16, 16)
  step_dir = Stage1Generator.from_checkpoint(os.path.join(wd, "checkpoints", "4"))
  np.testing.assert_allclose(step_dir.generate(bg, np.array([0, 3]), jax.random.key(0))["patch"],
                             out["patch"], atol=1e-6)
