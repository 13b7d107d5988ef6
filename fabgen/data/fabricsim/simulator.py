"""FabricSim: labelled woven-fabric defect images, pure and deterministic, in jax.

`render_image` is the whole generator as one pure function of (root key, fabric id, image index,
defect class): jit it, vmap it, run it on an accelerator inside a training step, or call it from a
CPU input pipeline through `FabricSim.records`. The defect-free image is rendered alongside every
defect image from the same fabric, frame and sensor noise, and the instance mask is *exactly* the
set of pixels that differ between the two:

  changed = max over channels |defect - clean| > 2 uint8 levels   (before quantisation)
  image   = where(changed, defect, clean), quantised to uint8

so every mask pixel differs from `render(f, i, -1)` by at least 2 grey levels in some channel
(the rounding of a >2-level difference changes the code value) and every other pixel is
bit-identical to it. Components smaller than `preset.min_component_area` pixels, or beyond
MAX_BOXES in raster order, are reverted to the clean pixels rather than left unlabelled; boxes are
the minimal rectangles of the remaining components (`fabgen.data.labels`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.data import classes as classes_lib
from fabgen.data import labels as labels_lib
from fabgen.data import sample as sample_lib
from fabgen.data.fabricsim import defects as defects_lib
from fabgen.data.fabricsim import identity
from fabgen.data.fabricsim import linescan
from fabgen.data.fabricsim import presets as presets_lib
from fabgen.data.fabricsim import render as render_lib

CHANGE_THRESHOLD = 2.0  # uint8 levels a pixel must move to count as changed (and be in the mask)
_SPLIT_BASE = {"train": 0, "test": 1 << 20, "source_good": 2 << 20, "target_good": 0,
               "target_test": 1 << 20}
_DEFECT_SPLITS = ("train", "test", "target_test")
_TARGET_SPLITS = ("target_good", "target_test")


def _quantise(x):
  return jnp.round(x * 255.0).astype(jnp.uint8)


def render_image(root: jax.Array, fabric_id, image_index, defect_class,
                 preset: presets_lib.Preset, with_clean: bool = False) -> dict[str, jax.Array]:
  """One sample in the `fabgen.data.sample` format; `defect_class` -1 renders it defect-free.

  `with_clean` adds "clean": the defect-free twin (uint8, same frame and noise) from the same
  pass, so that (clean, image, instance_mask > 0) is an exactly aligned (N, D, M) triple:
  image == clean wherever instance_mask == 0. It equals `render_image(..., defect_class=-1)`.
  """
  if preset.linescan is not None:  # whole line-scan strips: their own camera and defect shapes
    if with_clean:
      raise ValueError(f"preset {preset.name!r}: line-scan strips have no clean twin (with_clean)")
    return linescan.render_strip(root, fabric_id, image_index, defect_class, preset)
  size = preset.image_size
  channels = 3 if preset.colour else 1
  with_print = preset.print_prob > 0
  fabric_id = jnp.asarray(fabric_id, jnp.int32)
  image_index = jnp.asarray(image_index, jnp.int32)
  defect_class = jnp.asarray(defect_class, jnp.int32)
  fabric = identity.fabric_params(identity.fabric_key(root, fabric_id), preset,
                                  is_target=fabric_id >= preset.num_source_fabrics)
  image = identity.image_params(identity.image_key(root, fabric_id, image_index), fabric)
  geo = render_lib.geometry(fabric, image, size)
  yarn = render_lib.yarns(fabric, geo, channels, with_print)
  sens = render_lib.sensor(fabric, image, geo, channels, preset.line_scan)
  clean_cloth = render_lib.shade(fabric, geo, yarn)
  # Auto-exposure from the defect-free frame, so a defect never changes the exposure.
  sens["gain"] = sens["gain"] * (image["brightness"] / jnp.maximum(jnp.mean(clean_cloth), 0.02))
  clean = render_lib.camera(clean_cloth, fabric, sens)
  dkey = identity.defect_key(root, fabric_id, image_index, jnp.maximum(defect_class, 0))
  k_inst, k_tint = jax.random.split(dkey)
  inst = defects_lib.instance_params(k_inst, defect_class, size, preset.instance_probs)
  mods, scores = defects_lib.defect_fields(inst, defect_class, fabric, image, geo, channels,
                                           k_tint)
  defect = render_lib.camera(render_lib.shade(fabric, geo, yarn, mods), fabric, sens)
  changed = jnp.max(jnp.abs(defect - clean), axis=-1) * 255.0 > CHANGE_THRESHOLD
  changed = changed & (defect_class >= 0)
  label = jnp.argmax(scores, axis=0).astype(jnp.int32) + 1
  kept, record = labels_lib.single_class_labels(changed, label, defect_class, fabric_id,
                                                preset.min_component_area)
  pixels = jnp.where(kept[..., None], _quantise(defect), _quantise(clean))
  if channels == 1:
    pixels = jnp.repeat(pixels, 3, axis=-1)
  out = {"image": pixels, **record}
  if with_clean:
    clean_pixels = _quantise(clean)
    out["clean"] = jnp.repeat(clean_pixels, 3, axis=-1) if channels == 1 else clean_pixels
  return out


class FabricSim:
  """A deterministic FabricSim data set: preset + seed -> splits of labelled records."""

  def __init__(self, preset: "str | presets_lib.Preset", seed: int = 0):
    self.preset = presets_lib.get_preset(preset)
    self.seed = int(seed)
    self._root = identity.root_key(self.seed)
    fn = functools.partial(render_image, preset=self.preset)
    self._render = jax.jit(fn)
    self._render_batch = jax.jit(jax.vmap(fn, in_axes=(None, 0, 0, 0)))
    self._render_pairs = jax.jit(jax.vmap(functools.partial(fn, with_clean=True),
                                          in_axes=(None, 0, 0, 0)))

  @property
  def class_ids(self) -> np.ndarray:
    """Global ids (indices into CLASSES) of the preset's classes."""
    return np.asarray([classes_lib.class_id(n) for n in self.preset.classes], np.int32)

  @property
  def splits(self) -> tuple[str, ...]:
    return presets_lib.SPLITS

  def fabric_ids(self, split: str) -> np.ndarray:
    """Fabric identities a split draws from; source and target fabrics are disjoint."""
    self.preset.split_size(split)  # validates the name
    n_src, n_tgt = self.preset.num_source_fabrics, self.preset.num_target_fabrics
    if split in _TARGET_SPLITS:
      return np.arange(n_src, n_src + n_tgt, dtype=np.int32)
    return np.arange(n_src, dtype=np.int32)

  def num_records(self, split: str) -> int:
    return self.preset.split_size(split)

  def record_specs(self, split: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """int32 [N, 3] rows of (fabric_id, image_index, defect_class) for records [start, stop)."""
    n = self.num_records(split)
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
      raise IndexError(f"records [{start}, {stop}) out of range for split {split!r} of {n} "
                       f"records (preset {self.preset.name!r})")
    index = np.arange(start, stop, dtype=np.int64)
    fabrics = self.fabric_ids(split)
    rounds = index // len(fabrics)
    classes = (self.class_ids[rounds % len(self.class_ids)] if split in _DEFECT_SPLITS
               else np.full(len(index), -1))
    return np.stack([fabrics[index % len(fabrics)], _SPLIT_BASE[split] + rounds, classes],
                    axis=1).astype(np.int32)

  def record_spec(self, split: str, index: int) -> tuple[int, int, int]:
    """(fabric_id, image_index, defect_class) of one record; defect_class -1 = defect-free."""
    if not 0 <= index < self.num_records(split):
      raise IndexError(f"record {index} out of range for split {split!r} of "
                       f"{self.num_records(split)} records (preset {self.preset.name!r})")
    f, i, c = self.record_specs(split, index, index + 1)[0]
    return int(f), int(i), int(c)

  def render(self, fabric_id, image_index, defect_class) -> dict[str, jax.Array]:
    """One sample (jitted, pure). render(f, i, -1) is the defect-free twin of render(f, i, c)."""
    return self._render(self._root, fabric_id, image_index, defect_class)

  def render_batch(self, fabric_ids, image_indices, defect_classes) -> dict[str, jax.Array]:
    """A batch of samples, jit(vmap(render)); one compilation per batch size."""
    return self._render_batch(self._root, jnp.asarray(fabric_ids, jnp.int32),
                              jnp.asarray(image_indices, jnp.int32),
                              jnp.asarray(defect_classes, jnp.int32))

  def render_pairs(self, fabric_ids, image_indices, defect_classes) -> dict[str, jax.Array]:
    """`render_batch` plus "clean" [B, H, W, 3]: each image's defect-free twin, pixel-aligned.

    Paired training (DGT) needs (N, D, M) with D == N outside M exactly; rendering the twin in
    the same pass guarantees it and costs one extra camera pass, not a second render.
    """
    return self._render_pairs(self._root, jnp.asarray(fabric_ids, jnp.int32),
                              jnp.asarray(image_indices, jnp.int32),
                              jnp.asarray(defect_classes, jnp.int32))

  def record(self, split: str, index: int) -> dict[str, np.ndarray]:
    """One record of a split as numpy arrays in the `fabgen.data.sample` format."""
    out = self.render(*self.record_spec(split, index))
    return {k: np.asarray(v) for k, v in out.items()}

  def records(self, split: str, start: int, stop: int, batch_size: int = 32
              ) -> dict[str, np.ndarray]:
    """Records [start, stop) stacked, rendered in fixed-size batches (one compile, padded)."""
    specs = self.record_specs(split, start, stop)
    chunks = []
    for lo in range(0, len(specs), batch_size):
      part = specs[lo:lo + batch_size]
      padded = np.concatenate([part, np.repeat(part[-1:], batch_size - len(part), 0)])
      out = self.render_batch(padded[:, 0], padded[:, 1], padded[:, 2])
      chunks.append({k: np.asarray(v)[:len(part)] for k, v in out.items()})
    if not chunks:
      return {k: np.zeros((0,), np.int32) for k in sample_lib.KEYS}
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
