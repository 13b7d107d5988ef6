"""COCO out (sample-set writer) and in (fabgen sets and plain COCO files), round-tripped."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from fabgen.data import classes as classes_lib
from fabgen.data import writer
from fabgen.data.readers import ReadError, open_source
from fabgen.data.readers import records


def _records(n=5, h=20, w=28, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    mask = np.zeros((h, w), np.int32)
    classes = []
    for k in range(i % 3):  # 0, 1 or 2 instances, one of them in two components
      y, x = rng.integers(0, h - 5), rng.integers(0, w - 8)
      mask[y:y + 3, x:x + 2] = k + 1
      mask[y:y + 2, x + 5:x + 7] = k + 1
      classes.append(int(rng.integers(0, 7)))  # 6 = an extra class name
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    s, _ = records.make_sample(image, mask, classes, fabric_id=i)
    out.append(s)
  return out


def test_written_set_reads_back_identically(tmp_path):
  names = classes_lib.CLASSES + ("hole",)
  recs = _records()
  manifest = writer.write_sample_set(recs, str(tmp_path), names)
  assert manifest["complete"] and manifest["images"] == 5
  assert os.path.exists(tmp_path / "contact_sheet.png")
  assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
  src = open_source(str(tmp_path))
  assert src.layout == "coco" and src.class_names == names and len(src) == len(recs)
  for i, want in enumerate(recs):
    got = src[i]
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=f"record {i} key {key}")


def test_written_annotations_are_valid_coco_with_component_segmentation(tmp_path):
  from pycocotools import mask as mask_utils
  from pycocotools.coco import COCO
  recs = _records()
  writer.write_sample_set(recs, str(tmp_path), classes_lib.CLASSES + ("hole",))
  coco = COCO(str(tmp_path / "annotations.json"))
  for i, s in enumerate(recs):
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[i]))
    boxes, _, inst = records.valid_boxes(s)
    assert len(anns) == len(boxes)
    union = np.zeros(s["instance_mask"].shape, bool)
    for ann, box, k in zip(anns, boxes, inst):
      pixels = mask_utils.decode(ann["segmentation"]).astype(bool)
      ys, xs = np.nonzero(pixels)
      np.testing.assert_array_equal([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box)
      assert ann["area"] == pixels.sum() and (s["instance_mask"][pixels] == k).all()
      union |= pixels
    np.testing.assert_array_equal(union, s["instance_mask"] > 0)


def test_plain_coco_polygons_rle_and_named_categories(tmp_path):
  h, w = 30, 40
  Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "a.png")
  Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / "b.png")
  from pycocotools import mask as mask_utils
  blob = np.zeros((h, w), np.uint8)
  blob[20:25, 30:38] = 1
  rle = mask_utils.encode(np.asfortranarray(blob))
  rle["counts"] = rle["counts"].decode()
  data = {
      "images": [{"id": 7, "file_name": "a.png", "width": w, "height": h},
                 {"id": 8, "file_name": "b.png", "width": w, "height": h},
                 {"id": 9, "file_name": "missing.png", "width": w, "height": h}],
      # File ids differ from fabgen's; names decide.
      "categories": [{"id": 1, "name": "knot"}, {"id": 2, "name": "scratch"}],
      "annotations": [
          {"id": 1, "image_id": 7, "category_id": 1,
           "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]], "bbox": [2, 2, 10, 6]},
          {"id": 2, "image_id": 7, "category_id": 2, "segmentation": rle,
           "bbox": [30, 20, 8, 5]},
          {"id": 3, "image_id": 8, "category_id": 1, "bbox": [5, 5, 4, 3]},
          {"id": 4, "image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]},
          {"id": 5, "image_id": 8, "category_id": 5, "bbox": [0, 0, 1, 1]}]}
  (tmp_path / "inst.json").write_text(json.dumps(data))
  src = open_source(str(tmp_path / "inst.json"))
  reasons = [r for _, r in src.skipped]
  assert any("unknown image_id 99" in r for r in reasons)
  assert any("unknown category_id 5" in r for r in reasons)
  assert any("does not exist" in r and p.endswith("missing.png") for p, r in src.skipped)
  assert src.class_names[6:] == ("scratch",) and len(src) == 2
  a = src[0]
  assert list(a["instance_class"][:2]) == [classes_lib.class_id("knot"), 6]
  np.testing.assert_array_equal(a["instance_mask"] == 2, blob.astype(bool))
  boxes, cls, _ = records.valid_boxes(a)
  np.testing.assert_array_equal(boxes[1], [30, 20, 38, 25])
  b = src[1]  # box-only annotation: the box is the mask, and that is reported
  np.testing.assert_array_equal(records.valid_boxes(b)[0], [[5, 5, 9, 8]])
  assert src.notes["mask_from_bbox"] == 1


def test_bad_coco_files_are_named(tmp_path):
  (tmp_path / "broken.json").write_text("{not json")
  with pytest.raises(ValueError, match="broken.json.*not valid JSON"):
    open_source(str(tmp_path / "broken.json"))
  (tmp_path / "nokeys.json").write_text(json.dumps({"images": []}))
  with pytest.raises(ValueError, match="nokeys.json.*categories"):
    open_source(str(tmp_path / "nokeys.json"))


def test_instance_png_without_annotation_is_an_error(tmp_path):
  recs = _records(3)
  writer.write_sample_set(recs, str(tmp_path), classes_lib.CLASSES + ("hole",))
  data = json.loads((tmp_path / "annotations.json").read_text())
  data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1]
  (tmp_path / "annotations.json").write_text(json.dumps(data))
  with pytest.raises(ReadError, match="00000001.png.*no annotation"):
    open_source(str(tmp_path))[1]


def test_reads_the_synthesis_writer_layout(tmp_path):
  """Folders in `fabgen.synthesis.stream`'s layout (its JSON fields, its labeller) read back."""
  from fabgen.synthesis import labelling, stream
  rng = np.random.default_rng(3)
  os.makedirs(tmp_path / "images")
  os.makedirs(tmp_path / "masks")
  images, anns, want = [], [], []
  for i in range(3):
    bg = rng.integers(0, 200, (24, 30, 3), dtype=np.uint8)
    out = bg.copy()
    out[3:8, 4:9] += 40
    out[15:18, 20:28] += 50
    lab = labelling.label_change(out, bg)
    name = stream.sample_name(i)
    stream.atomic_write_png(str(tmp_path / "images" / f"{name}.png"), lab.image)
    stream.atomic_write_png(str(tmp_path / "masks" / f"{name}.png"),
                            lab.instance_mask.astype(np.uint8))
    images.append({"id": i, "file_name": f"images/{name}.png", "width": 30, "height": 24,
                   "mask_file": f"masks/{name}.png"})
    for (x0, y0, x1, y1), area in zip(lab.boxes.tolist(), lab.areas.tolist()):
      anns.append({"id": len(anns) + 1, "image_id": i, "category_id": i + 1,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area, "iscrowd": 0,
                   "instance_id": 1})
    want.append(labelling.to_sample(lab, i + 1))
  (tmp_path / "annotations.json").write_text(json.dumps({
      "categories": [{"id": i, "name": n} for i, n in enumerate(classes_lib.CLASSES)],
      "images": images, "annotations": anns}))
  src = open_source(str(tmp_path))
  assert src.class_names == classes_lib.CLASSES
  for i, w in enumerate(want):
    got = src[i]
    for k in ("image", "instance_mask", "instance_class", "boxes", "box_class", "box_instance"):
      np.testing.assert_array_equal(got[k], w[k], err_msg=f"{i} {k}")
