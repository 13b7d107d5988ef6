"""The generic layout: `images/<stem>.<ext>`, `masks/<stem>.png`, and `classes.json`.

`classes.json` says how to read the masks:

  ["knot", "oil_stain"]                                  class-index masks: value v is names[v-1]
  {"mask_type": "class",    "classes": {"1": "knot", "2": "oil_stain"}}
  {"mask_type": "instance", "classes": {"<stem>": {"1": "knot", "2": "knot"}},
                            "default_class": "knot"}     instance ids, classes per image
  {"mask_type": "binary",   "classes": {"<stem>": "knot"}, "default_class": "knot"}
                                                         0/255 masks (anti-aliasing cut at 127)

Optional `"unmasked": "good"` reads an image without a mask as defect-free; by default such an
image is skipped and reported, because a missing mask more often means a lost file than a good
image. In a class-index mask each class present is one instance (boxes per component).
"""

from __future__ import annotations

import json
import os

import numpy as np

from fabgen.data.readers import base
from fabgen.data.readers import images as io

MASK_TYPES = ("class", "instance", "binary")


def looks_like(folder: str) -> bool:
  return os.path.isdir(os.path.join(folder, "images")) and (
      os.path.isdir(os.path.join(folder, "masks"))
      or os.path.exists(os.path.join(folder, "classes.json")))


def _read_spec(path: str) -> dict:
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: missing; the generic layout needs classes.json to name the "
                            f"mask values (see fabgen/data/readers/generic.py)")
  try:
    with open(path, encoding="utf-8") as f:
      spec = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from e
  if isinstance(spec, list):
    spec = {"mask_type": "class", "classes": {str(i + 1): n for i, n in enumerate(spec)}}
  if not isinstance(spec, dict):
    raise ValueError(f"{path}: expected a list of class names or an object")
  kind = spec.get("mask_type", "class")
  if kind not in MASK_TYPES:
    raise ValueError(f"{path}: mask_type {kind!r} is not one of {MASK_TYPES}")
  if spec.get("unmasked", "skip") not in ("skip", "good"):
    raise ValueError(f"{path}: unmasked must be 'skip' or 'good', got {spec['unmasked']!r}")
  classes = spec.get("classes", {})
  if not isinstance(classes, dict):
    raise ValueError(f"{path}: 'classes' must be an object")
  if kind == "class":
    for value, name in classes.items():
      if not str(value).isdigit() or int(value) <= 0 or not isinstance(name, str):
        raise ValueError(f"{path}: class map entry {value!r}: {name!r} must be a positive "
                         f"integer mask value mapped to a class name")
  return {**spec, "mask_type": kind, "classes": classes}


class GenericSource(base.Source):
  """Records of a generic images/masks/classes.json folder (see the module docstring)."""

  layout = "generic"

  def __init__(self, folder: str):
    spec_path = os.path.join(folder, "classes.json")
    self.spec = _read_spec(spec_path)
    self.spec_path = spec_path
    self.names = base.ClassNames()
    if self.spec["mask_type"] == "class":
      self.value_class = {int(v): self.names.id(n) for v, n in self.spec["classes"].items()}
    else:
      for value in self.spec["classes"].values():
        for n in (value.values() if isinstance(value, dict) else [value]):
          self.names.id(n)
      if "default_class" in self.spec:
        self.names.id(self.spec["default_class"])
    img_dir, mask_dir = os.path.join(folder, "images"), os.path.join(folder, "masks")
    images = {os.path.splitext(n)[0]: os.path.join(img_dir, n) for n in io.list_images(img_dir)}
    masks = {os.path.splitext(n)[0]: os.path.join(mask_dir, n) for n in io.list_images(mask_dir)}
    index = base.Index(folder)
    entries, skipped = [], index.skipped
    for stem, path in sorted(images.items()):
      mask = masks.get(stem)
      if mask is None:
        if self.spec.get("unmasked", "skip") == "good":
          if index.size(path) is not None:
            entries.append((stem, path, None))
        else:
          skipped.append((path, f"no mask: expected {os.path.join(mask_dir, stem + '.png')} "
                                f"(set \"unmasked\": \"good\" in classes.json for defect-free)"))
        continue
      if index.pair(path, [mask]) is None:
        continue
      entries.append((stem, path, mask))
    skipped += [(m, "mask with no image") for s, m in sorted(masks.items()) if s not in images]
    if not entries and not skipped:
      raise FileNotFoundError(f"{folder}: no images in {img_dir}")
    super().__init__(f"generic:{os.path.basename(os.path.normpath(folder))}", entries,
                     self.names.freeze(), skipped)

  def _path(self, entry) -> str:
    return entry[1]

  def _class_of(self, stem: str, value: int | None, mask_path: str) -> int:
    per_image = self.spec["classes"].get(stem)
    if isinstance(per_image, dict) and value is not None:
      name = per_image.get(str(value), self.spec.get("default_class"))
    elif isinstance(per_image, str):
      name = per_image
    else:
      name = self.spec.get("default_class")
    if name is None:
      what = f"instance {value}" if value is not None else "the mask"
      raise io.ReadError(mask_path, f"no class for {what} of {stem!r} in {self.spec_path} "
                                    f"(and no default_class)")
    return self.names.names.index(name)

  def _load(self, entry) -> dict[str, np.ndarray]:
    stem, path, mask_path = entry
    image = io.read_image(path)
    hw = image.shape[:2]
    if mask_path is None:
      return self._make(image, np.zeros(hw, np.int32), [])
    kind = self.spec["mask_type"]
    if kind == "binary":
      m = io.read_binary_mask(mask_path, hw)
      if not m.any():
        return self._make(image, np.zeros(hw, np.int32), [])
      return self._make(image, m.astype(np.int32), [self._class_of(stem, None, mask_path)])
    labels = io.read_label_mask(mask_path, hw)
    values = [int(v) for v in np.unique(labels) if v != 0]
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    classes = []
    for k, v in enumerate(values, start=1):
      if kind == "class":
        if v not in self.value_class:
          raise io.ReadError(mask_path, f"mask value {v} is not in {self.spec_path} (knows "
                                        f"{sorted(self.value_class)})")
        classes.append(self.value_class[v])
      else:
        classes.append(self._class_of(stem, v, mask_path))
      lut[v] = k
    return self._make(image, lut[labels], classes)
