"""A battery of tiny broken data sets, one fault each, in the MVTec, AITEX, generic and COCO
layouts, plus clean controls: what `fabgen data inspect` must report (file and fault) instead of
crashing, and what it must read fully.

Each case is `Case(name, build, expect, file, reason)`:
  expect "skip":  inspect exits 0/1 and lists `file` (a path fragment) with a reason matching
                  the regex `reason` among its skipped or failed files;
  expect "error": inspect exits 2 and its error message names `file` and matches `reason`;
  expect "read":  inspect exits 0, reads every sample, skips nothing (`file` = samples expected,
                  `reason` = a class name that must appear, or "").
Images are 8x12 pixels, so the whole battery decodes in well under a second.
"""

from __future__ import annotations

import json
import math
import os
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image

H, W = 8, 12


class Case(NamedTuple):
  name: str
  build: Callable[[str], str]  # folder -> the spec to inspect
  expect: str
  file: str | int
  reason: str


def _rgb(seed=0, h=H, w=W):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(value=255, h=H, w=W, dtype=np.uint8):
  m = np.zeros((h, w), dtype)
  m[2:5, 3:7] = value
  return m


def _save(path, array, mode=None, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  im = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
  im.save(path, format=fmt) if fmt else im.save(path)
  return path


def _write(path, data: bytes):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def _truncate(path):
  data = open(path, "rb").read()
  _write(path, data[:len(data) // 2])


def _outside_image(root):
  """An image outside the data set folder, for traversal and symlink cases."""
  return _save(os.path.join(os.path.dirname(root), "secret", "outside.png"), _rgb(9))


# --- MVTec ------------------------------------------------------------------------------------

def _mvtec(root, mask=None, image=None, extra=None):
  """A category with one good image and one `color` defect image 000.png (+ its mask)."""
  _save(f"{root}/train/good/g.png", _rgb(1))
  if image is not False:
    _save(f"{root}/test/color/000.png", _rgb(2) if image is None else image)
  if mask is not False:
    _save(f"{root}/ground_truth/color/000_mask.png", _mask() if mask is None else mask)
  if extra:
    extra(root)
  return root


def mvtec_clean(root):
  return _mvtec(root)


def mvtec_corrupt(root):
  _mvtec(root, image=False)
  _write(f"{root}/test/color/000.png", b"\x89PNG\r\n\x1a\n this is not a png")
  return root


def mvtec_truncated(root):
  _mvtec(root, image=_rgb(2, 64, 64), mask=_mask(h=64, w=64))
  _truncate(f"{root}/test/color/000.png")
  return root


def mvtec_zero_byte(root):
  _mvtec(root, image=False)
  _write(f"{root}/test/color/000.png", b"")
  return root


def mvtec_missing_mask(root):
  return _mvtec(root, mask=False)


def mvtec_orphan_mask(root):
  return _mvtec(root, extra=lambda r: _save(f"{r}/ground_truth/color/005_mask.png", _mask()))


def mvtec_wrong_size_mask(root):
  return _mvtec(root, mask=_mask(h=H + 2))


def mvtec_empty_mask(root):
  return _mvtec(root, mask=np.zeros((H, W), np.uint8))


def mvtec_zero_one_mask(root):
  return _mvtec(root, mask=_mask(1))


def mvtec_antialiased_mask(root):
  m = _mask()
  m[1, 3:7] = 90  # a soft edge
  return _mvtec(root, mask=m)


def mvtec_rgba_mask(root):
  m = _mask()
  return _mvtec(root, mask=np.stack([m, m, m, np.full_like(m, 255)], -1))


def mvtec_16bit_mask(root):
  return _mvtec(root, mask=_mask(65535, dtype=np.uint16))


def mvtec_jpeg_named_png(root):
  _mvtec(root, image=False)
  _save(f"{root}/test/color/000.png", _rgb(2), fmt="JPEG")
  return root


def mvtec_symlink_out(root):
  _mvtec(root)
  os.symlink(_outside_image(root), f"{root}/train/good/link.png")
  return root


def mvtec_fifo(root):
  _mvtec(root)
  os.mkfifo(f"{root}/train/good/pipe.png")
  return root


# --- AITEX ------------------------------------------------------------------------------------

def _aitex(root, extra=None):
  _save(f"{root}/Defect_images/0001_002_03.png", _rgb(3)[..., 0])
  _save(f"{root}/Mask_images/0001_002_03_mask.png", _mask())
  _save(f"{root}/NoDefect_images/roll1/0002_000_03.png", _rgb(4)[..., 0])
  if extra:
    extra(root)
  return root


def aitex_clean(root):
  return _aitex(root)


def aitex_bad_name(root):
  return _aitex(root, lambda r: _save(f"{r}/Defect_images/scan-7.png", _rgb(5)[..., 0]))


def aitex_bad_mask_name(root):
  def extra(r):
    _save(f"{r}/Defect_images/0003_006_03.png", _rgb(5)[..., 0])
    _save(f"{r}/Mask_images/0003_006_03-m.png", _mask())
  return _aitex(root, extra)


def aitex_split_masks(root):
  def extra(r):
    _save(f"{r}/Defect_images/0003_006_03.png", _rgb(5)[..., 0])
    _save(f"{r}/Mask_images/0003_006_03_mask1.png", _mask())
    m2 = np.zeros((H, W), np.uint8)
    m2[6:8, 0:2] = 255
    _save(f"{r}/Mask_images/0003_006_03_mask2.png", m2)
  return _aitex(root, extra)


def aitex_unknown_code(root):
  def extra(r):
    _save(f"{r}/Defect_images/0003_099_03.png", _rgb(5)[..., 0])
    _save(f"{r}/Mask_images/0003_099_03_mask.png", _mask())
  return _aitex(root, extra)


def aitex_orphan_mask(root):
  return _aitex(root, lambda r: _save(f"{r}/Mask_images/0009_002_03_mask.png", _mask()))


def aitex_missing_mask(root):
  return _aitex(root, lambda r: _save(f"{r}/Defect_images/0003_006_03.png", _rgb(5)[..., 0]))


# --- generic ----------------------------------------------------------------------------------

def _generic(root, classes=("knot",), mask=None):
  _save(f"{root}/images/a.png", _rgb(6))
  if mask is not False:
    if isinstance(mask, str):
      return root
    _save(f"{root}/masks/a.png", _mask(1) if mask is None else mask)
  _write(f"{root}/classes.json", json.dumps(classes).encode())
  return root


def generic_clean(root):
  return _generic(root)


def generic_palette_mask(root):
  pal = Image.fromarray(_mask(1), mode="L").convert("P")
  pal.putpalette([0, 0, 0] + [255, 0, 0] * 255)
  _generic(root, mask=False)
  os.makedirs(f"{root}/masks", exist_ok=True)
  pal.save(f"{root}/masks/a.png")
  return root


def generic_unknown_value(root):
  return _generic(root, mask=_mask(7))


def generic_huge_label(root):
  _generic(root, mask=False)
  _save(f"{root}/masks/a.tif", _mask(2 ** 31 - 1, dtype=np.int32))
  return root


def generic_missing_mask(root):
  return _generic(root, mask=False)


def generic_classes_wrong_type(root):
  _generic(root)
  _write(f"{root}/classes.json", b"42")
  return root


def generic_zero_byte_mask(root):
  _generic(root)
  _write(f"{root}/masks/a.png", b"")
  return root


# --- COCO -------------------------------------------------------------------------------------

def _coco(root, images=None, annotations=None, categories=None, raw=None, files=True):
  """A COCO file with image a.png (id 1, one knot box) unless told otherwise."""
  if files:
    _save(f"{root}/a.png", _rgb(7))
  data = {
      "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}] if images is None
      else images,
      "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 1, 4, 3]}]
      if annotations is None else annotations,
      "categories": [{"id": 3, "name": "knot"}] if categories is None else categories,
  }
  _write(f"{root}/annotations.json",
         raw if raw is not None else json.dumps(data, allow_nan=True).encode())
  return root


def _one_ann(**kw):
  return [{"id": 1, "image_id": 1, "category_id": 3, **kw}]


def _with_second_image(file_name):
  return [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": file_name}]


def coco_clean(root):
  return _coco(root)


def coco_traversal(root):
  _outside_image(root)
  return _coco(root, images=_with_second_image("../secret/outside.png"))


def coco_absolute(root):
  return _coco(root, images=_with_second_image(_outside_image(root)))


def coco_symlink_out(root):
  _coco(root, images=_with_second_image("link.png"))
  os.symlink(_outside_image(root), f"{root}/link.png")
  return root


def coco_box_outside(root):
  return _coco(root, annotations=_one_ann(bbox=[50, 40, 4, 3]))


def coco_nan_box(root):
  return _coco(root, annotations=_one_ann(bbox=[2, math.nan, 4, 3]))


def coco_short_box(root):
  return _coco(root, annotations=_one_ann(bbox=[2, 1, 4]))


def coco_unknown_category(root):
  return _coco(root, annotations=[{"id": 1, "image_id": 1, "category_id": 77, "bbox": [2, 1, 4, 3]}])


def coco_file_name_not_string(root):
  return _coco(root, images=[{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": 123}])


def coco_file_name_missing(root):
  return _coco(root, images=[{"id": 1, "file_name": "a.png"}, {"id": 2}])


def coco_image_entry_not_dict(root):
  return _coco(root, images=[{"id": 1, "file_name": "a.png"}, "b.png"])


def coco_annotation_not_dict(root):
  return _coco(root, annotations=[["a", 1]])


def coco_annotations_not_list(root):
  return _coco(root, annotations={"1": {"image_id": 1}})


def coco_duplicate_image_ids(root):
  _save(f"{root}/b.png", _rgb(8))
  return _coco(root, images=[{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}])


def coco_duplicate_category_ids(root):
  return _coco(root, categories=[{"id": 3, "name": "knot"}, {"id": 3, "name": "oil_stain"}])


def coco_invalid_json(root):
  return _coco(root, raw=b'{"images": [')


def coco_missing_image(root):
  return _coco(root, images=_with_second_image("gone.png"))


def coco_fabgen_set_box_outside(root):
  """A fabgen sample set (mask_file + instance_id) whose copied box lies outside the image."""
  _save(f"{root}/images/a.png", _rgb(7))
  _save(f"{root}/masks/a.png", _mask(1))
  return _coco(root, files=False,
               images=[{"id": 1, "file_name": "images/a.png", "mask_file": "masks/a.png"}],
               annotations=_one_ann(bbox=[30, 2, 4, 3], instance_id=1))


def coco_mask_file_traversal(root):
  _outside_image(root)
  return _coco(root, images=[{"id": 1, "file_name": "a.png",
                              "mask_file": "../secret/outside.png"}])


CASES = [
    Case("mvtec_clean", mvtec_clean, "read", 2, "color_spot"),
    Case("aitex_clean", aitex_clean, "read", 2, "broken_end"),
    Case("generic_clean", generic_clean, "read", 1, "knot"),
    Case("coco_clean", coco_clean, "read", 1, "knot"),
    Case("mvtec_zero_one_mask", mvtec_zero_one_mask, "read", 2, "color_spot"),
    Case("mvtec_antialiased_mask", mvtec_antialiased_mask, "read", 2, "color_spot"),
    Case("mvtec_rgba_mask", mvtec_rgba_mask, "read", 2, "color_spot"),
    Case("mvtec_16bit_mask", mvtec_16bit_mask, "read", 2, "color_spot"),
    Case("generic_palette_mask", generic_palette_mask, "read", 1, "knot"),
    Case("aitex_split_masks", aitex_split_masks, "read", 3, "broken_yarn"),
    Case("aitex_unknown_code", aitex_unknown_code, "read", 3, "aitex_099"),
    Case("mvtec_corrupt", mvtec_corrupt, "skip", "000.png", "not a readable image"),
    Case("mvtec_truncated", mvtec_truncated, "skip", "000.png", "truncated or corrupt"),
    Case("mvtec_zero_byte", mvtec_zero_byte, "skip", "000.png", "empty file"),
    Case("mvtec_missing_mask", mvtec_missing_mask, "skip", "000.png", "no mask"),
    Case("mvtec_orphan_mask", mvtec_orphan_mask, "skip", "005_mask.png", "mask with no image"),
    Case("mvtec_wrong_size_mask", mvtec_wrong_size_mask, "skip", "000_mask.png",
         "wrong-size mask"),
    Case("mvtec_empty_mask", mvtec_empty_mask, "skip", "000_mask.png", "empty mask"),
    Case("mvtec_jpeg_named_png", mvtec_jpeg_named_png, "skip", "000.png",
         "JPEG data in a .png file"),
    Case("mvtec_symlink_out", mvtec_symlink_out, "skip", "link.png", "outside the data set"),
    Case("mvtec_fifo", mvtec_fifo, "skip", "pipe.png", "not a regular file"),
    Case("aitex_bad_name", aitex_bad_name, "skip", "scan-7.png", "name does not match"),
    Case("aitex_bad_mask_name", aitex_bad_mask_name, "skip", "0003_006_03-m.png",
         "mask name does not end"),
    Case("aitex_orphan_mask", aitex_orphan_mask, "skip", "0009_002_03_mask.png",
         "mask with no image"),
    Case("aitex_missing_mask", aitex_missing_mask, "skip", "0003_006_03.png", "no mask"),
    Case("generic_unknown_value", generic_unknown_value, "skip", "a.png", "mask value 7"),
    Case("generic_huge_label", generic_huge_label, "skip", "a.tif",
         "label value 2147483647 is far above"),
    Case("generic_missing_mask", generic_missing_mask, "skip", "a.png", "no mask"),
    Case("generic_classes_wrong_type", generic_classes_wrong_type, "error", "classes.json",
         "expected a list of class names"),
    Case("generic_zero_byte_mask", generic_zero_byte_mask, "skip", "a.png", "empty file"),
    Case("coco_traversal", coco_traversal, "skip", "outside.png", "outside the data set"),
    Case("coco_absolute", coco_absolute, "skip", "outside.png", "absolute path"),
    Case("coco_symlink_out", coco_symlink_out, "skip", "link.png", "outside the data set"),
    Case("coco_box_outside", coco_box_outside, "skip", "annotations[0]",
         "bbox .* lies outside the image"),
    Case("coco_nan_box", coco_nan_box, "skip", "annotations[0]", "four finite numbers"),
    Case("coco_short_box", coco_short_box, "skip", "annotations[0]", "four finite numbers"),
    Case("coco_unknown_category", coco_unknown_category, "skip", "annotations[0]",
         "unknown category_id 77"),
    Case("coco_file_name_not_string", coco_file_name_not_string, "skip", "images[1]",
         "'file_name' .*123"),
    Case("coco_file_name_missing", coco_file_name_missing, "skip", "images[1]",
         "'file_name'"),
    Case("coco_image_entry_not_dict", coco_image_entry_not_dict, "skip", "images[1]",
         "not an object"),
    Case("coco_annotation_not_dict", coco_annotation_not_dict, "skip", "annotations[0]",
         "not an object"),
    Case("coco_annotations_not_list", coco_annotations_not_list, "error", "annotations.json",
         "'annotations'.*a list"),
    Case("coco_duplicate_image_ids", coco_duplicate_image_ids, "error", "annotations.json",
         "images\\[1\\].*duplicate image id 1"),
    Case("coco_duplicate_category_ids", coco_duplicate_category_ids, "error",
         "annotations.json", "categories\\[1\\].*duplicate category id 3"),
    Case("coco_invalid_json", coco_invalid_json, "error", "annotations.json", "not valid JSON"),
    Case("coco_missing_image", coco_missing_image, "skip", "gone.png", "does not exist"),
    Case("coco_fabgen_set_box_outside", coco_fabgen_set_box_outside, "skip",
         "annotations[0]", "bbox .* lies outside the image"),
    Case("coco_mask_file_traversal", coco_mask_file_traversal, "skip", "outside.png",
         "outside the data set"),
]
