"""The real protocol end to end on the smallest configs (FabricSim tiny, a 1-layer detector).

Every stage runs through the real code paths (platform trainer, `fabgen.synthesis`, tiled
evaluation, pictures) for a couple of steps; what is checked is the plumbing between them, which
no stubbed test can: the synthetic set is a readable labelled source on the target fabric, the
fine-tune starts from the source detector's weights, every row of the table is a real evaluation
of the same target images, and a rerun resumes without redoing anything.
"""

import json
import os

import numpy as np
import pytest

from fabgen.adapt import platform_backend
from fabgen.adapt import protocol
from fabgen.platform import config as config_lib

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def smallest_config():
  """configs/adapt.py:demo shrunk to FabricSim tiny and a few steps per stage."""
  c = config_lib.load_config(os.path.join(ROOT, "configs", "adapt.py:demo"))
  c.preset = "tiny"
  c.methods = ("cutpaste", "multistage", "inpainter")  # every row of the table
  quick = ["checkpoint.every_steps=100", "log_every_steps=1", "checkpoint.asynchronous=False"]
  for name in ("stage1", "fusion", "inpainter"):  # 2 steps each: the plumbing, not the quality
    c.generators[name].overrides = (["total_steps=2", "batch_size=8", "summary_every_steps=-1"]
                                    + quick)
  c.detector.spec = "configs/detector.py:tiny"
  # Fine-tuning with lr_factor 1 for as many steps (warmup 1 = what finetune_config picks) makes
  # the fine-tune the very program the source detector trained with; with the JAX-native matcher
  # (no host callback) it comes from the compilation cache instead of a second compile.
  c.detector.overrides = ["total_steps=2", "batch_size=8", "model.decoder_layers=1",
                          "loss.matcher=auction",
                          "optim.warmup_steps=1"] + quick
  c.synth.num = 4
  c.synth.num_backgrounds = 2
  c.synth.batch_size = 8  # the tests see 8 devices: batches split over all of them
  c.synth.options.max_records = 12
  c.finetune.steps = 2
  c.finetune.lr_factor = 1.0
  c.eval.limit = 3
  c.eval.overlap = 16
  c.eval.pictures = 2
  c.eval.batch_size = 4
  return c


@pytest.mark.e2e
def test_protocol_runs_for_real_and_resumes(tmp_path):
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  trainer.use_compilation_cache(str(tmp_path / "jax_cache"))  # as `fabgen adapt` does
  config = smallest_config()
  lines = []
  workdir = str(tmp_path / "adapt")
  backend = platform_backend.PlatformBackend(config, log=lines.append)
  result = protocol.run_protocol(config, workdir, backend, log=lines.append)

  target = json.load(open(os.path.join(workdir, "target", protocol.RESULT)))
  assert 0 < target["num_test"] <= 3 and 0 < target["num_good"] <= 2
  # The synthetic set is a labelled source of the requested size, on the target's backgrounds.
  from fabgen.data.readers import open_source  # pylint: disable=g-import-not-at-top
  for method in config.methods:  # each method's set: labelled, of the requested size
    synth = open_source(os.path.join(workdir, f"synth_{method}", "data"))
    assert len(synth) == 4, method
    assert sum(int((synth[i]["box_class"] >= 0).sum()) for i in range(4)) > 0, method
  # The fine-tune started from the source detector: its config says so and it trained its steps.
  tuned = json.load(open(os.path.join(workdir, "finetune_cutpaste", protocol.RESULT)))
  assert tuned["init_from"] == os.path.join(workdir, "detector_source") and tuned["steps"] == 2
  ft_config = json.load(open(os.path.join(workdir, "finetune_cutpaste", "config.json")))
  assert ft_config["init_from"] == tuned["init_from"]
  # ... on the synthetic set with source replay mixed in; the control on the sources alone.
  source = backend.source_spec("train")
  assert (ft_config["data"]["mix_source"], ft_config["data"]["mix_weight"]) == (
      source, config.finetune.replay) and config.finetune.replay > 0
  control = json.load(open(os.path.join(workdir, "finetune_control", "config.json")))
  assert (control["data"]["source"], control["data"]["mix_source"]) == (source, "")
  # Both rows evaluated the same real target images, and the table holds them.
  reports = result["reports"]
  assert list(reports) == [protocol.NO_ADAPTATION, protocol.CONTROL, *config.methods]
  assert {r["num_images"] for r in reports.values()} == {target["num_test"]}
  for r in reports.values():
    assert all(0.0 <= row["defect"]["f1"] <= 1.0 for row in r["classes"].values())
    assert np.isfinite(r["mean_f1"]["defect"])
  table = open(os.path.join(workdir, "table.md")).read()
  assert all(f"| {row} |" in table for row in reports)
  for f in ("samples.png", "eval_source/detections.png", "eval_cutpaste/report.md",
            "synth_cutpaste/data/contact_sheet.png", "synth_cutpaste/data/box_stats.md"):
    assert os.path.getsize(os.path.join(workdir, f)) > 0, f
  assert any("[finetune_cutpaste] finished" in line for line in lines)

  # A rerun redoes nothing and rebuilds the same table.
  again = []
  protocol.run_protocol(config, workdir, platform_backend.PlatformBackend(config, again.append),
                        log=again.append)
  assert not any(line.endswith("running") for line in again)
  assert open(os.path.join(workdir, "table.md")).read() == table
