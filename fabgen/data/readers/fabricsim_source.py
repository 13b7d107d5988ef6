"""FabricSim as a source: `fabricsim:<preset>:<split>[:seed]`, the same interface as disk data.

Records come from `FabricSim.record` (numpy, deterministic per preset, seed and index); a batch
of any indices (shuffled ones included) goes through `FabricSim.render_batch`, which is jitted
and vmapped, so a pipeline pays one device call per batch instead of one per image.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from fabgen.data import classes as classes_lib
from fabgen.data.fabricsim import FabricSim
from fabgen.data.readers import base


@functools.lru_cache(maxsize=8)
def get_sim(preset: str, seed: int):
  """One FabricSim per (preset, seed) per process, so its jitted renderers compile once."""
  return FabricSim(preset, seed=seed)


def parse_spec(spec: str) -> tuple[str, str, int]:
  """`fabricsim:<preset>:<split>[:seed]` -> (preset, split, seed), with a clear error."""
  parts = spec.split(":")
  if parts[0] != "fabricsim" or len(parts) not in (3, 4):
    raise ValueError(f"{spec!r}: expected fabricsim:<preset>:<split>[:seed]")
  seed = 0
  if len(parts) == 4:
    try:
      seed = int(parts[3])
    except ValueError:
      raise ValueError(f"{spec!r}: seed {parts[3]!r} is not an integer") from None
  return parts[1], parts[2], seed


class FabricSimSource(base.Source):
  """One split of one FabricSim preset."""

  layout = "fabricsim"

  def __init__(self, preset: str, split: str, seed: int = 0):
    self.sim = get_sim(preset, int(seed))
    if split not in self.sim.splits:
      raise ValueError(f"fabricsim:{preset}: unknown split {split!r}; splits: "
                       f"{', '.join(self.sim.splits)}")
    self.preset, self.split, self.seed = preset, split, seed
    self._specs = None
    super().__init__(f"fabricsim:{preset}:{split}:{seed}", range(self.sim.num_records(split)),
                     classes_lib.CLASSES)

  def _path(self, entry) -> str:
    return f"{self.name}[{entry}]"

  def _load(self, entry) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in self.sim.record(self.split, int(entry)).items()}

  def image_hw(self, index: int) -> tuple[int, int]:
    return tuple(int(v) for v in self.sim.preset.shape)

  def stacked(self, indices: Sequence[int], pad_to: int | None = None
              ) -> dict[str, np.ndarray]:
    """Stacked records of any indices in one jit(vmap) call (one compile per batch size)."""
    if self._specs is None:  # (fabric, image index, class) of every record: cheap numpy
      self._specs = self.sim.record_specs(self.split)
    idx = np.asarray([int(self._entry(i)) for i in indices], np.int64)
    specs = self._specs[idx]
    if pad_to is not None and len(specs) < pad_to:  # one compiled batch size for a ragged end
      specs = np.concatenate([specs, np.repeat(specs[-1:], pad_to - len(specs), 0)])
    out = self.sim.render_batch(specs[:, 0], specs[:, 1], specs[:, 2])
    return {k: np.asarray(v)[:len(idx)] for k, v in out.items()}

  def get_batch(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    batch = self.stacked(indices)
    return [{k: v[i] for k, v in batch.items()} for i in range(len(indices))]
