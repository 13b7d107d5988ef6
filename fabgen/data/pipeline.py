"""The grain input pipeline: any source -> per-process shard -> shuffle -> repeat -> batch.

grain runs over sample *indices*, and a batch of indices is fetched in one call at the end:

  MapDataset.range(len(source))[p::n]     process p of n reads a disjoint 1/n (complete together)
    .shuffle(seed)                        a fresh permutation every epoch
    .repeat(num_epochs)
    .batch(per_process_batch)
    .map_with_index(fetch)                source.get_batch / FabricSim's vectorized `records`,
                                          then an optional fixed-size transform per sample
    .to_iter_dataset(read options)        checkpointable: get_state / set_state, orbax handler

Fetching batches of indices (not samples) lets FabricSim render a batch in one jitted call, and
keeps the iterator state tiny (a position). Random transforms draw from
`numpy.random.default_rng([seed, process, batch, slot])`: a function of the position in the
stream only, so a resumed iterator yields exactly the batches of the uninterrupted one.
`fabgen.platform.input_options.read_options` bounds grain's read-ahead: its defaults (16 threads,
500 elements ahead) made every training stage render hundreds of FabricSim batches it never used,
on a 2-core host starving the train step (measured: fine-tune steps 3x slower) and running on
after the stage had ended.

`make_mixed_dataset` draws each batch from several sources in fixed proportions (e.g. a small
synthesized target set plus replay of the source training set, so fine-tuning does not forget):
each source is sharded, shuffled and repeated on its own, `grain.MapDataset.mix` interleaves
(source, index) pairs deterministically by weight, and the fetch reads each source's share of a
batch in one call. The iterator state is still a position, so resume equals uninterrupted.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import grain
import jax
import numpy as np
from PIL import Image

from fabgen.data import defect_crops
from fabgen.data import tiling
from fabgen.data.readers import base
from fabgen.data.readers import records

Transform = Callable[[dict, np.random.Generator], dict]


# ---- fixed-size transforms ---------------------------------------------------------------------

def random_crop(hw: tuple[int, int], on_defect: float = 0.0) -> Transform:
  """A crop of size hw (zero-padded if the image is smaller); boxes recomputed.

  With probability `on_defect` the crop is placed to contain one defect, drawn class-balanced
  (a class present in the image, then one of its instances), anywhere in the crop; otherwise it is
  placed uniformly. Small defects (a 12-px knot in a 256-px image) are otherwise in a quarter of
  the 128-px crops and then a few dozen pixels of them: a detector trained on uniform crops
  alone never learns them.
  """
  def apply(sample: dict, rng: np.random.Generator) -> dict:
    h, w = np.asarray(sample["image"]).shape[:2]
    if on_defect > 0.0 and rng.random() < on_defect:
      box = defect_crops.random_defect_box(sample, rng)
      if box is not None:
        y = int(rng.integers(*defect_crops.positions_containing(box[0], box[2], hw[0], h)))
        x = int(rng.integers(*defect_crops.positions_containing(box[1], box[3], hw[1], w)))
        return tiling.crop_sample(sample, y, x, hw)
    y = int(rng.integers(0, max(0, h - hw[0]) + 1))
    x = int(rng.integers(0, max(0, w - hw[1]) + 1))
    return tiling.crop_sample(sample, y, x, hw)
  return apply


def center_crop(hw: tuple[int, int]) -> Transform:
  def apply(sample: dict, rng: np.random.Generator) -> dict:
    del rng
    h, w = np.asarray(sample["image"]).shape[:2]
    return tiling.crop_sample(sample, max(0, (h - hw[0]) // 2), max(0, (w - hw[1]) // 2), hw)
  return apply


def resize(hw: tuple[int, int]) -> Transform:
  """Bilinear image, nearest-neighbour mask (labels stay labels), boxes from the resized mask."""
  def apply(sample: dict, rng: np.random.Generator) -> dict:
    del rng
    image = np.asarray(sample["image"])
    if image.shape[:2] == tuple(hw):
      return sample
    img = np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BILINEAR))
    mask = np.asarray(Image.fromarray(np.asarray(sample["instance_mask"], np.int32))
                      .resize((hw[1], hw[0]), Image.NEAREST)).astype(np.int32)
    classes = [int(c) for c in np.asarray(sample["instance_class"]) if c >= 0]
    present = set(np.unique(mask)) - {0}
    lut = np.zeros(len(classes) + 1, np.int32)
    keep = [k for k in range(1, len(classes) + 1) if k in present]  # tiny defects may vanish
    lut[keep] = np.arange(1, len(keep) + 1)
    out, _ = records.make_sample(img, lut[mask], [classes[k - 1] for k in keep],
                                 fabric_id=int(np.asarray(sample.get("fabric_id", -1))))
    return out
  return apply


def make_transform(kind: str | None, hw: Sequence[int] | None,
                   on_defect: float = 0.0) -> Transform | None:
  """'crop' | 'center' | 'resize' | None by name (what configs name); on_defect: random_crop's."""
  if kind is None or kind == "none":
    return None
  if hw is None or len(hw) != 2:
    raise ValueError(f"transform {kind!r} needs a size (H, W), got {hw!r}")
  table = {"crop": lambda hw: random_crop(hw, on_defect), "center": center_crop, "resize": resize}
  if kind not in table:
    raise ValueError(f"unknown transform {kind!r}; known: {', '.join(table)}")
  if not 0.0 <= on_defect <= 1.0:
    raise ValueError(f"crop on_defect={on_defect!r} is a probability; use a value in [0, 1]")
  if on_defect and kind != "crop":
    raise ValueError(f"on_defect={on_defect} applies to the 'crop' transform, not {kind!r}")
  return table[kind]((int(hw[0]), int(hw[1])))


# ---- the dataset -------------------------------------------------------------------------------

def stack(samples: Sequence[dict], source_name: str = "") -> dict[str, np.ndarray]:
  """Stacks records into a batch, with an error that names mismatched image sizes."""
  shapes = {np.asarray(s["image"]).shape for s in samples}
  if len(shapes) > 1:
    raise ValueError(f"{source_name}: images of different sizes {sorted(shapes)} in one batch; "
                     f"add a fixed-size transform (crop/center/resize) or tiles")
  return {k: np.stack([np.asarray(s[k]) for s in samples]) for k in samples[0]}


class _Fetch:
  """Index batch -> sample batch (picklable, so grain may run it in worker processes)."""

  def __init__(self, source: base.Source, transform: Transform | None, seed: int,
               process_index: int, skip_broken: bool = True):
    self.source, self.transform = source, transform
    self.seed, self.process_index = seed, process_index
    self.skip_broken = skip_broken

  def __call__(self, batch_number: int, indices: np.ndarray) -> dict[str, np.ndarray]:
    indices = [int(i) for i in np.asarray(indices)]
    stacked = getattr(self.source, "stacked", None)
    if self.transform is None and stacked is not None:
      return stacked(indices)  # FabricSim: one vectorized call
    samples = (self.source.get_batch_skipping(indices) if self.skip_broken
               else _strict(self.source.get_batch, indices))
    if self.transform is not None:
      samples = [self.transform(s, np.random.default_rng(
          [self.seed, self.process_index, batch_number, slot])) for slot, s in enumerate(samples)]
    return stack(samples, self.source.name)


def _strict(get_batch, indices):
  """`get_batch(indices)`; a `ReadError` says which key made it fatal."""
  try:
    return get_batch(indices)
  except base.ReadError as e:
    raise base.ReadError(e.path, f"{e.reason} (fatal because data.on_unreadable='error'; "
                                 f"'skip' replaces it and reports it)") from e


def process_shard(num_items: int, process_index: int, process_count: int) -> grain.MapDataset:
  """Indices process `process_index` of `process_count` reads: a strided, disjoint share."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  if num_items < process_count:
    raise ValueError(f"{num_items} samples cannot be shared by {process_count} processes")
  return grain.MapDataset.range(num_items)[process_index::process_count]


def make_dataset(source: base.Source, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 num_epochs: int | None = None, transform: Transform | None = None,
                 process_index: int | None = None, process_count: int | None = None,
                 drop_remainder: bool = True, skip_broken: bool = True) -> grain.MapDataset:
  """A grain MapDataset of per-process batches (dicts of numpy arrays) over `source`.

  Args:
    source: any `fabgen.data.readers` source (wrap in `tiling.TiledSource` for tiles).
    batch_size: the per-process batch (`global_batch // jax.process_count()`).
    seed: shuffle and transform seed.
    num_epochs: None repeats forever.
    transform: a fixed-size transform (`make_transform`), needed when image sizes differ.
    process_index, process_count: default to JAX's; each process reads a disjoint share.
    skip_broken: a file only a full decode finds broken is replaced by the next readable
      sample, counted in `source.read_failures` and logged (False: the `ReadError` is fatal).
  """
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  ds = process_shard(len(source), pi, pc)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  return ds.map_with_index(_Fetch(source, transform, seed, pi, skip_broken))


class _Tag:
  """index -> (source number, index): which source a mixed element comes from (picklable)."""

  def __init__(self, k: int):
    self.k = k

  def __call__(self, index):
    return (self.k, int(index))


class _FetchMixed:
  """Batch of (source number, index) pairs -> sample batch, each source read in one call.

  Sources may carry different extra keys; the batch keeps the keys every sample has.
  """

  def __init__(self, sources: Sequence[base.Source], transform: Transform | None, seed: int,
               process_index: int, skip_broken: bool = True):
    self.sources, self.transform = list(sources), transform
    self.seed, self.process_index = seed, process_index
    self.skip_broken = skip_broken

  def __call__(self, batch_number: int, pairs) -> dict[str, np.ndarray]:
    which, indices = (np.asarray(a).reshape(-1) for a in pairs)
    samples: list[Any] = [None] * len(indices)
    for k in sorted(set(int(w) for w in which)):
      slots = [s for s in range(len(indices)) if int(which[s]) == k]
      src = self.sources[k]
      read = src.get_batch_skipping if self.skip_broken else functools.partial(_strict,
                                                                               src.get_batch)
      for s, sample in zip(slots, read([int(indices[s]) for s in slots])):
        samples[s] = sample
    if self.transform is not None:
      # Same per-slot stream as `_Fetch`: a function of the position only.
      samples = [self.transform(s, np.random.default_rng(
          [self.seed, self.process_index, batch_number, slot])) for slot, s in enumerate(samples)]
    common = [key for key in samples[0] if all(key in s for s in samples)]
    names = "+".join(sorted({self.sources[int(w)].name for w in which}))
    return stack([{key: s[key] for key in common} for s in samples], names)


def mix_proportions(weights: Sequence[float], what: str = "weights") -> list[float]:
  """Validated, normalised mixing weights; the error names `what` and the bad value."""
  try:
    w = [float(x) for x in weights]
  except (TypeError, ValueError):
    raise ValueError(f"{what}={weights!r}: expected numbers") from None
  if not w or any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
    raise ValueError(f"{what}={weights!r}: need finite, non-negative weights with a positive sum")
  return [x / sum(w) for x in w]


def make_mixed_dataset(sources: Sequence[base.Source], weights: Sequence[float],
                       batch_size: int, *, seed: int = 0, shuffle: bool = True,
                       num_epochs: int | None = None, transform: Transform | None = None,
                       process_index: int | None = None, process_count: int | None = None,
                       drop_remainder: bool = True, skip_broken: bool = True
                       ) -> grain.MapDataset:
  """Like `make_dataset`, but every batch mixes `sources` in the proportions `weights`.

  The mix is a deterministic interleave (weights 0.75/0.25 put 6 + 2 samples in a batch of 8),
  not a coin flip per sample, so every batch has the intended share. Each source repeats on its
  own (a 48-image synthetic set cycles many times while a large source set is read once); with a
  finite `num_epochs` the mix ends when its shortest component does. Zero-weight sources are
  dropped. `seed` shuffles source k with its own derived seed (independent permutations).
  """
  sources = list(sources)
  if len(sources) != len(weights):
    raise ValueError(f"{len(sources)} sources but {len(weights)} weights {list(weights)}")
  props = mix_proportions(weights)
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  parts, part_weights = [], []
  for k, (source, p) in enumerate(zip(sources, props)):
    if p == 0:
      continue
    ds = process_shard(len(source), pi, pc)
    if shuffle:
      ds = ds.shuffle(seed=int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
    ds = ds.map(_Tag(k))
    if num_epochs != 1:
      ds = ds.repeat(num_epochs)
    parts.append(ds)
    part_weights.append(p)
  ds = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, part_weights)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  return ds.map_with_index(_FetchMixed(sources, transform, seed, pi, skip_broken))


def make_iterator(dataset: grain.MapDataset, num_threads: int = 0, prefetch: int = 0):
  """A checkpointable iterator (`get_state`/`set_state`, `grain.checkpoint.CheckpointSave`)."""
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  return iter(dataset.to_iter_dataset(read))
