"""A real target's stage, classes, evaluation and table, on folders the tests build (no training).

The evaluation goes through `RealTargetBackend.evaluate` with a stand-in detector that boxes
dark pixels as `knot` (exact on the painted defects), so the numbers are known: every knot
found, the classes no detector class stands for in their own rows with their counts, and no false
alarm on the held-out defect-free strips.
"""

import os

import numpy as np
import pytest
from scipy import ndimage

from fabgen.adapt import platform_backend
from fabgen.adapt import protocol
from fabgen.adapt import real_target
from fabgen.adapt import stage_inputs
from fabgen.adapt import table as table_lib
from fabgen.data import classes as classes_lib
from fabgen.data.readers import class_map
from fabgen.data.readers import open_source
from fabgen.platform import config as config_lib
from tests.adapt import real_layouts

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
KNOT = classes_lib.CLASS_ID["knot"]


def real_config(good, test="", classes="simple", **target):
  c = config_lib.load_config(os.path.join(ROOT, "configs", "adapt.py:real"))
  c.detector.spec = f"configs/detector.py:tiny,classes={classes}"
  c.target.good = good
  c.target.test = test
  for k, v in target.items():
    c.target[k] = v
  c.eval.overlap = 16
  c.eval.pictures = 0
  return c


def dark_detector(label):
  """Stand-in detector: a box per connected component of dark pixels, class `label`."""
  def predict(images):
    images = np.asarray(images)
    out = {"boxes": np.zeros((len(images), 8, 4), np.float32),
           "scores": np.zeros((len(images), 8), np.float32),
           "labels": np.zeros((len(images), 8), np.int32)}
    for i, im in enumerate(images):
      lab, _ = ndimage.label(im[..., 0] < 70)
      for q, sl in enumerate(ndimage.find_objects(lab)[:8]):
        out["boxes"][i, q] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        out["scores"][i, q], out["labels"][i, q] = 0.9, label
    return out
  return predict


@pytest.fixture
def stand_in(monkeypatch):
  def use(label, class_ids):
    monkeypatch.setattr(platform_backend.infer, "load_predictor", lambda ckpt: (
        dark_detector(label), {"class_ids": list(class_ids), "tile": (128, 128)}))
  return use


@pytest.fixture(scope="module")
def aitex(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("aitex"))
  counts = real_layouts.aitex_root(root, num_good=4)
  return root, counts


def test_class_map_renames_and_keeps_unknown_names_as_their_own_classes(tmp_path):
  real_layouts.generic_masks(str(tmp_path))
  src = class_map.remap(open_source(str(tmp_path)), class_map.parse("speck:color_spot"))
  assert src.class_names[:6] == classes_lib.CLASSES and src.class_names[6:] == ("hole",)
  sample = src[2]
  names = sorted(src.class_names[c] for c in sample["instance_class"] if c >= 0)
  assert names == ["color_spot", "hole"]
  assert sorted(src.class_names[c] for c in sample["box_class"] if c >= 0) == names
  with pytest.raises(ValueError, match="entry 'speck' is not"):
    class_map.parse("speck")
  with pytest.raises(ValueError, match=r"names \['dust'\]"):
    class_map.remap(open_source(str(tmp_path)), {"dust": "knot"})


def test_aitex_strip_target_counts_classes_and_holds_out_good_strips(aitex):
  root, counts = aitex
  config = real_config(f"{root}@good", f"{root}@defect", heldout_good=1)
  target = real_target.RealTargetBackend(config, log=lambda _: None).target()
  assert target["kind"] == "real" and target["num_test"] == len(real_layouts.AITEX_DEFECTS)
  assert target["class_counts"] == counts  # knot 3, fuzzyball 1, crease 1
  assert target["unknown_classes"] == ["crease", "fuzzyball"]
  assert target["classes"] == ["knot"]  # what synthesis paints: target classes the detector has
  assert target["num_heldout_good"] == 1 and target["num_good"] == 3
  assert not set(target["heldout_good_indices"]) & set(target["good_indices"])
  # The whole root as the test set: its good strips that are synthesis backgrounds are dropped.
  config = real_config(f"{root}@good", root, heldout_good=1)
  target = real_target.RealTargetBackend(config, log=lambda _: None).target()
  assert target["test_dropped_as_backgrounds"] == 3
  assert target["num_test_images"] == len(real_layouts.AITEX_DEFECTS) + 1


def test_unknown_classes_get_rows_not_zero_columns_and_false_alarms_are_counted(
    aitex, stand_in, tmp_path):
  root, counts = aitex
  config = real_config(f"{root}@good", f"{root}@defect", heldout_good=2, pixel_pitch_mm=0.1)
  backend = real_target.RealTargetBackend(config, log=lambda _: None)
  stand_in(KNOT, [classes_lib.CLASS_ID[n] for n in classes_lib.SIMPLE_CLASSES])
  protocol.run_stage(str(tmp_path), "target", lambda d: backend.target(), lambda _: None)
  report = backend.evaluate({"checkpoint": "stand-in"}, str(tmp_path / "eval_source"))
  assert list(report["classes"]) == ["knot"]  # the only target class the detector knows
  assert report["classes"]["knot"]["defect"]["num_true"] == counts["knot"]
  assert report["classes"]["knot"]["defect"]["recall"] == 1.0
  unknown = report["unknown_classes"]
  assert {n: r["num_true"] for n, r in unknown.items()} == {"fuzzyball": 1, "crease": 1}
  assert unknown["fuzzyball"]["found_by_any_class"] == 1  # a knot box on it: found, wrong class
  fa = report["false_alarms"]
  assert fa["num_good_images"] == 2 and fa["alarms_on_good_images"] == 0
  assert fa["metres"] == pytest.approx((len(real_layouts.AITEX_DEFECTS) + 2) * 256 * 1e-4)
  md = table_lib.comparison_markdown({protocol.NO_ADAPTATION: report}, "t")
  assert "| method | knot | mean | mAP@.5 |" in md  # no zero columns for the unknown classes
  assert "fuzzyball (1)" in md and "crease (1)" in md
  assert "0.00 (0 on 2)" in md


def test_without_a_test_set_the_table_reports_false_alarms_on_held_out_good_images(
    tmp_path, stand_in):
  good = str(tmp_path / "good")
  real_layouts.plain_folder(good, 5)
  img = np.asarray(open_source(good)[2]["image"])  # one held-out image gets a dark spot
  from PIL import Image  # pylint: disable=g-import-not-at-top
  spot = img.copy()
  spot[5:15, 5:15] = 10
  Image.fromarray(spot).save(os.path.join(good, "good_02.png"))
  config = real_config(good, heldout_good=2)
  backend = real_target.RealTargetBackend(config, log=lambda _: None)
  target = protocol.run_stage(str(tmp_path / "w"), "target", lambda d: backend.target(),
                              lambda _: None)
  assert target["num_test"] == 0 and target["classes"] == list(classes_lib.SIMPLE_CLASSES)
  assert target["heldout_good_indices"] == [0, 2]
  stand_in(KNOT, [0, 1, 2, 3])
  report = backend.evaluate({"checkpoint": "stand-in"}, str(tmp_path / "w" / "eval_source"))
  assert report["classes"] == {} and report["false_alarms"]["num_good_images"] == 2
  assert report["false_alarms"]["alarms_on_good_images"] == 1
  md = table_lib.comparison_markdown({protocol.NO_ADAPTATION: report}, "t")
  assert "No labelled target defect" in md and "| no adaptation | - | - | - | 0.50 (1 on 2) |" in md


def test_real_target_keys_reach_only_the_stages_that_read_them():
  fabricsim = config_lib.load_config(os.path.join(ROOT, "configs", "adapt.py:demo"))
  # FabricSim runs record what they always recorded (their workdirs resume unchanged).
  assert "target" not in stage_inputs.inputs_of(fabricsim, "target")["config"]
  assert "sources" not in stage_inputs.inputs_of(fabricsim, "detector_source")["config"]
  config = real_config("photos/good", "labelled/test")
  before = {s: stage_inputs.inputs_of(config, s) for s in
            ("target", "detector_source", "synth_cutpaste", "eval_source", "finetune_control")}
  config.target.test = "labelled/other"
  changed = [s for s, v in before.items() if stage_inputs.inputs_of(config, s) != v]
  assert changed == ["target", "synth_cutpaste", "eval_source"]
  config.sources.real = "data/aitex@defect"
  assert stage_inputs.inputs_of(config, "detector_source") != before["detector_source"]


def test_sources_and_bad_keys(tmp_path):
  config = real_config("photos/good")
  backend = real_target.RealTargetBackend(config, log=lambda _: None)
  assert backend.training_data() == ["data.source=fabricsim:simple:train:0"]
  config.sources.real = "data/aitex@defect"
  assert backend.training_data() == ["data.source=fabricsim:simple:train:0",
                                     "data.mix_source=data/aitex@defect", "data.mix_weight=0.5"]
  assert backend.training_data(mixed=False) == ["data.source=fabricsim:simple:train:0"]
  assert backend.replay_spec() == backend.cutpaste_bank() == "data/aitex@defect"
  config.target.references = "refs/"
  assert backend.cutpaste_bank() == "refs/"
  config.sources.fabricsim = False
  assert backend.training_data() == ["data.source=data/aitex@defect"]
  config.sources.real = ""
  with pytest.raises(ValueError, match="sources.fabricsim=False"):
    real_target.validate(config)
  config = real_config("", test="labelled/test")
  with pytest.raises(ValueError, match="config.target.test='labelled/test' needs"):
    real_target.make_backend(config)
  config = real_config(str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="config.target.good=.*missing"):
    real_target.RealTargetBackend(config, log=lambda _: None).target()


def test_cli_names_a_bad_real_target_key(tmp_path, capsys):
  import argparse  # pylint: disable=g-import-not-at-top
  from fabgen.cli import adapt as adapt_cli  # pylint: disable=g-import-not-at-top
  args = argparse.Namespace(config=os.path.join(ROOT, "configs", "adapt.py:real"),
                            workdir=str(tmp_path), overrides=[
                                "--config.target.good=photos/good",
                                "--config.target.class_map=speck"])
  assert adapt_cli.run_config(args, "adapt") == 2
  assert "target.class_map='speck': entry 'speck' is not" in capsys.readouterr().err
  assert not os.listdir(tmp_path)  # nothing ran
  assert real_target.target_name("/data/aitex@good") == "aitex"
  assert real_target.target_name("data/mill_a/good") == "mill_a/good"
