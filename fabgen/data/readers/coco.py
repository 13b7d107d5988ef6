"""COCO JSON in: plain COCO files and fabgen sample sets (COCO + instance-mask PNGs).

Two flavours of the same format:

  * fabgen sample sets (written by `fabgen.data.writer` and the synthesis writer): every image
    entry carries `"mask_file"`, an instance-mask PNG (0 background, k = instance k); each
    annotation is one connected component (a box) with `"instance_id"` naming its instance. The
    masks and boxes are read exactly as written, in order, so a set read back equals the records
    it was written from.
  * plain COCO: each annotation is one instance; its mask comes from `segmentation` (polygons or
    RLE, decoded by pycocotools) or, if absent, from its box (counted in `notes`). Boxes are then
    the minimal rectangles of each instance's connected components (the fabgen rule).

Categories are matched by *name*: the six fabgen classes keep their global ids, whatever ids the
file uses; other names are appended after them.
"""

from __future__ import annotations

import json
import os

import numpy as np

from fabgen.data.readers import base
from fabgen.data.readers import images as io


def _load_json(path: str) -> dict:
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: COCO file does not exist") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path}: a COCO file is a JSON object with images/annotations/categories")
  for key in ("images", "categories"):
    if not isinstance(data.get(key), list):
      raise ValueError(f"{path}: missing or malformed key {key!r} (a list)")
  return data


def _segmentation_mask(seg, h: int, w: int) -> np.ndarray:
  """bool [h, w] from COCO polygons or RLE."""
  from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  if isinstance(seg, list):
    rles = mask_utils.frPyObjects(seg, h, w)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
  if isinstance(seg, dict) and "counts" in seg:
    rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
    return mask_utils.decode(rle).astype(bool)
  raise ValueError(f"unsupported segmentation {type(seg).__name__}")


class CocoSource(base.Source):
  """Records of a COCO JSON file; image paths are relative to `image_root` (the file's folder)."""

  layout = "coco"

  def __init__(self, json_path: str, image_root: str | None = None):
    data = _load_json(json_path)
    self.json_path = json_path
    root = image_root or os.path.dirname(os.path.abspath(json_path))
    names = base.ClassNames()
    cat_class = {}
    for cat in data["categories"]:
      if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
        raise ValueError(f"{json_path}: category {cat!r} needs an 'id' and a 'name'")
      cat_class[cat["id"]] = names.id(cat["name"])
    images, skipped = {}, []
    for im in data["images"]:
      if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
        raise ValueError(f"{json_path}: image entry {im!r} needs 'id' and 'file_name'")
      images[im["id"]] = im
    anns: dict = {i: [] for i in images}
    for k, ann in enumerate(data.get("annotations", [])):
      where = f"{json_path}: annotations[{k}]"
      if ann.get("image_id") not in images:
        skipped.append((where, f"annotation refers to unknown image_id {ann.get('image_id')!r}"))
      elif ann.get("category_id") not in cat_class:
        skipped.append((where, f"annotation has unknown category_id {ann.get('category_id')!r}"))
      elif "bbox" not in ann and "segmentation" not in ann:
        skipped.append((where, "annotation has neither bbox nor segmentation"))
      else:
        anns[ann["image_id"]].append(ann)
    entries = []
    for image_id, im in images.items():
      path = os.path.join(root, im["file_name"])
      mask = os.path.join(root, im["mask_file"]) if im.get("mask_file") else None
      if not os.path.exists(path):
        skipped.append((path, "image listed in the COCO file does not exist"))
        continue
      try:
        hw = io.image_size(path)
        if "height" in im and "width" in im and hw != (im["height"], im["width"]):
          skipped.append((path, f"wrong size: {hw} (HxW), the COCO file says "
                                f"{(im['height'], im['width'])}"))
          continue
        if mask is not None and io.image_size(mask) != hw:
          skipped.append((mask, f"wrong-size mask: {io.image_size(mask)} (HxW), its image "
                                f"{path} is {hw}"))
          continue
      except io.ReadError as e:
        skipped.append((e.path, e.reason if os.path.exists(e.path) else "mask file does not exist"))
        continue
      entries.append((path, mask, [(cat_class[a["category_id"]], a) for a in anns[image_id]],
                      int(im.get("fabric_id", -1))))
    super().__init__(f"coco:{os.path.basename(json_path)}", entries, names.freeze(), skipped)

  def _path(self, entry) -> str:
    return entry[0]

  def _load(self, entry) -> dict[str, np.ndarray]:
    path, mask_path, anns, fabric_id = entry
    image = io.read_image(path)
    h, w = image.shape[:2]
    if mask_path is not None:
      return self._load_instance_png(image, mask_path, anns, fabric_id)
    instance = np.zeros((h, w), np.int32)
    classes = []
    for class_id, ann in anns:
      if "segmentation" in ann and ann["segmentation"]:
        try:
          m = _segmentation_mask(ann["segmentation"], h, w)
        except Exception as e:  # pycocotools raises bare Exceptions on malformed input
          raise io.ReadError(self.json_path, f"annotation {ann.get('id')} of {path}: bad "
                                             f"segmentation ({e})") from e
      else:
        x, y, bw, bh = ann["bbox"]
        m = np.zeros((h, w), bool)
        m[int(round(y)):int(round(y + bh)), int(round(x)):int(round(x + bw))] = True
        self.notes["mask_from_bbox"] += 1
      if not m.any():
        self.notes["empty_annotation"] += 1
        continue
      classes.append(class_id)
      instance[m] = len(classes)
    present = set(np.unique(instance)) - {0}
    if len(present) < len(classes):  # an instance fully covered by a later one
      keep = [k for k in range(1, len(classes) + 1) if k in present]
      lut = np.zeros(len(classes) + 1, np.int32)
      lut[keep] = np.arange(1, len(keep) + 1)
      instance, classes = lut[instance], [classes[k - 1] for k in keep]
      self.notes["occluded_annotation"] += 1
    return self._make(image, instance, classes, fabric_id=fabric_id)

  def _load_instance_png(self, image, mask_path, anns, fabric_id) -> dict[str, np.ndarray]:
    """fabgen sample sets: the instance PNG is the mask; annotations are its component boxes."""
    labels = io.read_label_mask(mask_path, image.shape[:2])
    inst_class = {}
    for class_id, ann in anns:
      k = int(ann.get("instance_id", 1))
      if inst_class.setdefault(k, class_id) != class_id:
        raise io.ReadError(self.json_path, f"instance {k} of {mask_path} has two categories")
    values = set(int(v) for v in np.unique(labels)) - {0}
    if values - set(inst_class):
      raise io.ReadError(mask_path, f"mask values {sorted(values - set(inst_class))} have no "
                                    f"annotation in {self.json_path}")
    if set(inst_class) - values:
      raise io.ReadError(mask_path, f"annotated instances {sorted(set(inst_class) - values)} are "
                                    f"empty in the mask")
    ids = sorted(inst_class)
    lut = np.zeros(max(ids + [int(labels.max(initial=0))]) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    boxes = [(x, y, x + bw, y + bh) for _, a in anns for x, y, bw, bh in [a["bbox"]]]
    box_instance = [int(lut[int(a.get("instance_id", 1))]) for _, a in anns]
    return self._make(image, lut[labels], [inst_class[k] for k in ids],
                      boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                      box_instance=np.asarray(box_instance, np.int32), fabric_id=fabric_id)
