"""Readers on tiny fixtures built in each layout, including every bad input the issue lists."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from fabgen.data import classes as classes_lib
from fabgen.data.readers import ReadError, detect_layout, open_source
from fabgen.data.readers import images as io
from fabgen.data.readers import records


def _png(path, array, mode=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
  return path


def _rgb(h=24, w=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h=24, w=32, rect=(4, 10, 6, 14), value=255):
  m = np.zeros((h, w), np.uint8)
  y0, y1, x0, x1 = rect
  m[y0:y1, x0:x1] = value
  return m


def _truncated(path, array):
  _png(path, array)
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  return path


# --- decoding ---------------------------------------------------------------------------------

def test_image_modes_decode_to_rgb_uint8(tmp_path):
  rgb = _rgb()
  grey = rgb[..., 0]
  rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], -1)
  p_rgba = _png(str(tmp_path / "rgba.png"), rgba)
  np.testing.assert_array_equal(io.read_image(p_rgba), rgb)  # alpha dropped, colour kept
  p_grey = _png(str(tmp_path / "grey.png"), grey)
  np.testing.assert_array_equal(io.read_image(p_grey), np.repeat(grey[..., None], 3, -1))
  wide = grey.astype(np.uint16) * 257  # 16-bit: full range maps back to 8 bits exactly
  p16 = str(tmp_path / "g16.png")
  Image.fromarray(wide).save(p16)
  np.testing.assert_array_equal(io.read_image(p16)[..., 0], grey)
  pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
  pal.save(tmp_path / "pal.png")
  np.testing.assert_array_equal(io.read_image(str(tmp_path / "pal.png")),
                                np.asarray(pal.convert("RGB")))


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
  bad = tmp_path / "junk.png"
  bad.write_bytes(b"not a png at all")
  with pytest.raises(ReadError, match="junk.png"):
    io.read_image(str(bad))
  trunc = _truncated(str(tmp_path / "trunc.png"), _rgb(64, 64))
  with pytest.raises(ReadError, match="trunc.png.*(truncated|corrupt)"):
    io.read_image(trunc)


def test_antialiased_mask_thresholded_above_127_and_size_checked(tmp_path):
  m = np.array([[0, 127, 128, 255]], np.uint8)
  p = _png(str(tmp_path / "m.png"), m)
  np.testing.assert_array_equal(io.read_binary_mask(p), [[False, False, True, True]])
  with pytest.raises(ReadError, match="m.png.*wrong-size mask"):
    io.read_binary_mask(p, (2, 4))


def test_boxes_are_minimal_rectangles_of_8_connected_components():
  mask = np.zeros((10, 12), np.int32)
  mask[1:3, 1:4] = 1          # component A of instance 1
  mask[3, 4] = 1              # diagonal neighbour: same component (8-connectivity)
  mask[7:9, 9:11] = 1         # component B of instance 1
  mask[5:6, 0:2] = 2          # instance 2
  s, notes = records.make_sample(np.zeros((10, 12, 3), np.uint8), mask, [3, 0])
  boxes, cls, inst = records.valid_boxes(s)
  np.testing.assert_array_equal(boxes, [[1, 1, 5, 4], [0, 5, 2, 6], [9, 7, 11, 9]])
  np.testing.assert_array_equal(cls, [3, 0, 3])
  np.testing.assert_array_equal(inst, [1, 2, 1])
  assert notes == []


def test_boxes_match_the_labels_reference_on_random_masks():
  from fabgen.data import labels  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  compared = 0
  for _ in range(5):
    mask = (rng.random((20, 24)) < 0.03).astype(np.int32) * rng.integers(1, 3, (20, 24))
    s, notes = records.make_sample(np.zeros((20, 24, 3), np.uint8), mask, [1, 4])
    ref = labels.component_boxes_np(mask, max_boxes=64)
    n = int((ref.box_instance > 0).sum())
    if n > 16:
      assert notes == ["dropped_boxes"]
      continue
    np.testing.assert_array_equal(s["boxes"][:n], ref.boxes[:n])
    np.testing.assert_array_equal(s["box_instance"][:n], ref.box_instance[:n])
    compared += 1
  assert compared >= 3


def test_surplus_instances_merge_by_class_without_losing_pixels():
  mask = np.zeros((8, 40), np.int32)
  for k in range(6):
    mask[2:4, 6 * k:6 * k + 3] = k + 1
  s, notes = records.make_sample(np.zeros((8, 40, 3), np.uint8), mask, [0, 2, 0, 2, 0, 2])
  assert notes == ["merged_instances"]
  np.testing.assert_array_equal(s["instance_mask"] > 0, mask > 0)
  np.testing.assert_array_equal(s["instance_class"], [0, 2, -1, -1])
  assert (s["box_instance"] > 0).sum() == 6


# --- MVTec ------------------------------------------------------------------------------------

def _mvtec(root):
  cat = root / "carpet"
  _png(str(cat / "train/good/000.png"), _rgb(seed=1))
  _png(str(cat / "test/good/000.png"), _rgb(seed=2))
  _png(str(cat / "test/color/000.png"), _rgb(seed=3))
  aa = _mask()
  aa[3, 9] = 100  # anti-aliased edge pixel below the threshold
  _png(str(cat / "ground_truth/color/000_mask.png"), aa)
  _png(str(cat / "test/cut/000.png"), _rgb(seed=4))
  _png(str(cat / "ground_truth/cut/000_mask.png"), _mask(rect=(0, 2, 0, 3)))
  _png(str(cat / "test/cut/001.png"), _rgb(seed=5))                           # image, no mask
  _png(str(cat / "ground_truth/cut/009_mask.png"), _mask())                    # mask, no image
  _png(str(cat / "test/cut/002.png"), _rgb(seed=6))
  _png(str(cat / "ground_truth/cut/002_mask.png"), _mask(h=12))                # wrong size
  _png(str(cat / "test/cut/003.png"), _rgb(seed=7))
  _png(str(cat / "ground_truth/cut/003_mask.png"), _mask(value=0))             # empty mask
  return cat


def test_mvtec_reader(tmp_path):
  cat = _mvtec(tmp_path)
  assert detect_layout(str(cat)) == "mvtec"
  src = open_source(str(cat))
  assert src.class_names[:6] == classes_lib.CLASSES and src.class_names[6:] == ("cut",)
  reasons = {os.path.basename(p): r for p, r in src.skipped}
  assert reasons["001.png"].startswith("no mask")
  assert reasons["009_mask.png"] == "mask with no image"
  assert reasons["002_mask.png"].startswith("wrong-size mask")
  assert len(src) == 5
  good = src[0]
  assert good["image"].shape == (24, 32, 3) and good["instance_mask"].max() == 0
  assert (good["instance_class"] == -1).all() and (good["box_instance"] == 0).all()
  color = src[1]
  np.testing.assert_array_equal(color["instance_mask"], (_mask() > 0).astype(np.int32))
  assert color["instance_class"][0] == classes_lib.class_id("color_spot")
  np.testing.assert_array_equal(records.valid_boxes(color)[0], [[6, 4, 14, 10]])
  assert src[2]["instance_class"][0] == 6  # "cut", appended after the six
  with pytest.raises(ReadError, match="003_mask.png.*empty mask"):
    src[3]
  assert src[4]["instance_mask"].max() == 0
  checked = open_source(str(cat), validate=True)
  assert len(checked) == 4 and any("empty mask" in r for _, r in checked.skipped)
  summary = checked.summary()
  assert summary["instances_per_class"] == {"color_spot": 1, "cut": 1}
  assert summary["defect_free_images"] == 2 and summary["image_sizes"] == {"24x32": 4}
  assert len(open_source(str(cat) + "@train")) == 1
  with pytest.raises(ValueError, match="MVTec-AD root"):
    open_source(str(tmp_path))


# --- AITEX ------------------------------------------------------------------------------------

def test_aitex_reader_codes_multiple_masks_and_bad_inputs(tmp_path):
  root = tmp_path / "aitex"
  grey = _rgb(16, 64)[..., 0]
  _png(str(root / "Defect_images/0001_002_03.png"), grey)
  _png(str(root / "Mask_images/0001_002_03_mask.png"), _mask(16, 64, (2, 4, 2, 10)))
  _png(str(root / "Defect_images/0002_019_01.png"), grey)
  _png(str(root / "Mask_images/0002_019_01_mask1.png"), _mask(16, 64, (2, 4, 2, 10)))
  _png(str(root / "Mask_images/0002_019_01_mask2.png"), _mask(16, 64, (8, 12, 30, 40)))
  _png(str(root / "Defect_images/0003_027_01.png"), grey)                     # no mask
  _png(str(root / "Mask_images/0004_030_01_mask.png"), _mask(16, 64))         # no image
  _truncated(str(root / "Defect_images/0005_006_02.png"), _rgb(16, 64))
  _png(str(root / "Mask_images/0005_006_02_mask.png"), _mask(16, 64))
  _png(str(root / "NoDefect_images/roll1/0006_000_02.png"), grey)
  src = open_source(str(root))
  assert src.layout == "aitex"
  reasons = {os.path.basename(p): r for p, r in src.skipped}
  assert reasons["0003_027_01.png"].startswith("no mask")
  assert reasons["0004_030_01_mask.png"] == "mask with no image"
  assert len(src) == 4
  s = src[0]
  assert s["instance_class"][0] == classes_lib.class_id("broken_end") and s["fabric_id"] == 3
  np.testing.assert_array_equal(s["image"][..., 0], grey)
  two = src[1]
  assert list(two["instance_class"][:3]) == [6, 6, -1] and src.class_names[6] == "fuzzyball"
  np.testing.assert_array_equal(records.valid_boxes(two)[2], [1, 2])
  with pytest.raises(ReadError, match="0005_006_02.png"):
    src[2]
  assert src[3]["instance_mask"].max() == 0 and src[3]["fabric_id"] == 2
  checked = open_source(str(root), validate=True)
  assert len(checked) == 3
  assert any(p.endswith("0005_006_02.png") for p, _ in checked.skipped)


# --- generic ----------------------------------------------------------------------------------

def test_generic_class_index_masks(tmp_path):
  root = tmp_path / "gen"
  _png(str(root / "images/a.png"), _rgb())
  m = np.zeros((24, 32), np.uint8)
  m[1:3, 1:3], m[10:12, 20:30] = 1, 2
  _png(str(root / "masks/a.png"), m)
  _png(str(root / "images/b.png"), _rgb(seed=2))                              # no mask
  _png(str(root / "masks/c.png"), m)                                          # no image
  _png(str(root / "images/d.png"), _rgb(seed=3))
  bad = m.copy()
  bad[0, 0] = 9
  _png(str(root / "masks/d.png"), bad)                                        # unknown value
  (root / "classes.json").write_text(json.dumps(["knot", "hole"]))
  src = open_source(str(root))
  assert src.layout == "generic" and len(src) == 2 and len(src.skipped) == 2
  s = src[0]
  assert list(s["instance_class"][:2]) == [classes_lib.class_id("knot"), 6]
  np.testing.assert_array_equal(s["instance_mask"], m)
  with pytest.raises(ReadError, match="d.png.*mask value 9"):
    src[1]


def test_generic_instance_masks_palette_and_unmasked_good(tmp_path):
  root = tmp_path / "gen"
  _png(str(root / "images/a.png"), _rgb())
  m = np.zeros((24, 32), np.uint8)
  m[1:3, 1:3], m[10:12, 20:30] = 3, 5
  pal = Image.fromarray(m, mode="L").convert("P")
  pal.putpalette([0, 0, 0] + [255, 0, 0] * 255)  # every label drawn red: indices must still count
  os.makedirs(root / "masks")
  pal.save(root / "masks/a.png")
  _png(str(root / "images/b.png"), _rgb(seed=2))
  (root / "classes.json").write_text(json.dumps(
      {"mask_type": "instance", "classes": {"a": {"3": "oil_stain"}},
       "default_class": "knot", "unmasked": "good"}))
  src = open_source(str(root))
  assert len(src) == 2 and not src.skipped
  s = src[0]
  assert list(s["instance_class"][:2]) == [1, 2]
  np.testing.assert_array_equal(s["instance_mask"], np.select([m == 3, m == 5], [1, 2], 0))
  assert src[1]["instance_mask"].max() == 0


def test_generic_without_classes_json_is_a_clear_error(tmp_path):
  _png(str(tmp_path / "images/a.png"), _rgb())
  _png(str(tmp_path / "masks/a.png"), _mask())
  with pytest.raises(FileNotFoundError, match="classes.json"):
    open_source(str(tmp_path))
