"""Stage-1 training examples: defect patches, their masks, and the texture they are conditioned on.

For every defect instance of every record: a `patch_size` window centred on the instance
(shifted to stay inside the image), its mask (that instance only, in [0, 1]), its class, and a
*defect-free* crop of the same fabric whose Gram features are the condition. Where that crop comes
from, best first:

1. FabricSim sources: the same window of `sim.render(fabric, image, -1)`, i.e. the very same
   image without the defect (a perfectly matching texture);
2. the defect-free window of the same image nearest to the defect;
3. a defect-free window of another record with the same `fabric_id`;
4. otherwise the example is dropped and counted in `PatchSet.dropped` (with the reason).

Condition features are computed once, here, on the host (VGG is the expensive part); the
training step only embeds them. The input pipeline is grain: a shuffled, repeated, batched
`MapDataset` whose iterator state the platform checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

import grain
import numpy as np

from fabgen.data import defect_crops
from fabgen.data.readers import open_source, skips, spread_indices
from fabgen.platform import input_options


@dataclasses.dataclass
class PatchSet:
  """Stacked examples (numpy): the whole stage-1 training (or evaluation) set."""

  patches: np.ndarray      # uint8 [N, P, P, 3]
  masks: np.ndarray        # float32 [N, P, P] in [0, 1]
  clean: np.ndarray        # uint8 [N, P, P, 3]: defect-free texture of the same fabric
  class_ids: np.ndarray    # int32 [N] global class ids
  fabric_ids: np.ndarray   # int32 [N] (-1 unknown)
  cond: np.ndarray | None = None   # float32 [N, F] condition features of `clean`
  dropped: list = dataclasses.field(default_factory=list)  # (where, reason)

  def __len__(self):
    return len(self.patches)

  def subset(self, index) -> "PatchSet":
    index = np.asarray(index)
    return PatchSet(self.patches[index], self.masks[index], self.clean[index],
                    self.class_ids[index], self.fabric_ids[index],
                    None if self.cond is None else self.cond[index], list(self.dropped))


def clean_window(defects: np.ndarray, size: int, near: tuple[int, int],
                 stride: int | None = None) -> tuple[int, int] | None:
  """Top-left of the defect-free window nearest to `near`, or None if there is none."""
  h, w = defects.shape
  stride = stride or max(1, size // 4)
  # integral image: defect pixels in any window in O(1)
  ii = np.pad(np.cumsum(np.cumsum(defects > 0, 0), 1), ((1, 0), (1, 0)))
  best, best_d = None, None
  for y in list(range(0, h - size + 1, stride)) + [h - size]:
    for x in list(range(0, w - size + 1, stride)) + [w - size]:
      count = ii[y + size, x + size] - ii[y, x + size] - ii[y + size, x] + ii[y, x]
      if count == 0:
        d = (y - near[0]) ** 2 + (x - near[1]) ** 2
        if best is None or d < best_d:
          best, best_d = (y, x), d
  return best


def _crop(a, y, x, s):
  return a[y:y + s, x:x + s]


def build_patches(records: Iterable[Mapping[str, np.ndarray]], patch_size: int,
                  class_ids: Sequence[int] | None = None, clean_images=None,
                  names: Sequence[str] | None = None, max_per_class: int | None = None
                  ) -> PatchSet:
  """Examples from sample-format records (see the module docstring for the texture rule).

  `clean_images[i]`, when given and not None, is record i's defect-free twin (FabricSim).
  `class_ids` keeps only those classes; `max_per_class` caps each class's count.
  """
  out = {k: [] for k in ("patches", "masks", "clean", "class_ids", "fabric_ids")}
  dropped, pending, counts = [], [], {}
  fabric_clean: dict[int, np.ndarray] = {}
  wanted = None if class_ids is None else set(int(c) for c in class_ids)
  for i, rec in enumerate(records):
    where = names[i] if names is not None else f"record {i}"
    image, inst = np.asarray(rec["image"]), np.asarray(rec["instance_mask"])
    if image.shape[0] < patch_size or image.shape[1] < patch_size:
      dropped.append((where, f"image {image.shape[:2]} smaller than patch_size={patch_size}"))
      continue
    fabric = int(np.asarray(rec.get("fabric_id", -1)))
    twin = None if clean_images is None else clean_images[i]
    if fabric >= 0 and fabric not in fabric_clean:
      spot = clean_window(inst, patch_size, (0, 0))
      if spot is not None:
        fabric_clean[fabric] = _crop(image, *spot, patch_size)
    for k, cls in enumerate(np.asarray(rec["instance_class"])):
      cls = int(cls)
      m = inst == k + 1
      if cls < 0 or not m.any() or (wanted is not None and cls not in wanted):
        continue
      if max_per_class is not None and counts.get(cls, 0) >= max_per_class:
        continue
      y, x = defect_crops.centred_window(defect_crops.mask_box(m), patch_size, m.shape)
      if twin is not None:
        clean = _crop(np.asarray(twin), y, x, patch_size)
      else:
        spot = clean_window(inst, patch_size, (y, x))
        clean = None if spot is None else _crop(image, *spot, patch_size)
      if clean is None:
        pending.append((len(out["patches"]), fabric, where))
      counts[cls] = counts.get(cls, 0) + 1
      out["patches"].append(_crop(image, y, x, patch_size).astype(np.uint8))
      out["masks"].append(_crop(m, y, x, patch_size).astype(np.float32))
      out["clean"].append(None if clean is None else clean.astype(np.uint8))
      out["class_ids"].append(cls)
      out["fabric_ids"].append(fabric)
  keep = np.ones(len(out["patches"]), bool)
  for idx, fabric, where in pending:
    if fabric in fabric_clean:
      out["clean"][idx] = fabric_clean[fabric].astype(np.uint8)
    else:
      keep[idx] = False
      dropped.append((where, "no defect-free window of this fabric to condition on"))
  pick = lambda name, dtype, shape: (np.stack([v for v, k in zip(out[name], keep) if k])
                                     .astype(dtype) if keep.any() else np.zeros(shape, dtype))
  p = patch_size
  return PatchSet(pick("patches", np.uint8, (0, p, p, 3)), pick("masks", np.float32, (0, p, p)),
                  pick("clean", np.uint8, (0, p, p, 3)), pick("class_ids", np.int32, (0,)),
                  pick("fabric_ids", np.int32, (0,)), None, dropped)


class _Names:
  """`names[k]` = "<source>[<index>]" of the k-th record read (filled while reading)."""

  def __init__(self, source_name: str, kept: Sequence[int]):
    self.source_name, self.kept = source_name, kept

  def __getitem__(self, k: int) -> str:
    return f"{self.source_name}[{self.kept[k]}]"


class _SimTwins:
  """Lazy `clean_images[i]` of a FabricSim source: `sim.render(f, i, -1)["image"]`.

  One record at a time through the same jitted `render` the records come from (no extra
  compilation; a batched render would compile once more per batch size).
  """

  def __init__(self, src, indices: Sequence[int]):
    self.src, self.indices = src, indices  # clean_images[i] is the twin of src[indices[i]]

  def __getitem__(self, i):
    entry = int(self.src._entry(self.indices[i]))  # pylint: disable=protected-access
    fabric, image_index, _ = self.src.sim.record_spec(self.src.split, entry)
    return np.asarray(self.src.sim.render(fabric, image_index, -1)["image"])


def from_source(spec_or_source, patch_size: int, max_records: int,
                class_ids: Sequence[int] | None = None,
                max_per_class: int | None = None, on_unreadable: str = "skip") -> PatchSet:
  """Examples from any `fabgen.data.readers` source (a spec string or a `Source`).

  A record only a full decode finds broken is left out and counted in the source's
  `read_failures`, or stops with its path (`on_unreadable`, see `fabgen.data.readers.skips`).
  """
  src = open_source(spec_or_source) if isinstance(spec_or_source, str) else spec_or_source
  name = getattr(src, "name", spec_or_source)
  indices = spread_indices(len(src), max_records)
  if not indices:
    raise ValueError(f"stage-1 data source {name!r} is empty")
  kept: list[int] = []  # indices read so far; record k of `records` is src[kept[k]]

  def readable():
    for i, record in skips.read_indexed(src, indices, on_unreadable):
      kept.append(i)
      yield record

  sim = getattr(src, "sim", None)
  twins = None
  if sim is not None and hasattr(sim, "render") and hasattr(sim, "record_spec"):
    twins = _SimTwins(src, kept)
  names = _Names(name, kept)
  patches = build_patches(readable(), patch_size, class_ids, twins, names, max_per_class)
  if not len(patches):
    reasons = "; ".join(f"{w}: {r}" for w, r in patches.dropped[:3])
    raise ValueError(f"stage-1 data source {name!r}: no defect patches of size {patch_size} "
                     f"for classes {class_ids} ({reasons or 'no defect instances'})")
  return patches


def dataset(patches: PatchSet, global_batch: int, process_index: int, process_count: int,
            seed: int, options: grain.ReadOptions | None = None) -> grain.IterDataset:
  """This process's rows of an infinite stream of shuffled global batches.

  Yields {"patch" uint8 [b,P,P,3], "mask" float32 [b,P,P], "clean" uint8 [b,P,P,3],
  "cond" float32 [b,F], "class_id" int32 [b]} with b = global_batch / process_count.
  """
  if patches.cond is None:
    raise ValueError("PatchSet has no condition features; compute them before batching")
  if global_batch % process_count:
    raise ValueError(f"batch_size={global_batch} is not divisible by {process_count} processes")
  rows = global_batch // process_count
  lo = process_index * rows

  def make(idx):
    idx = np.asarray(idx)[lo:lo + rows]
    return {"patch": patches.patches[idx], "mask": patches.masks[idx],
            "clean": patches.clean[idx], "cond": patches.cond[idx].astype(np.float32),
            "class_id": patches.class_ids[idx].astype(np.int32)}

  ds = grain.MapDataset.range(len(patches)).shuffle(seed=seed).repeat(None)
  return ds.batch(global_batch, drop_remainder=True).map(make).to_iter_dataset(
      options or input_options.read_options())
