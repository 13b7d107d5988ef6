"""MVTec-AD category folders: `train/good/`, `test/<defect>/`, `ground_truth/<defect>/<stem>_mask.png`.

One category (e.g. `carpet/`) is one source. Its `good` images are defect-free records; each
defect image has one binary mask (thresholded above 127), which becomes one instance of the
folder's class, with one box per connected component. Defect folder names that mean a fabgen
class map to it (`color` -> color_spot, `oil` -> oil_stain); the others keep their own names,
appended after the six global classes.

`subset` selects `train` or `test` (default: both, train first).
"""

from __future__ import annotations

import os

import numpy as np

from fabgen.data.readers import base
from fabgen.data.readers import images as io

# MVTec defect folder -> fabgen class, where the meaning is the same.
CLASS_MAP = {"color": "color_spot", "oil": "oil_stain"}
SUBSETS = ("train", "test")


def looks_like(folder: str) -> bool:
  """A category folder has `train/good` or `test/` next to `ground_truth/`."""
  return (os.path.isdir(os.path.join(folder, "train", "good"))
          or (os.path.isdir(os.path.join(folder, "test"))
              and os.path.isdir(os.path.join(folder, "ground_truth"))))


def looks_like_root(folder: str) -> list[str]:
  """Category folders inside an MVTec root (to give a helpful error), else []."""
  if not os.path.isdir(folder):
    return []
  return sorted(d for d in os.listdir(folder) if looks_like(os.path.join(folder, d)))


class MVTecSource(base.Source):
  """Records of one MVTec-AD category (see the module docstring)."""

  layout = "mvtec"

  def __init__(self, folder: str, subset: str | None = None):
    if subset is not None and subset not in SUBSETS:
      raise ValueError(f"{folder}: MVTec subset must be one of {SUBSETS}, got {subset!r}")
    names = base.ClassNames()
    index = base.Index(folder)
    entries = []
    subsets = SUBSETS if subset is None else (subset,)
    gt_root = os.path.join(folder, "ground_truth")
    used_masks = set()
    for split in subsets:
      split_dir = os.path.join(folder, split)
      if not os.path.isdir(split_dir):
        continue
      for defect in sorted(os.listdir(split_dir)):
        d = os.path.join(split_dir, defect)
        if not os.path.isdir(d):
          continue
        for fname in io.list_images(d):
          path = os.path.join(d, fname)
          if defect == "good":
            if index.size(path) is not None:
              entries.append((path, None, -1))
            continue
          stem = os.path.splitext(fname)[0]
          mask = os.path.join(gt_root, defect, f"{stem}_mask.png")
          if not os.path.lexists(mask):
            index.skip(path, f"no mask: expected {mask}")
            continue
          used_masks.add(os.path.abspath(mask))
          if index.pair(path, [mask]) is not None:
            entries.append((path, mask, names.id(CLASS_MAP.get(defect, defect))))
    if "test" in subsets and os.path.isdir(gt_root):
      for defect in sorted(os.listdir(gt_root)):
        for fname in io.list_images(os.path.join(gt_root, defect)):
          mask = os.path.abspath(os.path.join(gt_root, defect, fname))
          if mask not in used_masks:
            index.skip(mask, "mask with no image")
    skipped = index.skipped
    if not entries and not skipped:
      raise FileNotFoundError(f"{folder}: no MVTec images under train/good or test/<defect>")
    super().__init__(f"mvtec:{os.path.basename(os.path.normpath(folder))}", entries,
                     names.freeze(), skipped)

  def _path(self, entry) -> str:
    return entry[0]

  def _load(self, entry) -> dict[str, np.ndarray]:
    path, mask_path, class_id = entry
    image = io.read_image(path)
    if mask_path is None:
      return self._make(image, np.zeros(image.shape[:2], np.int32), [])
    mask = io.read_binary_mask(mask_path, image.shape[:2])
    if not mask.any():
      raise io.ReadError(mask_path, f"empty mask for a defect image ({path})")
    return self._make(image, mask.astype(np.int32), [class_id])
