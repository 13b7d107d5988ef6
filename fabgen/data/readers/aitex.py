"""The AITEX fabric defect layout: greyscale 4096x256 line-scan strips with per-defect masks.

  Defect_images/NNNN_DDD_FF.png          DDD = defect code, FF = fabric code
  Mask_images/NNNN_DDD_FF_mask.png       one mask, or several: `_mask1.png`, `_mask2.png`, ...
  NoDefect_images/<roll>/*.png           defect-free strips (also accepted directly in the folder)

Each mask file of an image is one defect instance of the image's class. Defect codes that mean a
fabgen class map to it (below); the others keep their AITEX names, appended after the six
global classes. The fabric code becomes the record's `fabric_id`, so fabrics can be held out.
Strips are returned at their natural size; tile them with `fabgen.data.tiling`.

`subset` selects `defect` or `good` (default: both, defect images first).
"""

from __future__ import annotations

import os
import re

import numpy as np

from fabgen.data.readers import base
from fabgen.data.readers import images as io

# AITEX defect code -> (AITEX name, fabgen class or None to keep the AITEX name).
CODES = {
    "002": ("broken_end", "broken_end"),
    "006": ("broken_yarn", "broken_yarn"),
    "010": ("broken_pick", "broken_yarn"),   # a broken weft pick: fabgen's broken_yarn
    "016": ("weft_curling", None),
    "019": ("fuzzyball", None),
    "022": ("cut_selvage", None),
    "023": ("crease", None),
    "025": ("warp_ball", None),
    "027": ("knots", "knot"),
    "029": ("contamination", None),
    "030": ("nep", "knot"),                  # a small knot of entangled fibres
    "036": ("weft_crack", None),
}
NAME_RE = re.compile(r"^(\d+)_(\d{3})_(\d+)$")
SUBSETS = ("defect", "good")


def class_name(code: str) -> str:
  """The class a defect code is read as: a fabgen class, its AITEX name, or `aitex_<code>`."""
  aitex_name, fabgen_name = CODES.get(code, (f"aitex_{code}", None))
  return fabgen_name or aitex_name


def looks_like(folder: str) -> bool:
  return (os.path.isdir(os.path.join(folder, "Defect_images"))
          or os.path.isdir(os.path.join(folder, "NoDefect_images")))


class AitexSource(base.Source):
  """Records of an AITEX root folder (see the module docstring)."""

  layout = "aitex"

  def __init__(self, folder: str, subset: str | None = None):
    if subset is not None and subset not in SUBSETS:
      raise ValueError(f"{folder}: AITEX subset must be one of {SUBSETS}, got {subset!r}")
    names = base.ClassNames()
    index = base.Index(folder)
    entries, skipped = [], index.skipped
    defect_dir = os.path.join(folder, "Defect_images")
    mask_dir = os.path.join(folder, "Mask_images")
    masks_by_stem: dict[str, list[str]] = {}
    for fname in io.list_images(mask_dir):
      m = re.match(r"^(.*)_mask(\d*)\.[^.]+$", fname)
      if m is None:
        skipped.append((os.path.join(mask_dir, fname), "mask name does not end in _mask[N].png"))
        continue
      masks_by_stem.setdefault(m.group(1), []).append(os.path.join(mask_dir, fname))
    used = set()
    if subset in (None, "defect"):
      for fname in io.list_images(defect_dir):
        path = os.path.join(defect_dir, fname)
        stem = os.path.splitext(fname)[0]
        m = NAME_RE.match(stem)
        if m is None:
          skipped.append((path, "name does not match NNNN_DDD_FF (defect and fabric codes)"))
          continue
        masks = sorted(masks_by_stem.get(stem, []), key=_mask_order)
        used.add(stem)
        if not masks:
          skipped.append((path, f"no mask: expected {os.path.join(mask_dir, stem + '_mask.png')}"))
          continue
        if index.pair(path, masks) is None:
          continue
        entries.append((path, tuple(masks), names.id(class_name(m.group(2))), int(m.group(3))))
    if subset is None:
      for stem, masks in sorted(masks_by_stem.items()):
        if stem not in used:
          skipped.extend((mk, "mask with no image") for mk in masks)
    if subset in (None, "good"):
      good_root = os.path.join(folder, "NoDefect_images")
      for dirpath, dirnames, filenames in os.walk(good_root):
        dirnames.sort()
        for fname in sorted(f for f in filenames if io.is_image_file(f)):
          m = NAME_RE.match(os.path.splitext(fname)[0])
          if index.size(os.path.join(dirpath, fname)) is None:
            continue
          entries.append((os.path.join(dirpath, fname), (), -1, int(m.group(3)) if m else -1))
    if not entries and not skipped:
      raise FileNotFoundError(f"{folder}: no AITEX images in Defect_images/ or NoDefect_images/")
    super().__init__(f"aitex:{os.path.basename(os.path.normpath(folder))}", entries,
                     names.freeze(), skipped)

  def _path(self, entry) -> str:
    return entry[0]

  def _load(self, entry) -> dict[str, np.ndarray]:
    path, masks, class_id, fabric = entry
    image = io.read_image(path)
    instance = np.zeros(image.shape[:2], np.int32)
    k = 0
    for mk in masks:
      m = io.read_binary_mask(mk, image.shape[:2])
      if not m.any():
        self.notes["empty_extra_mask"] += 1
        continue
      k += 1
      instance[m] = k
    if masks and k == 0:
      raise io.ReadError(masks[0], f"empty mask for a defect image ({path})")
    return self._make(image, instance, [class_id] * k, fabric_id=fabric)


def _mask_order(path: str) -> int:
  m = re.search(r"_mask(\d*)\.[^.]+$", path)
  return int(m.group(1) or 0)
