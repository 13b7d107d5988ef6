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

import collections
import json
import math
import os

import numpy as np

from fabgen.data.readers import base
from fabgen.data.readers import images as io


def _load_json(path: str) -> dict:
  """The parsed file; a structural fault of the whole file is a `ValueError` naming the key."""
  try:
    io.check_regular_file(path)
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except io.ReadError as e:
    if e.reason == "file does not exist":
      raise FileNotFoundError(f"{path}: COCO file does not exist") from None
    raise ValueError(str(e)) from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path}: a COCO file is a JSON object with images/annotations/categories")
  for key in ("images", "categories"):
    if not isinstance(data.get(key), list):
      raise ValueError(f"{path}: missing or malformed key {key!r} (a list)")
  if not isinstance(data.get("annotations", []), list):
    raise ValueError(f"{path}: key 'annotations' must be a list of objects, got "
                     f"{type(data['annotations']).__name__}")
  return data


def _id(value):
  """A usable COCO id (int or str, not bool), else None: a list would not even be hashable."""
  return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def check_bbox(bbox, hw: tuple[int, int]) -> tuple[list[float], bool]:
  """A COCO [x, y, w, h] box clipped to the image, and whether clipping changed it.

  Raises `ValueError` with the reason when the box is not four finite numbers, is empty, or lies
  wholly outside the image (a negative x must never wrap to the right edge by indexing).
  """
  if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
      or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
      or not all(math.isfinite(v) for v in bbox)):
    raise ValueError(f"bbox {bbox!r} is not four finite numbers [x, y, width, height]")
  x, y, w, h = (float(v) for v in bbox)
  if w <= 0 or h <= 0:
    raise ValueError(f"bbox {bbox!r} has a non-positive width or height")
  height, width = hw
  x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
  if x1 <= x0 or y1 <= y0:
    raise ValueError(f"bbox {bbox!r} lies outside the image ({width}x{height}, WxH)")
  clipped = [x0, y0, x1 - x0, y1 - y0]
  return clipped, clipped != [x, y, w, h]


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
    for k, cat in enumerate(data["categories"]):
      if not isinstance(cat, dict) or _id(cat.get("id")) is None or not isinstance(
          cat.get("name"), str):
        raise ValueError(f"{json_path}: categories[{k}] {cat!r} needs an 'id' (int or str) and "
                         f"a 'name' (str)")
      if cat["id"] in cat_class:
        raise ValueError(f"{json_path}: categories[{k}]: duplicate category id {cat['id']!r}")
      cat_class[cat["id"]] = names.id(cat["name"])
    index = base.Index(root)
    images, where_image = {}, {}
    for k, im in enumerate(data["images"]):
      where = f"{json_path}: images[{k}]"
      if not isinstance(im, dict):
        index.skip(where, f"image entry is not an object: {im!r}")
      elif _id(im.get("id")) is None:
        index.skip(where, f"'id' must be an int or str, got {im.get('id')!r}")
      elif im["id"] in images:
        raise ValueError(f"{json_path}: images[{k}]: duplicate image id {im['id']!r} (first at "
                         f"{where_image[im['id']]}); annotations could not be attributed")
      else:
        images[im["id"]], where_image[im["id"]] = im, f"images[{k}]"
    anns: dict = {i: [] for i in images}
    for k, ann in enumerate(data.get("annotations", [])):
      where = f"{json_path}: annotations[{k}]"
      if not isinstance(ann, dict):
        index.skip(where, f"annotation is not an object: {ann!r}")
      elif _id(ann.get("image_id")) not in images:
        index.skip(where, f"annotation refers to unknown image_id {ann.get('image_id')!r}")
      elif _id(ann.get("category_id")) not in cat_class:
        index.skip(where, f"annotation has unknown category_id {ann.get('category_id')!r}")
      elif "bbox" not in ann and not ann.get("segmentation"):
        index.skip(where, "annotation has neither bbox nor segmentation")
      elif "instance_id" in ann and (not isinstance(ann["instance_id"], int)
                                     or isinstance(ann["instance_id"], bool)
                                     or not 1 <= ann["instance_id"] <= io.MAX_LABEL_VALUE):
        index.skip(where, f"'instance_id' must be an int in [1, {io.MAX_LABEL_VALUE}], got "
                          f"{ann['instance_id']!r}")
      else:
        anns[ann["image_id"]].append((where, ann))
    entries, notes = [], collections.Counter()
    for image_id, im in images.items():
      where = f"{json_path}: {where_image[image_id]}"
      entry = self._index_image(im, where, root, index)
      if entry is None:
        continue
      path, mask, hw, fabric_id = entry
      kept = []
      for ann_where, ann in anns[image_id]:
        if "bbox" in ann or mask is not None:
          try:
            bbox, clipped = check_bbox(ann.get("bbox"), hw)
          except ValueError as e:
            index.skip(ann_where, f"{e} (image {path})")
            continue
          notes["clipped_box"] += clipped
          ann = {**ann, "bbox": bbox}
        kept.append((cat_class[ann["category_id"]], ann))
      entries.append((path, mask, kept, fabric_id))
    super().__init__(f"coco:{os.path.basename(json_path)}", entries, names.freeze(),
                     index.skipped)
    self.notes.update({k: v for k, v in notes.items() if v})

  @staticmethod
  def _index_image(im: dict, where: str, root: str, index: base.Index):
    """(path, mask path or None, (h, w), fabric_id) of a valid image entry, else None (a skip)."""
    name = im.get("file_name")
    if not isinstance(name, str) or not name:
      index.skip(where, f"'file_name' must be a non-empty relative path string, got {name!r}")
      return None
    mask_name = im.get("mask_file")
    if mask_name is not None and (not isinstance(mask_name, str) or not mask_name):
      index.skip(where, f"'mask_file' must be a non-empty relative path string, got "
                        f"{mask_name!r}")
      return None
    fabric_id = im.get("fabric_id", -1)
    if not isinstance(fabric_id, int) or isinstance(fabric_id, bool):
      index.skip(where, f"'fabric_id' must be an int, got {fabric_id!r}")
      return None
    try:
      path = io.member_path(root, name, f"{where} 'file_name'")
      mask = None if mask_name is None else io.member_path(root, mask_name,
                                                           f"{where} 'mask_file'")
    except io.ReadError as e:
      index.skip(e.path, e.reason)
      return None
    hw = index.pair(path, [mask] if mask else [])
    if hw is None:
      return None
    if "height" in im and "width" in im and hw != (im["height"], im["width"]):
      index.skip(path, f"wrong size: {hw} (HxW), the COCO file says {(im['height'], im['width'])}")
      return None
    return path, mask, hw, fabric_id

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
