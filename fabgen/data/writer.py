"""Write records as a fabgen sample set: PNG images, instance-mask PNGs and COCO JSON.

The layout is the one the synthesis writer uses (`fabgen/synthesis/stream.py`), so every set
on disk reads back through `open_source(folder)`:

  images/<name>.png      the image
  masks/<name>.png       instance mask: 0 background, k = instance k (uint8; uint16 if needed)
  annotations.json       COCO; category ids = the source's class ids (global ids for the six);
                         each image entry carries "mask_file" (and "fabric_id"); each annotation
                         is one box (one connected component) with its "instance_id", its
                         component's RLE "segmentation" and pixel "area", so pycocotools can
                         evaluate masks and boxes directly
  manifest.json          what was written, `"complete": true` once everything above exists
  contact_sheet.png      the first samples with masks and boxes drawn

Every file is written under a temporary name and renamed, so an interrupted run leaves whole
files only, and annotations.json and the manifest are written last.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from fabgen.data import drawing

FORMAT = "fabgen-samples-v1"
_STRUCTURE = np.ones((3, 3), bool)


def _atomic(path: str, write) -> None:
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
  write(tmp)
  os.replace(tmp, path)


def write_png(path: str, array: np.ndarray) -> None:
  """PNG via a temporary name; 2-D int arrays above 255 are written as 16-bit."""
  array = np.asarray(array)
  if array.ndim == 2 and array.dtype != np.uint8:
    if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
      raise ValueError(f"{path}: mask values {array.min()}..{array.max()} do not fit a PNG")
    array = array.astype(np.uint8 if array.max(initial=0) < 256 else np.uint16)
  _atomic(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def write_json(path: str, obj: Any) -> None:
  def write(tmp):
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(obj, f)
  _atomic(path, write)


def _component_pixels(instance: np.ndarray, box: np.ndarray) -> np.ndarray:
  """bool mask of the 8-connected component of `instance` whose bounding box is `box`."""
  x0, y0, x1, y1 = (int(round(v)) for v in box)
  comps, _ = ndimage.label(instance, structure=_STRUCTURE)
  for lab, sl in enumerate(ndimage.find_objects(comps), start=1):
    if sl is not None and (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop) == (x0, y0, x1, y1):
      return comps == lab
  out = np.zeros_like(instance, bool)  # not a component box: the instance's pixels inside it
  out[y0:y1, x0:x1] = instance[y0:y1, x0:x1]
  return out


def coco_annotations(sample: dict, image_id: int, first_id: int) -> list[dict]:
  """COCO annotations (one per valid box) of one record, with RLE component segmentation."""
  from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  mask = np.asarray(sample["instance_mask"])
  anns = []
  for box, c, k in zip(np.asarray(sample["boxes"]), np.asarray(sample["box_class"]),
                       np.asarray(sample["box_instance"])):
    if k <= 0:
      continue
    pixels = _component_pixels(mask == k, box)
    rle = mask_utils.encode(np.asfortranarray(pixels.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    x0, y0, x1, y1 = (float(v) for v in box)
    anns.append({"id": first_id + len(anns), "image_id": image_id, "category_id": int(c),
                 "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(pixels.sum()), "iscrowd": 0,
                 "instance_id": int(k), "segmentation": rle})
  return anns


def check_out_dir(out_dir: str, overwrite: bool = False) -> None:
  """Refuses a non-empty `out_dir` that is not a fabgen sample set (unless `overwrite`).

  Rewriting our own set is fine (its files get the same names); writing into someone's folder
  of photos would mix our files into it, and replace any of theirs named like ours.
  """
  if overwrite or not os.path.isdir(out_dir) or not os.listdir(out_dir):
    return
  manifest = os.path.join(out_dir, "manifest.json")
  try:
    with open(manifest, encoding="utf-8") as f:
      ours = json.load(f).get("format") == FORMAT
  except (OSError, ValueError, AttributeError):
    ours = False
  if not ours:
    raise ValueError(f"--out {out_dir} is not empty and is not a fabgen sample set (no "
                     f"{FORMAT} manifest.json); use an empty folder or pass --overwrite")


def write_sample_set(samples: Iterable[dict], out_dir: str, class_names: Sequence[str],
                     sheet_count: int = 16, extra_manifest: dict | None = None,
                     log=None, overwrite: bool = False) -> dict:
  """Writes every record of `samples` to `out_dir` (layout above); returns the manifest.

  A non-empty `out_dir` must be a fabgen sample set already, unless `overwrite` (see
  `check_out_dir`).
  """
  check_out_dir(out_dir, overwrite)
  for sub in ("images", "masks"):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  write_json(os.path.join(out_dir, "manifest.json"),
             {"format": FORMAT, "complete": False, **(extra_manifest or {})})
  images, annotations, first = [], [], []
  per_class: dict[str, int] = {}
  for i, s in enumerate(samples):
    name = f"{i:08d}"
    image = np.asarray(s["image"], np.uint8)
    h, w = image.shape[:2]
    write_png(os.path.join(out_dir, "images", f"{name}.png"), image)
    write_png(os.path.join(out_dir, "masks", f"{name}.png"), np.asarray(s["instance_mask"]))
    images.append({"id": i, "file_name": f"images/{name}.png", "width": int(w),
                   "height": int(h), "mask_file": f"masks/{name}.png",
                   "fabric_id": int(np.asarray(s.get("fabric_id", -1)))})
    anns = coco_annotations(s, i, len(annotations) + 1)
    annotations += anns
    for c in np.asarray(s["instance_class"]):
      if c >= 0:
        per_class[class_names[int(c)]] = per_class.get(class_names[int(c)], 0) + 1
    if len(first) < sheet_count:
      first.append({k: np.asarray(v) for k, v in s.items()})
    if log and (i + 1) % 100 == 0:
      log(f"{i + 1} samples written")
  if not images:
    raise ValueError(f"{out_dir}: no samples to write")
  write_json(os.path.join(out_dir, "annotations.json"), {
      "info": {"description": "fabgen sample set", "format": FORMAT},
      "categories": [{"id": i, "name": n} for i, n in enumerate(class_names)],
      "images": images, "annotations": annotations})
  sheet = drawing.contact_sheet(first, class_names)
  _atomic(os.path.join(out_dir, "contact_sheet.png"), lambda t: sheet.save(t, format="PNG"))
  manifest = {"format": FORMAT, "complete": True, **(extra_manifest or {}),
              "images": len(images), "boxes": len(annotations),
              "instances_per_class": per_class, "class_names": list(class_names)}
  write_json(os.path.join(out_dir, "manifest.json"), manifest)
  return manifest
