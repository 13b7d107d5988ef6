"""`fabgen data inspect` on every data set of the broken-data battery (tests/data/broken_datasets):
each fault is named with its file and reason (a skip) or is a clean error (exit 2), never a Python
traceback; the clean controls read fully. Runs in-process (an uncaught exception fails the test,
as a traceback would); about 2 s for the whole battery."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fabgen.cli import main as cli
from fabgen.data.readers import ReadError, open_source
from fabgen.data.readers import images as io

sys.path.insert(0, os.path.dirname(__file__))
import broken_datasets as bd  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_the_battery_has_25_faults_in_four_layouts_and_clean_controls():
  faults = [c for c in bd.CASES if c.expect != "read"]
  assert len(faults) >= 25
  for layout in ("mvtec", "aitex", "generic", "coco"):
    assert any(c.name.startswith(layout) for c in faults), layout
    assert any(c.name == f"{layout}_clean" for c in bd.CASES), layout


@pytest.mark.parametrize("case", bd.CASES, ids=[c.name for c in bd.CASES])
def test_inspect_names_the_file_and_fault(case, tmp_path, capsys):
  spec = case.build(str(tmp_path / "data"))
  rc = cli.main(["data", "inspect", spec, "--json"])
  out, err = capsys.readouterr()
  assert "Traceback" not in out + err
  if case.expect == "error":
    assert rc == 2, (out, err)
    assert case.file in err and re.search(case.reason, err), err
    return
  summary = json.loads(out)
  problems = summary["skipped_files"] + summary["failed"]
  if case.expect == "read":
    assert rc == 0 and not problems, problems
    assert summary["samples"] == summary["inspected"] == case.file
    assert case.reason in summary["instances_per_class"], summary
    return
  assert rc in (0, 1)
  hits = [(p, r) for p, r in problems if case.file in p and re.search(case.reason, r)]
  assert hits, problems
  # The other, healthy samples of the set still read.
  assert summary["inspected"] == summary["samples"] - len(summary["failed"]) or summary["failed"]


def _non_utf8_name(root):
  """A clean MVTec set plus a junk file whose name has a byte that is not UTF-8 (caf\xe9)."""
  bd.mvtec_clean(root)
  with open(os.path.join(os.fsencode(root), b"train", b"good", b"caf\xe9.png"), "wb") as f:
    f.write(b"junk")
  return root


def test_inspect_in_a_subprocess_prints_no_traceback(tmp_path):
  """The CLI as a user runs it (stdout strictly UTF-8), on some of the worst cases (~6 s)."""
  specs = [bd.coco_annotations_not_list(str(tmp_path / "a")),
           bd.generic_huge_label(str(tmp_path / "c")), _non_utf8_name(str(tmp_path / "d"))]
  for spec in specs:
    p = subprocess.run([sys.executable, "-m", "fabgen.cli.main", "data", "inspect", spec],
                       capture_output=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.getcwd(), "PYTHONIOENCODING": "utf-8"})
    out, err = p.stdout.decode("utf-8"), p.stderr.decode("utf-8")
    assert "Traceback" not in err and p.returncode in (0, 1, 2), err
  assert "caf\\xe9.png: not a readable image" in out, out


def test_a_negative_box_is_clipped_not_wrapped_to_the_right_edge(tmp_path):
  """Python's negative indexing once put a box at x = -3 on the image's right edge."""
  root = bd._coco(str(tmp_path), annotations=bd._one_ann(bbox=[-3, 1, 5, 3]))
  src = open_source(root)
  mask = src[0]["instance_mask"]
  assert mask[1:4, 0:2].all() and not mask[:, 2:].any()
  assert src.notes["clipped_box"] == 1


def test_no_file_outside_the_root_is_ever_opened(tmp_path, monkeypatch):
  """Confinement happens before any read: the escaping files are never opened at all."""
  opened = []
  real_open = io.Image.open
  monkeypatch.setattr(io.Image, "open", lambda p, *a, **k: (opened.append(str(p)),
                                                             real_open(p, *a, **k))[1])
  for build in (bd.coco_traversal, bd.coco_absolute, bd.coco_symlink_out, bd.mvtec_symlink_out):
    root = build(str(tmp_path / build.__name__ / "data"))
    src = open_source(root, validate=True)
    [src[i] for i in range(len(src))]
  names = [os.path.basename(p) for p in opened]
  assert names and not {"outside.png", "link.png"} & set(names), names


def test_images_over_the_decompression_limit_are_rejected_at_indexing(tmp_path, monkeypatch):
  root = bd.mvtec_clean(str(tmp_path / "data"))
  monkeypatch.setattr(io.Image, "MAX_IMAGE_PIXELS", 50)  # the test images have 96 pixels
  src = open_source(root)  # no decode yet: the header is enough
  assert len(src) == 0 and all("decompression limit" in r for _, r in src.skipped), src.skipped
  with pytest.raises(ReadError, match="decompression limit"):
    io.read_image(os.path.join(root, "train/good/g.png"))


def test_a_huge_label_value_is_refused_before_allocating(tmp_path):
  path = bd._save(str(tmp_path / "m.tif"), bd._mask(2 ** 31 - 1, dtype=np.int32))
  with pytest.raises(ReadError, match="m.tif.*far above"):
    io.read_label_mask(path)



def test_training_input_skips_a_file_only_decoding_finds_broken(tmp_path, caplog):
  """A truncated image passes indexing; the pipeline replaces it, counts it, logs it once."""
  from fabgen.data import pipeline  # pylint: disable=g-import-not-at-top
  root = bd.mvtec_truncated(str(tmp_path / "data"))  # good g.png + truncated 000.png
  with caplog.at_level("WARNING"):
    src = open_source(root)
    assert len(src) == 2
    ds = pipeline.make_dataset(src, 2, seed=0, shuffle=False, num_epochs=2,
                               transform=pipeline.make_transform("center", (8, 8)),
                               process_index=0, process_count=1)
    batches = list(ds)
  assert len(batches) == 2 and all(b["image"].shape == (2, 8, 8, 3) for b in batches)
  assert list(src.read_failures) == [os.path.join(root, "test", "color", "000.png")]
  assert sum("skipping unreadable sample" in r.message for r in caplog.records) == 1
  strict = pipeline.make_dataset(src, 2, seed=0, shuffle=False, num_epochs=1, skip_broken=False,
                                 transform=pipeline.make_transform("center", (8, 8)),
                                 process_index=0, process_count=1)
  with pytest.raises(ReadError, match="000.png"):
    list(strict)
