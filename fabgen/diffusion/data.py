"""Inputs of latent inpainting training: defect crops with masks, and RealFill-style box masks.

Crops are `size` windows centred on real defect instances of a source (an `open_source` spec or
an opened source), as host numpy arrays; a file that only a full decode finds broken follows
`data.on_unreadable` like every other reader (`fabgen.data.readers.skips`: left out and counted
in the source's `read_failures`, or fatal naming it); `crop_dataset` serves shuffled, flipped batches through grain (checkpointable,
each example a pure function of (seed, index)). `box_masks` draws RealFill's random inpainting
masks on the device from a key.
"""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import numpy as np

from fabgen.platform import input_options


def defect_crops(source, size: int, max_records: int, max_per_class: int,
                 class_ids=None, fabric=None, on_unreadable: str = "skip"):
  """(images u8 [K,S,S,3], masks f32 [K,S,S], classes i32 [K]) centred on defect instances.

  `source`: a spec for `open_source`, or a source the caller opened (tasks keep it for
  `Task.input_report`); `on_unreadable`: the config's `data.on_unreadable` (`skips.policy`).
  """
  # pylint: disable-next=g-import-not-at-top
  from fabgen.data.readers import open_source, skips, spread_indices
  src = open_source(source) if isinstance(source, str) else source
  wanted = None if class_ids is None else {int(c) for c in class_ids}
  images, masks, classes, per_class = [], [], [], {}
  for rec in skips.read_records(src, spread_indices(len(src), max_records), on_unreadable):
    if fabric is not None and int(np.asarray(rec.get("fabric_id", -1))) != int(fabric):
      continue
    image, inst = np.asarray(rec["image"]), np.asarray(rec["instance_mask"])
    h, w = inst.shape
    if h < size or w < size:
      continue
    for k, cid in enumerate(np.asarray(rec["instance_class"]).tolist()):
      if cid < 0 or (wanted is not None and cid not in wanted) or per_class.get(cid, 0) >= \
          max_per_class:
        continue
      ys, xs = np.nonzero(inst == k + 1)
      if len(ys) < 4:
        continue
      y0 = int(np.clip((ys.min() + ys.max()) // 2 - size // 2, 0, h - size))
      x0 = int(np.clip((xs.min() + xs.max()) // 2 - size // 2, 0, w - size))
      m = (inst[y0:y0 + size, x0:x0 + size] == k + 1).astype(np.float32)
      if m.sum() < 4:
        continue
      images.append(image[y0:y0 + size, x0:x0 + size])
      masks.append(m)
      classes.append(cid)
      per_class[cid] = per_class.get(cid, 0) + 1
  if not images:
    label = source if isinstance(source, str) else src.name
    raise ValueError(f"{label}: no defect instance of classes {sorted(wanted or [])} fits a "
                     f"{size}px crop in the first {max_records} records")
  return np.stack(images), np.stack(masks), np.asarray(classes, np.int32)


def crop_dataset(crops, batch_size: int, process_index: int, process_count: int, seed: int,
                 options=None) -> grain.IterDataset:
  """Infinite shuffled batches {"image" u8, "mask" f32, "class_id" i32} with random flips; the
  global batch is the same whatever the process count (each process takes its rows)."""
  images, masks, classes = crops
  rows = batch_size // process_count
  lo = process_index * rows

  def example(i, flip):
    img, m = images[i], masks[i]
    if flip:
      img, m = img[:, ::-1], m[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(m), classes[i]

  def make(idx):
    rng = np.random.default_rng([seed, int(idx[0]), len(idx)])
    flips = rng.random(len(idx)) < 0.5
    ex = [example(int(i), f) for i, f in zip(idx, flips)][lo:lo + rows]
    return {"image": np.stack([e[0] for e in ex]), "mask": np.stack([e[1] for e in ex]),
            "class_id": np.asarray([e[2] for e in ex], np.int32)}

  ds = grain.MapDataset.range(len(images)).shuffle(seed=seed).repeat(None)
  ds = ds.batch(batch_size, drop_remainder=True).map(lambda idx: make(np.asarray(idx)))
  return ds.to_iter_dataset(options or input_options.read_options())


def box_masks(key, batch: int, size: int, max_boxes: int = 29, min_frac: float = 0.03,
              max_frac: float = 0.25, p_invert: float = 0.5, p_full: float = 0.1):
  """RealFill's inpainting masks [B, S, S] in {0, 1}: 1..max_boxes boxes of side 3-25 % of the
  image, inverted with p 0.5, the full image with p 0.1."""
  kn, kc, ks, ki, kf = jax.random.split(key, 5)
  n = jax.random.randint(kn, (batch,), 1, max_boxes + 1)
  centres = jax.random.uniform(kc, (batch, max_boxes, 2)) * size
  sides = jax.random.uniform(ks, (batch, max_boxes, 2), minval=min_frac, maxval=max_frac) * size
  grid = jnp.arange(size, dtype=jnp.float32) + 0.5
  inside_y = jnp.abs(grid[None, None, :] - centres[..., 0:1]) <= sides[..., 0:1] / 2
  inside_x = jnp.abs(grid[None, None, :] - centres[..., 1:2]) <= sides[..., 1:2] / 2
  boxes = inside_y[..., :, None] & inside_x[..., None, :]          # [B, K, S, S]
  active = (jnp.arange(max_boxes)[None] < n[:, None])[..., None, None]
  m = jnp.any(boxes & active, axis=1).astype(jnp.float32)
  m = jnp.where(jax.random.bernoulli(ki, p_invert, (batch, 1, 1)), 1.0 - m, m)
  return jnp.where(jax.random.bernoulli(kf, p_full, (batch, 1, 1)), 1.0, m)
