"""The interface every data source shares, and the bookkeeping of what was skipped and why.

A source is a random-access list of `fabgen.data.sample` records (`len(src)`, `src[i]`), which
is exactly what a grain `MapDataset` needs. Folder readers index their files at open time
(pairing images with masks from directory listings and image headers, which is cheap) and decode
on access. Problems found while indexing (a mask with no image, a mask of the wrong size, ...)
land in `src.skipped` as `(path, reason)`; nothing is dropped silently. Problems only a full decode
can find (truncated pixel data, an empty mask on a defect image) raise `ReadError` naming the
file on access, or, with `validate=True` (what `fabgen data inspect` uses), are found at open
time and moved into `skipped` as well, so that every index then decodes.
"""

from __future__ import annotations

import collections
import logging
import os
from typing import Any, Sequence

import numpy as np

from fabgen.data import classes as classes_lib
from fabgen.data.readers import images as io
from fabgen.data.readers import records
from fabgen.data.readers.images import ReadError


class ClassNames:
  """Global class ids for known names; names the data set adds get ids after the six."""

  def __init__(self):
    self.names = list(classes_lib.CLASSES)

  def id(self, name: str) -> int:
    if name not in self.names:
      self.names.append(name)
    return self.names.index(name)

  def freeze(self) -> tuple[str, ...]:
    return tuple(self.names)


def spread_indices(total: int, count: int) -> list[int]:
  """`min(count, total)` indices spread evenly over `range(total)`, ascending.

  What a "scan at most N records" option reads: FabricSim splits and folder-per-class data sets
  are ordered by class, so their *first* N records can all be one class (the demo's generators
  once learned only colour spots from FabricSim's first 24 records).
  """
  count = max(0, min(int(count), int(total)))
  return [int(i) for i in np.linspace(0, total, count, endpoint=False)] if count else []


class Index:
  """What a folder reader gathers while indexing: `(path, reason)` skips and header checks.

  Every file a reader lists goes through `size` or `pair` before it becomes an entry: the path is
  confined to the data set folder (symlinks resolved), special files are refused unopened, and
  the header must decode within PIL's decompression limit. A failure is a skip with its reason.
  """

  def __init__(self, root: str):
    self.root = root
    self.skipped: list[tuple[str, str]] = []

  def skip(self, path: str, reason: str) -> None:
    self.skipped.append((path, reason))

  def size(self, path: str) -> tuple[int, int] | None:
    """(height, width) of a confined, readable image header; None (and a skip) otherwise."""
    try:
      io.confine(self.root, path)
      return io.image_size(path)
    except ReadError as e:
      self.skip(e.path, e.reason)
      return None

  def pair(self, image: str, masks: Sequence[str]) -> tuple[int, int] | None:
    """The image's size if it and all its masks pass `size` and match; None (and skips) else."""
    hw = self.size(image)
    if hw is None:
      return None
    ok = True
    for mask in masks:
      mhw = self.size(mask)
      if mhw is None:
        ok = False
      elif mhw != hw:
        self.skip(mask, f"wrong-size mask: {mhw} (HxW), its image {image} is {hw}")
        ok = False
    return hw if ok else None


class Source:
  """Base of all sources. Subclasses fill `entries` and implement `_load` and `_path`."""

  layout = "base"

  def __init__(self, name: str, entries: Sequence[Any], class_names: Sequence[str],
               skipped: Sequence[tuple[str, str]] = ()):
    self.name = name
    self.entries = list(entries)
    self.class_names = tuple(class_names)
    self.skipped: list[tuple[str, str]] = list(skipped)
    self.notes: collections.Counter = collections.Counter()

  # -- what subclasses provide -----------------------------------------------------------------
  def _load(self, entry: Any) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def _path(self, entry: Any) -> str:
    raise NotImplementedError

  # -- the shared interface --------------------------------------------------------------------
  def __len__(self) -> int:
    return len(self.entries)

  def _entry(self, index: int) -> Any:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
    return self.entries[index]

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    entry = self._entry(index)
    try:
      return self._load(entry)
    except records.LabelError as e:
      raise ReadError(self._path(entry), str(e)) from e

  def path_of(self, index: int) -> str:
    """The file a sample comes from (for error messages and `fabgen data inspect`)."""
    return self._path(self._entry(index))

  def image_hw(self, index: int) -> tuple[int, int]:
    """(height, width) of a sample, from the file header when there is a file (cheap)."""
    path = self.path_of(index)
    if os.path.isfile(path):
      return io.image_size(path)
    return tuple(np.asarray(self[index]["image"]).shape[:2])

  def get_batch(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Several samples; sources with a vectorized path (FabricSim) override this."""
    return [self[i] for i in indices]

  def get_batch_skipping(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """`get_batch`, except that a sample only a full decode finds broken is replaced.

    The replacement is the next readable index (a deterministic function of the index, so a
    resumed run reads exactly what an uninterrupted one did); the broken file is counted in
    `read_failures` (path -> reason) and logged once. Training no longer dies at the same step
    on every resume because one file in thousands is truncated.
    """
    try:
      return self.get_batch(indices)
    except ReadError:
      return [self._read_or_next(int(i)) for i in indices]

  def _read_or_next(self, index: int) -> dict[str, np.ndarray]:
    failures = self.__dict__.setdefault("read_failures", {})
    n = len(self)
    for k in range(n):
      j = (index + k) % n
      try:
        return self[j]
      except ReadError as e:
        if e.path not in failures:
          failures[e.path] = e.reason
          logging.warning("%s: skipping unreadable sample %d (%s: %s); %d skipped so far",
                          self.name, j, e.path, e.reason, len(failures))
    raise ReadError(self.name, f"none of its {n} samples can be read")

  def _make(self, image, instance_mask, instance_classes, **kwargs) -> dict[str, np.ndarray]:
    sample, notes = records.make_sample(image, instance_mask, instance_classes, **kwargs)
    self.notes.update(notes)
    return sample

  def validate(self) -> "Source":
    """Decodes every sample now; the ones that fail move to `skipped` (indices then shift)."""
    kept = []
    for entry in self.entries:
      try:
        self._load(entry)
      except (ReadError, records.LabelError) as e:
        path = e.path if isinstance(e, ReadError) else self._path(entry)
        reason = e.reason if isinstance(e, ReadError) else str(e)
        self.skipped.append((path, reason))
        continue
      kept.append(entry)
    self.entries = kept
    return self

  def summary(self, limit: int | None = None) -> dict[str, Any]:
    """Counts per class, image sizes, skipped files and reasons: what `data inspect` prints.

    Decodes the samples (the first `limit` if given); a sample that fails to decode is reported
    under `failed` rather than aborting the summary.
    """
    n = len(self) if limit is None else min(limit, len(self))
    instances, boxes, sizes = collections.Counter(), collections.Counter(), collections.Counter()
    images_with, failed, defect_free = collections.Counter(), [], 0
    for start in range(0, n, 64):
      idx = list(range(start, min(n, start + 64)))
      try:
        batch = self.get_batch(idx)
      except ReadError:
        batch = []
        for i in idx:
          try:
            batch.append(self[i])
          except ReadError as e:
            failed.append((e.path, e.reason))
      for s in batch:
        h, w = np.asarray(s["image"]).shape[:2]
        sizes[f"{h}x{w}"] += 1
        cls = [int(c) for c in np.asarray(s["instance_class"]) if c >= 0]
        defect_free += not cls
        for c in cls:
          instances[self.class_names[c]] += 1
        for c in set(cls):
          images_with[self.class_names[c]] += 1
        for c in np.asarray(s["box_class"]):
          if c >= 0:
            boxes[self.class_names[int(c)]] += 1
    reasons = collections.Counter(reason_kind(r) for _, r in self.skipped + failed)
    return {
        "name": self.name, "layout": self.layout, "samples": len(self), "inspected": n,
        "class_names": list(self.class_names), "defect_free_images": defect_free,
        "images_per_class": dict(images_with), "instances_per_class": dict(instances),
        "boxes_per_class": dict(boxes), "image_sizes": dict(sizes),
        "skipped": len(self.skipped), "skipped_files": [list(s) for s in self.skipped],
        "failed": [list(f) for f in failed], "reasons": dict(reasons), "notes": dict(self.notes),
    }


def reason_kind(reason: str) -> str:
  """The reason without its specifics (sizes, exception text), for counting."""
  return reason.split(" (")[0].split(":")[0]
