"""Exactly aligned training quadruples (N, D, M, class) for DGT, rendered by FabricSim.

DGT learns "paint class y into N inside M so that it looks like D", which needs the defect image
D and its defect-free twin N of the same frame. FabricSim renders both in one pass
(`FabricSim.render_pairs`), so D == N bit for bit outside M and the mask M is exactly what
changed. Real data sets have no such twin; DGT therefore trains on FabricSim sources only, and
`paired_set` says so when given another source.

Records: FabricSim's split tables cycle classes over the preset's list; here the known classes
are chosen per run (the open-set protocol holds some out), so the records are drawn directly:
record i has class known[i % S], a fabric of the spec's split, and image index base + i
(base 0 for source training fabrics, 1 << 20 for the `test` split as FabricSim does, so that
evaluation frames never repeat training frames). Frames whose defect vanished (every component
under FabricSim's minimum area) are dropped. A crop of `image_size` centred on the mask's
centroid is taken when the render is larger.
"""

from __future__ import annotations

import grain
import numpy as np

from fabgen.data import classes as classes_lib
from fabgen.platform import input_options

_BASES = {"train": 0, "test": 1 << 20, "target_test": 1 << 20}
_CACHE: dict = {}


def parse_source(spec: str) -> tuple[str, str, int]:
  """`fabricsim:<preset>:<split>[:seed]` -> (preset, split, seed); anything else is an error."""
  if not str(spec).startswith("fabricsim:"):
    raise ValueError(f"config.data.source={spec!r}: DGT trains on paired (defect, defect-free) "
                     f"images, which only FabricSim renders; use fabricsim:<preset>:<split>[:seed]")
  from fabgen.data.readers import fabricsim_source  # pylint: disable=g-import-not-at-top
  return fabricsim_source.parse_spec(spec)


def known_classes(names, source: str) -> tuple[str, ...]:
  """The known class names: `names`, or (when empty) every class of the source's preset."""
  if names:
    return tuple(str(n) for n in names)
  from fabgen.data.fabricsim import presets  # pylint: disable=g-import-not-at-top
  return tuple(presets.get_preset(parse_source(source)[0]).classes)


def class_indices(names) -> np.ndarray:
  """Global class ids of the known class names, in order (local index = position)."""
  ids = [classes_lib.class_id(str(n)) for n in names]
  if len(set(ids)) != len(ids) or not ids:
    raise ValueError(f"config.data.classes={tuple(names)}: need distinct known class names")
  return np.asarray(ids, np.int32)


def _crop_offsets(mask: np.ndarray, size: int) -> np.ndarray:
  n, h, w = mask.shape
  ys, xs = np.mgrid[:h, :w]
  area = np.maximum(mask.sum((1, 2)), 1)
  cy = (mask * ys).sum((1, 2)) / area
  cx = (mask * xs).sum((1, 2)) / area
  y0 = np.clip(np.round(cy - size / 2), 0, h - size).astype(np.int32)
  x0 = np.clip(np.round(cx - size / 2), 0, w - size).astype(np.int32)
  return np.stack([y0, x0], 1)


def paired_set(source: str, class_names, num: int, image_size: int,
               batch: int = 32) -> dict[str, np.ndarray]:
  """{"clean", "image" uint8 [n,s,s,3]; "mask" f32 [n,s,s]; "label" (local), "class_id"} (n<=num)."""
  key = (source, tuple(class_names), int(num), int(image_size))
  if key in _CACHE:
    return _CACHE[key]
  preset, split, seed = parse_source(source)
  from fabgen.data.readers import fabricsim_source  # pylint: disable=g-import-not-at-top
  sim = fabricsim_source.get_sim(preset, seed)
  ids = class_indices(class_names)
  missing = [classes_lib.CLASSES[c] for c in ids if c not in sim.class_ids]
  if missing:
    raise ValueError(f"config.data.classes: {missing} are not classes of FabricSim preset "
                     f"{preset!r} ({[classes_lib.CLASSES[c] for c in sim.class_ids]})")
  if image_size > sim.preset.image_size:
    raise ValueError(f"config.image_size={image_size} exceeds FabricSim preset {preset!r}'s "
                     f"{sim.preset.image_size}")
  if split not in _BASES:
    raise ValueError(f"config.data.source={source!r}: DGT draws defect frames from split "
                     f"train, test or target_test, not {split!r}")
  fabrics = sim.fabric_ids(split)
  i = np.arange(num)
  specs = np.stack([fabrics[(i // len(ids)) % len(fabrics)], _BASES[split] + i,
                    ids[i % len(ids)]], 1).astype(np.int32)
  parts = []
  for lo in range(0, num, batch):
    part = specs[lo:lo + batch]
    padded = np.concatenate([part, np.repeat(part[-1:], batch - len(part), 0)])
    out = sim.render_pairs(padded[:, 0], padded[:, 1], padded[:, 2])
    parts.append({k: np.asarray(out[k])[:len(part)] for k in ("clean", "image", "instance_mask")})
  clean = np.concatenate([p["clean"] for p in parts])
  image = np.concatenate([p["image"] for p in parts])
  mask = (np.concatenate([p["instance_mask"] for p in parts]) > 0).astype(np.float32)
  keep = mask.sum((1, 2)) > 0
  clean, image, mask, cls = clean[keep], image[keep], mask[keep], specs[keep, 2]
  if image_size < mask.shape[1]:
    off = _crop_offsets(mask, image_size)
    rows = off[:, 0, None] + np.arange(image_size)
    cols = off[:, 1, None] + np.arange(image_size)
    take = lambda a: a[np.arange(len(a))[:, None, None], rows[:, :, None], cols[:, None, :]]
    clean, image, mask = take(clean), take(image), take(mask)
  position = {int(c): k for k, c in enumerate(ids)}
  local = np.asarray([position[int(c)] for c in cls], np.int32)
  out = {"clean": clean, "image": image, "mask": mask, "label": local,
         "class_id": cls.astype(np.int32)}
  _CACHE[key] = out
  return out


def mask_bank(pairs: dict, size: int) -> dict[str, np.ndarray]:
  """Real defect shapes (round-robin over classes) kept in the state for synthesis; fixed size.

  Unused rows have label -1. Synthesis draws a shape of the requested class from here.
  """
  labels = pairs["label"]
  by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
  order = [int(idx[k]) for k in range(max((len(x) for x in by_class), default=0))
           for idx in by_class if k < len(idx)][:size]
  masks = np.zeros((size,) + pairs["mask"].shape[1:], np.float32)
  out_labels = np.full((size,), -1, np.int32)
  masks[:len(order)] = pairs["mask"][order]
  out_labels[:len(order)] = labels[order]
  return {"masks": masks, "labels": out_labels}


def dataset(pairs: dict, batch_size: int, process_index: int, process_count: int, seed: int,
            options: grain.ReadOptions | None = None) -> grain.IterDataset:
  """Infinite shuffled batches {"clean", "image", "mask", "label"} with random horizontal flips."""
  n = len(pairs["label"])
  if n < 1:
    raise ValueError("DGT data: no frame with a visible defect was rendered")

  def example(i, rng):
    flip = rng.random() < 0.5
    get = lambda a: np.ascontiguousarray(a[i][:, ::-1] if flip else a[i])  # noqa: E731
    return {"clean": get(pairs["clean"]), "image": get(pairs["image"]),
            "mask": get(pairs["mask"]), "label": np.asarray(pairs["label"][i], np.int32)}

  ds = grain.MapDataset.range(n).slice(slice(process_index, None, process_count))
  ds = ds.shuffle(seed=seed).repeat(None).random_map(lambda i, r: example(int(i), r), seed=seed)
  return ds.batch(batch_size, drop_remainder=True).to_iter_dataset(
      options or input_options.read_options())
