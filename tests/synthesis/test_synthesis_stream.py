"""Streaming synthesis: exact labels, resume without duplicates, atomic output, flat memory."""

import json
import os
import tracemalloc

import numpy as np
import pytest

from fabgen.data import classes as classes_lib
from fabgen.synthesis import backgrounds as backgrounds_lib
from fabgen.synthesis import base
from fabgen.synthesis import colour_space
from fabgen.synthesis import cutpaste
from fabgen.synthesis import labelling
from fabgen.synthesis import stream


def _fabric(rng, size, period):
  """A striped 'fabric' with sensor noise, uint8 [size, size, 3]."""
  y, x = np.mgrid[:size, :size]
  base_img = 120 + 40 * np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / period)
  img = base_img[..., None] * np.array([1.0, 0.9, 0.8]) + rng.normal(0, 3, (size, size, 3))
  return np.clip(img, 0, 255).astype(np.uint8)


def _source_records(n=6, size=48):
  """Labelled records: a dark blob (oil_stain) or a light line (white_stripe) per image."""
  rng = np.random.default_rng(0)
  recs = []
  for i in range(n):
    img = _fabric(rng, size, 6)
    inst = np.zeros((size, size), np.int32)
    cid = classes_lib.CLASS_ID["oil_stain"] if i % 2 == 0 else classes_lib.CLASS_ID["white_stripe"]
    y, x = np.mgrid[:size, :size]
    if i % 2 == 0:
      m = (y - 24) ** 2 + (x - 20 - i) ** 2 < 36
      img[m] = (img[m] * 0.4).astype(np.uint8)
    else:
      m = (np.abs(x - 20 - i) < 2) & (y > 8) & (y < 40)
      img[m] = 240
    inst[m] = 1
    recs.append({"image": img, "instance_mask": inst,
                 "instance_class": np.array([cid, -1, -1, -1], np.int32)})
  return recs


@pytest.fixture(scope="module")
def synth():
  return cutpaste.CutPasteSynthesizer.from_records(_source_records(), patch_size=16)


@pytest.fixture(scope="module")
def bgs():
  rng = np.random.default_rng(1)
  return backgrounds_lib.open_backgrounds([_fabric(rng, 40, 8) for _ in range(5)])


def _run(synth, bgs, out, num, **kw):
  return stream.SynthesisRun(synth, bgs, num, str(out), batch_size=4, **kw)


def _read_png(path):
  from PIL import Image
  return np.asarray(Image.open(path))


def test_labels_are_exactly_the_changed_pixels(synth, bgs, tmp_path):
  manifest = _run(synth, bgs, tmp_path, 10).run()
  assert manifest["complete"] and manifest["images"] == 10
  assert manifest["boxes"] > 0
  for part in sorted(os.listdir(tmp_path / "parts")):
    for rec in json.load(open(tmp_path / "parts" / part))["records"]:
      image = _read_png(tmp_path / rec["file_name"])
      mask = _read_png(tmp_path / rec["mask_file"]) > 0
      bg = bgs[rec["background_index"]]
      diff = np.abs(image.astype(int) - bg.astype(int)).max(-1)
      np.testing.assert_array_equal(mask, diff > 6)  # mask == changed beyond noise
      assert diff[~mask].max(initial=0) <= 6
      # Boxes are the connected components' minimal rectangles, and cover the mask exactly.
      from scipy import ndimage
      comps, n = ndimage.label(mask, structure=np.ones((3, 3)))
      want = sorted((s[1].start, s[0].start, s[1].stop, s[0].stop)
                    for s in ndimage.find_objects(comps))
      assert sorted(tuple(int(v) for v in b) for b in rec["boxes"]) == want
      assert sum(rec["areas"]) == mask.sum()
  coco = json.load(open(tmp_path / "annotations.json"))
  assert len(coco["images"]) == 10
  assert len(coco["annotations"]) == manifest["boxes"]
  assert os.path.exists(tmp_path / "contact_sheet.png")


def test_label_change_reverts_specks_and_surplus_components():
  bg = np.full((20, 20, 3), 100, np.uint8)
  img = bg.copy()
  img[2:6, 2:6] = 200      # a real component
  img[10, 10] = 200        # a one-pixel speck: reverted
  img[15, 15] = 103        # below tau: not a label, left as is
  lab = labelling.label_change(img, bg, tau=6, min_area=4)
  assert lab.boxes.tolist() == [[2, 2, 6, 6]]
  assert lab.image[10, 10].tolist() == [100, 100, 100]
  assert lab.instance_mask.sum() == 16


def test_resume_equals_uninterrupted_without_duplicates(synth, bgs, tmp_path):
  _run(synth, bgs, tmp_path / "full", 11).run()
  interrupted = _run(synth, bgs, tmp_path / "resumed", 11)
  assert interrupted.batch_size == 8  # 4 rounded up to the 8 test devices
  assert interrupted.run(stop_after_batches=1) == {"complete": False, "written": 8}
  m = json.load(open(tmp_path / "resumed" / "manifest.json"))
  assert m["complete"] is False  # a partial run never looks complete
  # A crash mid-write leaves a temporary file: it must be cleaned, never listed.
  open(tmp_path / "resumed" / "images" / ".00000005.png.tmp", "wb").write(b"garbage")
  manifest = _run(synth, bgs, tmp_path / "resumed", 11).run()
  assert manifest["complete"] and manifest["resumed_from"] == 8
  full = json.load(open(tmp_path / "full" / "annotations.json"))
  resumed = json.load(open(tmp_path / "resumed" / "annotations.json"))
  assert full == resumed
  ids = [im["id"] for im in resumed["images"]]
  assert ids == list(range(11))
  for name in os.listdir(tmp_path / "full" / "images"):
    np.testing.assert_array_equal(_read_png(tmp_path / "full" / "images" / name),
                                  _read_png(tmp_path / "resumed" / "images" / name))
  assert not [f for f in os.listdir(tmp_path / "resumed" / "images") if f.endswith(".tmp")]


def test_resume_with_other_arguments_is_refused(synth, bgs, tmp_path):
  _run(synth, bgs, tmp_path, 4).run()
  with pytest.raises(base.SynthesisError, match="seed"):
    _run(synth, bgs, tmp_path, 4, seed=3).run()


def test_unknown_class_is_refused(synth, bgs, tmp_path):
  with pytest.raises(base.SynthesisError, match="knot.*knows: oil_stain, white_stripe"):
    _run(synth, bgs, tmp_path, 4, class_ids=[classes_lib.CLASS_ID["knot"]])


def test_background_smaller_than_patch_is_refused(synth, tmp_path):
  small = backgrounds_lib.open_backgrounds([np.zeros((8, 8, 3), np.uint8)])
  with pytest.raises(base.SynthesisError, match="smaller than the method's 16x16 patch"):
    _run(synth, small, tmp_path, 4)


def test_memory_stays_flat_as_num_grows(synth, bgs, tmp_path):
  def peak(num, out):
    run = _run(synth, bgs, out, num)
    run.generate([0])  # compile outside the measurement
    tracemalloc.start()
    run.run()
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top
  small, large = peak(8, tmp_path / "a"), peak(48, tmp_path / "b")
  assert large < 1.5 * small + 256 * 1024, (small, large)


def test_monochrome_backgrounds_get_grey_defects_and_grey_labels(synth, tmp_path):
  """Colour crops pasted on a mono camera's images come out grey (colour="auto"), labelled on the
  grey image; "keep" writes the colour cast; colour backgrounds are untouched either way."""
  rng = np.random.default_rng(2)
  grey_bgs = [np.repeat(_fabric(rng, 40, 8)[..., :1], 3, -1) for _ in range(3)]
  mono = backgrounds_lib.open_backgrounds(grey_bgs)
  _run(synth, mono, tmp_path / "auto", 6).run()
  _run(synth, mono, tmp_path / "keep", 6, colour="keep").run()
  cast = 0
  for rec in json.load(open(tmp_path / "auto" / "parts" / "00000000.json"))["records"]:
    image = _read_png(tmp_path / "auto" / rec["file_name"])
    kept = _read_png(tmp_path / "keep" / rec["file_name"])
    assert colour_space.is_monochrome(image)
    np.testing.assert_array_equal(image, colour_space.to_grey(kept))
    mask = _read_png(tmp_path / "auto" / rec["mask_file"]) > 0
    diff = np.abs(image.astype(int) - grey_bgs[rec["background_index"]].astype(int)).max(-1)
    np.testing.assert_array_equal(mask, diff > 6)
    cast += not colour_space.is_monochrome(kept)
  assert cast > 0  # the source crops do carry colour: the projection had work to do
  colour_bgs = backgrounds_lib.open_backgrounds([_fabric(rng, 40, 8) for _ in range(3)])
  _run(synth, colour_bgs, tmp_path / "c_auto", 4).run()
  _run(synth, colour_bgs, tmp_path / "c_keep", 4, colour="keep").run()
  for name in os.listdir(tmp_path / "c_auto" / "images"):
    np.testing.assert_array_equal(_read_png(tmp_path / "c_auto" / "images" / name),
                                  _read_png(tmp_path / "c_keep" / "images" / name))
  with pytest.raises(ValueError, match="colour='sepia'"):
    _run(synth, mono, tmp_path / "bad", 2, colour="sepia")


def test_grey_projection_is_exact_on_grey_images():
  grey = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, -1)
  np.testing.assert_array_equal(colour_space.to_grey(grey), grey)
  np.testing.assert_array_equal(colour_space.to_grey(np.array([[[10, 20, 31]]], np.uint8)),
                                [[[20, 20, 20]]])
