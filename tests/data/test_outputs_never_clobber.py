"""Outputs never overwrite what they should not: foreign folders are refused, inputs are kept,
cleaning follows no symlink (issue 15, point 4). All cheap: nothing compiles."""

import os

import numpy as np
import pytest

from fabgen.cli import detect
from fabgen.cli import main as cli
from fabgen.data import writer
from fabgen.synthesis import backgrounds as backgrounds_lib
from fabgen.synthesis import base
from fabgen.synthesis import cutpaste
from fabgen.synthesis import stream


def _photos(folder):
  os.makedirs(folder, exist_ok=True)
  for name in ("00000000.png", "holiday.jpg"):
    with open(os.path.join(folder, name), "wb") as f:
      f.write(b"someone's file")
  return sorted(os.listdir(folder))


def test_data_synth_refuses_a_foreign_folder_and_touches_nothing(tmp_path, capsys):
  out = str(tmp_path / "photos")
  before = _photos(out)
  rc = cli.main(["data", "synth", "--num", "1", "--out", out])
  assert rc == 2 and "not a fabgen sample set" in capsys.readouterr().err
  assert sorted(os.listdir(out)) == before
  with open(os.path.join(out, "00000000.png"), "rb") as f:
    assert f.read() == b"someone's file"
  with pytest.raises(ValueError, match="--overwrite"):
    writer.write_sample_set([], out, ("knot",))
  writer.check_out_dir(out, overwrite=True)  # the explicit flag lets it through
  writer.check_out_dir(str(tmp_path / "new"))  # a new or empty folder is fine


def _bank():
  return cutpaste.CutPasteSynthesizer(np.full((1, 8, 8, 3), 255, np.uint8),
                                      np.ones((1, 8, 8), np.float32), np.zeros(1, np.int32))


def test_synthesis_refuses_a_foreign_folder_before_cleaning_it(tmp_path):
  out = str(tmp_path / "photos")
  before = _photos(out)
  with open(os.path.join(out, ".draft.tmp"), "wb") as f:  # would have been "debris" before
    f.write(b"keep me")
  bgs = backgrounds_lib.open_backgrounds([np.zeros((16, 16, 3), np.uint8)])
  with pytest.raises(base.SynthesisError, match="not empty and holds no fabgen synthesis"):
    stream.SynthesisRun(_bank(), bgs, 1, out, batch_size=1).run()
  assert sorted(os.listdir(out)) == sorted(before + [".draft.tmp"])


def test_debris_cleaning_follows_no_symlink(tmp_path):
  outside = tmp_path / "outside"
  outside.mkdir()
  (outside / ".precious.tmp").write_bytes(b"not ours")
  ours = tmp_path / "set"
  (ours / "parts").mkdir(parents=True)
  (ours / "parts" / ".00000000.json.tmp").write_bytes(b"half")
  os.symlink(outside, ours / "images")                              # a linked folder
  os.symlink(outside / ".precious.tmp", ours / "masks.tmp")          # not a .* name anyway
  os.symlink(outside / ".precious.tmp", ours / ".link.tmp")          # a linked file
  stream._remove_write_debris(str(ours))  # pylint: disable=protected-access
  assert not (ours / "parts" / ".00000000.json.tmp").exists()
  assert (outside / ".precious.tmp").read_bytes() == b"not ours"
  assert os.path.islink(ours / ".link.tmp")


def test_detect_overlays_never_take_an_input_name(tmp_path):
  folder = tmp_path / "imgs"
  folder.mkdir()
  images = [str(folder / "a.png"), str(tmp_path / "a.png"), str(folder / "a.detections.png")]
  names = detect.overlay_paths(images, str(folder))
  assert len(set(names)) == 3 and not set(names) & set(images), names
  assert all(n.endswith(detect.OVERLAY_SUFFIX) for n in names)


def test_synthesis_resume_refuses_a_different_model_at_the_same_path(tmp_path):
  """The manifest records the model's digest: a retrained model cannot extend an old set."""
  bgs = backgrounds_lib.open_backgrounds([np.zeros((16, 16, 3), np.uint8)])
  out = str(tmp_path / "set")
  manifest = stream.SynthesisRun(_bank(), bgs, 1, out, batch_size=1,
                                 extra_manifest={"checkpoint": "runs/x"}).run()
  assert manifest["complete"] and manifest["model_digest"] == stream.state_digest(_bank().state)
  retrained = cutpaste.CutPasteSynthesizer(np.full((1, 8, 8, 3), 7, np.uint8),
                                           np.ones((1, 8, 8), np.float32), np.zeros(1, np.int32))
  with pytest.raises(base.SynthesisError, match="model_digest"):
    stream.SynthesisRun(retrained, bgs, 2, out, batch_size=1,
                        extra_manifest={"checkpoint": "runs/x"}).run()
