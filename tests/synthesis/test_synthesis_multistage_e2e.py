"""Multistage end to end: a REAL tiny stage-1 workdir + a REAL tiny fusion workdir, both trained by
the platform trainer, then `fabgen synthesize --method multistage` on FabricSim backgrounds; the
output loads back through `open_source` with boxes equal to the mask's component rectangles and
masks equal to the pixels that differ from the background.

An `e2e` test (`make test-e2e`, run by CI): it compiles three programs (stage-1 step, fusion step,
synthesis) and takes 80-150 s on 2 cores, over the default run's budget.
"""

import json
import os

import jax
import numpy as np
import pytest

from configs import fusion as fusion_config
from configs import stage1 as stage1_config
from fabgen.cli import main as cli_main
from fabgen.data import labels
from fabgen.data.readers import open_source
from fabgen.platform import config as config_lib
from fabgen.platform import trainer
from fabgen.synthesis import backgrounds as backgrounds_lib


def _train(module, arg, workdir):
  config = module.get_config(arg)
  config.checkpoint.asynchronous = False
  config_lib.validate(config)
  config.lock()
  return trainer.train(config, workdir, devices=jax.devices()[:1])


@pytest.mark.e2e
def test_multistage_from_real_checkpoints_reads_back_exact(tmp_path):
  stage1_dir, fusion_dir = str(tmp_path / "stage1"), str(tmp_path / "fusion")
  assert _train(stage1_config, "tiny,steps=2,batch=4", stage1_dir)["step"] == 2
  assert _train(fusion_config, "tiny,steps=2,batch=4", fusion_dir)["step"] == 2

  out = str(tmp_path / "synth")
  backgrounds = "fabricsim:tiny:target_good"
  rc = cli_main.main(["synthesize", "--method", "multistage", "--checkpoint",
                      f"{stage1_dir},{fusion_dir}", "--backgrounds", backgrounds, "--num", "8",
                      "--batch-size", "8", "--out", out])
  assert rc == 0
  manifest = json.load(open(os.path.join(out, "manifest.json")))
  assert manifest["complete"] and manifest["images"] == 8

  bgs = backgrounds_lib.open_backgrounds(backgrounds)
  src = open_source(out)
  assert len(src) == 8
  painted = 0
  for i in range(8):
    rec = src[i]
    mask = np.asarray(rec["instance_mask"])
    diff = np.abs(rec["image"].astype(int) - bgs[i % len(bgs)].astype(int)).max(-1)
    np.testing.assert_array_equal(mask > 0, diff > manifest["tau"], err_msg=f"sample {i}")
    want = labels.component_boxes_np(mask)
    np.testing.assert_array_equal(rec["boxes"], want.boxes, err_msg=f"sample {i}")
    np.testing.assert_array_equal(rec["box_instance"], want.box_instance)
    if (np.asarray(rec["box_instance"]) > 0).any():  # a labelled defect is a painted one
      assert (diff > manifest["tau"]).sum() > 0, f"sample {i} has a box but no changed pixel"
      painted += 1
  # mask == changed pixels holds trivially for a generator that paints nothing: a defect must
  # have been painted somewhere.
  assert painted >= 1, "no sample received a painted defect"
