"""A target's own class names read as the detector's: `"nep:knot,fuzzyball:knot"` on any source.

Readers already give fabgen's global ids to names they know (the AITEX reader's code map is the
model: code 030 "nep" is read as `knot`). A user's data set has its own words for the same
defects; a class map renames them without touching the files:

  src = class_map.remap(open_source("data/mill_a_test"), parse("speck:color_spot,hole:hole"))

Every class the map does not name keeps its own name. A name that is not one of fabgen's six
stays a class of its own (an id after the six), so an evaluation can report it in its own row
instead of counting it as a miss. Renaming never merges instances or changes masks.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from fabgen.data import classes as classes_lib


def parse(text: str, key: str = "target.class_map") -> dict[str, str]:
  """`"a:b,c:d"` -> {"a": "b", "c": "d"}; an error names `key` and the bad entry."""
  out: dict[str, str] = {}
  for part in (p.strip() for p in str(text or "").split(",")):
    if not part:
      continue
    src, sep, dst = (s.strip() for s in part.partition(":"))
    if not sep or not src or not dst:
      raise ValueError(f"{key}={text!r}: entry {part!r} is not 'target_name:detector_name'")
    if src in out and out[src] != dst:
      raise ValueError(f"{key}={text!r}: {src!r} is mapped to both {out[src]!r} and {dst!r}")
    out[src] = dst
  return out


class RemappedSource:
  """`source` with its class names renamed by `mapping` (ids re-derived; see module docstring)."""

  def __init__(self, source: Any, mapping: Mapping[str, str]):
    self.source = source
    old = list(source.class_names)
    unknown = sorted(set(mapping) - set(old))
    if unknown:
      raise ValueError(f"class map names {unknown}, which {source.name} does not have; its "
                       f"classes: {old[classes_lib.NUM_CLASSES:] or old}")
    names = list(classes_lib.CLASSES)
    lut = []
    for name in old:
      new = mapping.get(name, name)
      if new not in names:
        names.append(new)
      lut.append(names.index(new))
    self.lut = np.asarray(lut, np.int32)
    self.class_names = tuple(names)
    self.name = source.name
    self.mapping = dict(mapping)

  @property
  def skipped(self):
    return self.source.skipped

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    sample = dict(self.source[index])
    for key in ("box_class", "instance_class"):
      if key in sample:
        ids = np.asarray(sample[key])
        sample[key] = np.where(ids >= 0, self.lut[np.clip(ids, 0, len(self.lut) - 1)],
                               ids).astype(ids.dtype)
    return sample

  def __getattr__(self, attr):  # path_of, image_hw, layout, summary, ... of the wrapped source
    if attr == "source":  # not set yet (unpickling): no recursion
      raise AttributeError(attr)
    return getattr(self.source, attr)


def remap(source: Any, mapping: Mapping[str, str]) -> Any:
  """`source` itself when `mapping` is empty, else a `RemappedSource`."""
  return RemappedSource(source, mapping) if mapping else source
