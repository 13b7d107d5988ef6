"""`fabgen adapt` on real-layout targets built by the test, every stage for real (tiny sizes).

Two targets: an AITEX root of 4096x256 greyscale strips (defect-free strips as `@good`, the
defect strips as the test set, two of their codes without a fabgen class), and a generic one (a
plain folder of defect-free photos, a masks folder as the test set with a class map, and a few
labelled reference defects as the cut-paste bank). Checked: the synthetic set is painted on the
target's own images in their coordinates, the table has the unknown classes' rows with their
counts and the false alarms on held-out defect-free images, and reruns resume. Programs come from
the suite's persistent XLA cache (tests/conftest.py): the second target reuses the first's.
Measured on the shared 2-core machine at load ~25: both 303 s user CPU (48 min wall); the plain
folder one alone, cold cache, 207 s user CPU. Most of it is compiling and tiling 4096-px strips.
"""

import json
import os

import numpy as np
import pytest

from fabgen.adapt import protocol
from fabgen.adapt import real_target
from fabgen.data.readers import open_source
from tests.adapt import real_layouts
from tests.adapt.test_adapt_end_to_end import smallest_config


def tiny_real_config(good, test, **target):
  c = smallest_config()
  c.methods = ("cutpaste",)
  c.finetune.control = False
  c.detector.spec = "configs/detector.py:tiny,classes=simple"  # fuzzyball, crease, hole: unknown
  c.detector.overrides = list(c.detector.overrides) + ["data.transform=crop"]  # crops of strips
  c.target.good, c.target.test = good, test
  for k, v in target.items():
    c.target[k] = v
  c.eval.limit = 0
  return c


def run(config, workdir):
  lines = []
  result = protocol.run_protocol(config, workdir, real_target.make_backend(config, lines.append),
                                 log=lines.append)
  return result, lines


@pytest.mark.e2e
def test_adapt_on_aitex_strips_reports_unknown_classes_and_resumes(tmp_path):
  root = str(tmp_path / "aitex")
  counts = real_layouts.aitex_root(root, num_good=3)
  config = tiny_real_config(f"{root}@good", f"{root}@defect", heldout_good=1,
                            pixel_pitch_mm=0.1)
  workdir = str(tmp_path / "adapt")
  result, _ = run(config, workdir)

  synth = open_source(os.path.join(workdir, "synth_cutpaste", "data"))
  assert len(synth) == config.synth.num
  for i in range(len(synth)):  # whole strips, labels in strip coordinates
    s = synth[i]
    assert s["image"].shape == (256, 4096, 3)
    boxes = s["boxes"][s["box_class"] >= 0]
    assert len(boxes) and (boxes[:, 2] <= 4096).all() and (boxes[:, 3] <= 256).all()
    assert set(s["box_class"][s["box_class"] >= 0].tolist()) == {2}  # knot: the known class
  reports = result["reports"]
  assert list(reports) == [protocol.NO_ADAPTATION, "cutpaste"]
  for r in reports.values():
    assert list(r["classes"]) == ["knot"]
    assert r["classes"]["knot"]["defect"]["num_true"] == counts["knot"]
    assert {n: u["num_true"] for n, u in r["unknown_classes"].items()} == {
        "fuzzyball": 1, "crease": 1}
    assert r["false_alarms"]["num_good_images"] == 1 and r["false_alarms"]["metres"] > 0
  table = open(os.path.join(workdir, "table.md")).read()
  assert "fuzzyball (1)" in table and "crease (1)" in table
  assert "false alarms / metre" in table and "| cutpaste |" in table

  again, lines = run(config, workdir)  # resumes: nothing runs, the same table
  assert not any(line.endswith("running") for line in lines), lines
  assert again["table"] == result["table"]


@pytest.mark.e2e
def test_adapt_on_a_plain_folder_with_references_and_a_class_map(tmp_path):
  good, test, refs = (str(tmp_path / n) for n in ("good", "test", "refs"))
  real_layouts.plain_folder(good, 6)
  counts = real_layouts.generic_masks(test)
  real_layouts.generic_masks(refs, seed=400)
  config = tiny_real_config(good, test, references=refs, class_map="speck:color_spot",
                            heldout_good=2)
  workdir = str(tmp_path / "adapt")
  result, _ = run(config, workdir)
  target = json.load(open(os.path.join(workdir, "target", protocol.RESULT)))
  assert target["class_counts"] == counts and target["unknown_classes"] == ["hole"]
  synth = json.load(open(os.path.join(workdir, "synth_cutpaste", protocol.RESULT)))
  assert synth["checkpoint"] == refs and synth["classes"] == ["color_spot"]
  data = open_source(os.path.join(workdir, "synth_cutpaste", "data"))
  assert {data[i]["image"].shape for i in range(len(data))} == {(96, 160, 3)}
  for r in result["reports"].values():
    assert r["classes"]["color_spot"]["defect"]["num_true"] == 2
    assert r["unknown_classes"]["hole"]["num_true"] == 2
    assert r["false_alarms"]["num_good_images"] == 2
    assert np.isfinite(r["mean_f1"]["defect"])
  # Another held-out share reruns the stages it feeds, never the source detector.
  config.target.heldout_good = 1
  _, lines = run(config, workdir)
  ran = [line[1:line.index("]")] for line in lines if line.endswith("running")]
  assert ran == ["target", "eval_source", "synth_cutpaste", "finetune_cutpaste",
                 "eval_cutpaste"], ran
