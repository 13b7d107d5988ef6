"""A folder of plain images, read as defect-free: the usual form of "my new fabric's good images".

  src = open_source("photos/new_fabric")          # *.png / *.jpg / *.bmp / *.tif in the folder
  src = open_source("photos/new_fabric@good")     # the same, said explicitly

Every image (subfolders included, sorted) becomes a record with an empty instance mask, at its
natural size (line-scan strips stay strips). This is what synthesis backgrounds
(`fabgen synthesize --backgrounds`) and `fabgen evaluate --good` need; a folder that also holds
masks belongs in the generic layout (`generic.py`) instead.
"""

from __future__ import annotations

import os

import numpy as np

from fabgen.data.readers import base
from fabgen.data.readers import images as io


def image_files(folder: str) -> list[str]:
  """Image files under `folder`, recursively, in sorted order."""
  out = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    out += [os.path.join(root, f) for f in sorted(files) if io.is_image_file(f)]
  return out


def looks_like(folder: str) -> bool:
  return os.path.isdir(folder) and bool(image_files(folder))


class PlainFolderSource(base.Source):
  """Defect-free records of every image under a folder."""

  layout = "plain"

  def __init__(self, folder: str, subset: str | None = None):
    if subset not in (None, "good"):
      raise ValueError(f"{folder}: a folder of plain images is all defect-free; its only subset "
                       f"is 'good', got {subset!r}")
    listed = image_files(folder)
    if not listed:
      raise FileNotFoundError(f"{folder}: no images (png, jpg, bmp, tif) in it or below it")
    index = base.Index(folder)  # confined to the folder, header-checked; failures are skips
    paths = [p for p in listed if index.size(p) is not None]
    super().__init__(f"plain:{os.path.basename(os.path.normpath(folder))}", paths, (),
                     index.skipped)

  def _path(self, entry) -> str:
    return entry

  def _load(self, entry) -> dict[str, np.ndarray]:
    image = io.read_image(entry)
    return self._make(image, np.zeros(image.shape[:2], np.int32), [])
