"""`fabgen data synth` writes a set that reads back record for record; `inspect` reports it."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from fabgen.cli import main as cli
from fabgen.data.readers import fabricsim_source, open_source


@pytest.mark.slow
def test_synth_writes_a_set_that_reads_back_identically(tmp_path, capsys):
  out = str(tmp_path / "set")
  assert cli.main(["data", "synth", "--preset", "tiny", "--split", "train", "--num", "5",
                   "--out", out, "--batch-size", "5"]) == 0
  for f in ("annotations.json", "manifest.json", "contact_sheet.png"):
    assert os.path.exists(os.path.join(out, f)), f
  assert len(os.listdir(os.path.join(out, "images"))) == 5
  want = fabricsim_source.FabricSimSource("tiny", "train").stacked(range(5), pad_to=5)
  src = open_source(out)
  assert len(src) == 5 and not src.skipped
  for i in range(5):
    got = src[i]
    for k in want:
      np.testing.assert_array_equal(got[k], want[k][i], err_msg=f"record {i} key {k}")
  capsys.readouterr()
  assert cli.main(["data", "inspect", out, "--json"]) == 0
  summary = json.loads(capsys.readouterr().out)
  n_inst = int((want["instance_class"] >= 0).sum())
  assert sum(summary["instances_per_class"].values()) == n_inst
  assert summary["image_sizes"] == {"64x64": 5} and summary["skipped"] == 0


def test_inspect_reports_skipped_files_and_reasons(tmp_path, capsys):
  root = tmp_path / "gen"
  os.makedirs(root / "images")
  os.makedirs(root / "masks")
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images/a.png")
  m = np.zeros((8, 8), np.uint8)
  m[2:4, 2:5] = 1
  Image.fromarray(m).save(root / "masks/a.png")
  Image.fromarray(m).save(root / "masks/orphan.png")
  (root / "images/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  Image.fromarray(m).save(root / "masks/broken.png")
  (root / "classes.json").write_text(json.dumps(["knot"]))
  assert cli.main(["data", "inspect", str(root), "--sheet", str(tmp_path / "s.png")]) == 0
  text = capsys.readouterr().out
  assert "knot" in text and "8x8 x1" in text
  assert "orphan.png: mask with no image" in text
  assert "broken.png" in text and "not a readable image" in text
  assert os.path.exists(tmp_path / "s.png")
  assert cli.main(["data", "inspect", str(tmp_path / "nope")]) == 2
  assert "nope: no such file or folder" in capsys.readouterr().err
