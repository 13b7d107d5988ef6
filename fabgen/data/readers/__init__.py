"""Readers of labelled fabric images, behind one entry point: `open_source(spec)`.

  src = open_source("data/mvtec/carpet")          # layout detected from the folder
  src = open_source("data/aitex@defect")          # '@subset': train/test (MVTec), defect/good (AITEX)
  src = open_source("synth/")                     # a fabgen sample set (annotations.json + masks/)
  src = open_source("labels/instances.json")      # any COCO file
  src = open_source("fabricsim:simple:train:0")   # the procedural generator
  src = open_source("photos/new_fabric")          # a folder of plain images: defect-free
  len(src); src[i]; src.class_names; src.skipped; src.summary(); src.name

Every source yields `fabgen.data.sample` records (images at their natural size), class ids below
six are the global `fabgen.data.classes` ids, and nothing is dropped without a `(path, reason)`
entry in `src.skipped`.
"""

from __future__ import annotations

import logging
import os

from fabgen.data.readers import aitex
from fabgen.data.readers import coco
from fabgen.data.readers import fabricsim_source
from fabgen.data.readers import generic
from fabgen.data.readers import mvtec
from fabgen.data.readers import plain
from fabgen.data.readers.base import Source
from fabgen.data.readers.base import spread_indices
from fabgen.data.readers.images import ReadError

__all__ = ["open_source", "Source", "ReadError", "detect_layout", "spread_indices"]


def detect_layout(folder: str) -> str:
  """Which reader a folder needs: coco (annotations.json), mvtec, aitex or generic."""
  if os.path.isfile(folder) and folder.lower().endswith(".json"):
    return "coco"
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{folder}: no such file or folder")
  if os.path.isfile(os.path.join(folder, "annotations.json")):
    return "coco"
  if mvtec.looks_like(folder):
    return "mvtec"
  if aitex.looks_like(folder):
    return "aitex"
  if generic.looks_like(folder):
    return "generic"
  categories = mvtec.looks_like_root(folder)
  if categories:
    raise ValueError(f"{folder}: an MVTec-AD root; open one category, e.g. "
                     f"{os.path.join(folder, categories[0])}")
  if plain.looks_like(folder):  # images and nothing that says labels: defect-free images
    return "plain"
  raise ValueError(f"{folder}: unknown layout; expected annotations.json (COCO), an MVTec "
                   f"category (train/good, test/, ground_truth/), an AITEX root (Defect_images/, "
                   f"Mask_images/, NoDefect_images/), images/ + masks/ + classes.json, or "
                   f"plain images (read as defect-free)")


def open_source(spec: str, validate: bool = False) -> Source:
  """Opens a data source from a folder, a COCO file, or `fabricsim:<preset>:<split>[:seed]`.

  Args:
    spec: see the module docstring. A folder may end in `@<subset>`.
    validate: decode every sample now and move the ones that fail into `skipped` (slower; what
      `fabgen data inspect` does). Otherwise a file that only a full decode finds broken raises
      `ReadError` naming it when it is read.
  """
  if spec.startswith("fabricsim:"):
    src = fabricsim_source.FabricSimSource(*fabricsim_source.parse_spec(spec))
    return src.validate() if validate else src
  if spec.startswith("tfds:"):
    # Deferred: tensorflow_datasets is an optional, heavy dependency (only tfds: specs need it).
    from fabgen.data import tfds_fabricsim  # pylint: disable=g-import-not-at-top
    return tfds_fabricsim.open_tfds_source(spec)
  path, subset = spec, None
  if not os.path.exists(spec) and "@" in os.path.basename(spec):
    path, subset = spec.rsplit("@", 1)
  layout = detect_layout(path)
  if layout == "coco":
    if subset is not None:
      raise ValueError(f"{spec}: a COCO set has no subsets")
    json_path = path if os.path.isfile(path) else os.path.join(path, "annotations.json")
    src = coco.CocoSource(json_path)
  elif layout == "mvtec":
    src = mvtec.MVTecSource(path, subset)
  elif layout == "aitex":
    src = aitex.AitexSource(path, subset)
  elif layout == "plain":
    src = plain.PlainFolderSource(path, subset)
  else:
    if subset is not None:
      raise ValueError(f"{spec}: the generic layout has no subsets")
    src = generic.GenericSource(path)
  src = src.validate() if validate else src
  report_skipped(src)
  return src


def report_skipped(src: Source, first: int = 5) -> None:
  """Logs what a source skipped at open (count, the first few files and reasons): no data is
  dropped without a word in training, evaluation and synthesis logs alike."""
  if src.skipped:
    shown = "; ".join(f"{p}: {r}" for p, r in src.skipped[:first])
    more = f" (and {len(src.skipped) - first} more; `fabgen data inspect` lists all)" if len(
        src.skipped) > first else ""
    logging.warning("%s: %d files skipped: %s%s", src.name, len(src.skipped), shown, more)
