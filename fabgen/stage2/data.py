"""Imperfect inputs for the fusion network, built as the paper builds them.

From a real defect image y (a `size` crop centred on one defect instance with mask m):
  1. cut a blank window W = dilate(m, margin) out of y (the defect plus a margin);
  2. take a donor patch (a stage-1 sample conditioned on this fabric's texture: the paper's and
     the protocol's default; or, as an ablation, a real defect crop from another image), cut it
     to its defect's box (plus margin), resize that to W's bounding box and paste it into the
     window, over R = W u dilate(donor mask, margin): hard seams along R's border;
  3. x = y outside R, donor inside R.
The fusion network T maps x to T(x); D_T sees y (real) against T(x) (fake). `window` (R) tells
the losses where T may change things and where the seam band is. Examples are built on the host
with numpy inside a grain `random_map`, so each is a pure function of (seed, index) and a resumed
run sees the same examples.

At synthesis the same construction is applied to a defect-free background (R = the dilated
stage-1 mask, filled with the stage-1 patch), so T sees the same kind of input it was trained on.
"""

from __future__ import annotations

import grain
import jax
import numpy as np
from PIL import Image

from fabgen.nn import masks as mask_ops
from fabgen.platform import input_options
from fabgen.stage1 import data as stage1_data
from fabgen.stage1.generate import Stage1Generator


def _resize(array: np.ndarray, h: int, w: int, resample) -> np.ndarray:
  if array.dtype == np.uint8:
    return np.asarray(Image.fromarray(array).resize((w, h), resample))
  img = Image.fromarray(array.astype(np.float32), mode="F").resize((w, h), resample)
  return np.asarray(img)


def donor_extent(donor: np.ndarray, donor_mask: np.ndarray, margin: int):
  """The donor and its mask cut to the box of dilate(donor mask, margin) (all of it if empty).

  So the donor's defect, not its whole crop, is what gets resized into the real defect's box:
  the same mapping multistage synthesis applies to a stage-1 patch (`synthesis.box_fit`), which
  is what keeps synthesized defects at the size and aspect of real ones.
  """
  ys, xs = np.nonzero(donor_mask > 0.5)
  if len(ys) == 0:
    return donor, donor_mask
  h, w = donor_mask.shape
  y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
  x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
  return donor[y0:y1, x0:x1], donor_mask[y0:y1, x0:x1]


def make_imperfect(y: np.ndarray, m: np.ndarray, donor: np.ndarray, donor_mask: np.ndarray,
                   margin: int) -> tuple[np.ndarray, np.ndarray]:
  """(x uint8 [S,S,3], window R float32 [S,S]): y with its defect window replaced by the donor."""
  w_mask = mask_ops.defect_region(m, margin) > 0.5
  ys, xs = np.nonzero(w_mask)
  if len(ys) == 0:
    return y.copy(), np.zeros(m.shape, np.float32)
  y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
  donor, donor_mask = donor_extent(donor, donor_mask, margin)
  d = _resize(donor, y1 - y0, x1 - x0, Image.BILINEAR)
  dm = _resize(donor_mask.astype(np.float32), y1 - y0, x1 - x0, Image.BILINEAR) > 0.5
  placed = np.zeros(m.shape, bool)
  placed[y0:y1, x0:x1] = dm
  placed = mask_ops.defect_region(placed.astype(np.float32), margin) > 0.5
  inside_box = np.zeros(m.shape, bool)
  inside_box[y0:y1, x0:x1] = True
  region = w_mask | (placed & inside_box)
  canvas = y.copy()
  canvas[y0:y1, x0:x1] = d
  x = np.where(region[..., None], canvas, y)
  return x.astype(np.uint8), region.astype(np.float32)


class FusionExamples:
  """Random-access real crops + donor bank -> {"x", "y", "window"} examples."""

  def __init__(self, real: tuple, donors: tuple, margin: int, same_class_donor: bool = True):
    self.images, self.masks, self.classes = real
    self.donor_images, self.donor_masks, self.donor_classes = donors
    if len(self.images) == 0:
      raise ValueError("fusion data: the source has no defect instance that fits the crop size")
    if len(self.donor_images) == 0:
      raise ValueError("fusion data: the donor bank is empty")
    self.margin, self.same_class_donor = margin, same_class_donor

  def __len__(self) -> int:
    return len(self.images)

  def example(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One training example for real crop `index` with a random donor."""
    cid = self.classes[index]
    pool = np.flatnonzero(self.donor_classes == cid) if self.same_class_donor else []
    if len(pool) == 0:
      pool = np.arange(len(self.donor_images))
    j = int(rng.choice(pool))
    donor, dmask = self.donor_images[j], self.donor_masks[j]
    if rng.random() < 0.5:
      donor, dmask = donor[:, ::-1], dmask[:, ::-1]
    x, window = make_imperfect(self.images[index], self.masks[index], np.ascontiguousarray(donor),
                               np.ascontiguousarray(dmask), self.margin)
    return {"x": x, "y": self.images[index], "window": window,
            "class_id": np.asarray(cid, np.int32)}


def fusion_dataset(examples: FusionExamples, batch_size: int, process_index: int,
                   process_count: int, seed: int,
                   options: grain.ReadOptions | None = None) -> grain.IterDataset:
  """Infinite shuffled batches of this process's share, as a checkpointable grain dataset."""
  ds = grain.MapDataset.range(len(examples)).slice(slice(process_index, None, process_count))
  ds = ds.shuffle(seed=seed).repeat(None)
  ds = ds.random_map(lambda i, rng: examples.example(int(i), rng), seed=seed + 1)
  return ds.batch(batch_size, drop_remainder=True).to_iter_dataset(
      options or input_options.read_options())


def donor_textures(records, size: int, class_ids) -> dict[int, list[np.ndarray]]:
  """Per class: defect-free `size` windows of the images that hold a defect of that class.

  Each window is the defect-free one nearest to the defect (`stage1.data.clean_window`), so a
  stage-1 donor is conditioned on the texture of the very image (hence fabric) whose defect it
  will replace in training, as the paper's stage 2 pairs them; an image with no defect-free
  window falls back to one of another image of the same `fabric_id`.
  """
  wanted = set(int(c) for c in class_ids)
  out: dict[int, list[np.ndarray]] = {c: [] for c in wanted}
  by_fabric: dict[int, np.ndarray] = {}
  pending: list[tuple[int, int]] = []
  for rec in records:
    image, inst = np.asarray(rec["image"]), np.asarray(rec["instance_mask"])
    if min(inst.shape) < size:
      continue
    fabric = int(np.asarray(rec.get("fabric_id", -1)))
    for k, cid in enumerate(np.asarray(rec["instance_class"]).tolist()):
      if cid not in wanted:
        continue
      ys, xs = np.nonzero(inst == k + 1)
      if len(ys) == 0:
        continue
      spot = stage1_data.clean_window(inst, size, (max(0, int(ys.min()) - size // 2),
                                       max(0, int(xs.min()) - size // 2)))
      if spot is None:
        pending.append((cid, fabric))
        continue
      window = image[spot[0]:spot[0] + size, spot[1]:spot[1] + size]
      out[cid].append(window)
      by_fabric.setdefault(fabric, window)
  for cid, fabric in pending:
    if fabric >= 0 and fabric in by_fabric:
      out[cid].append(by_fabric[fabric])
  return out


def stage1_donors(checkpoint: str, records, per_class: int, seed: int = 0, batch_size: int = 16):
  """A donor bank of `per_class` stage-1 samples for each class the generator paints.

  The paper trains T on stage-1 patches pasted into real defect windows, because that is what T
  meets at synthesis; generating a fixed bank once (not inside the input pipeline) keeps the
  grain workers free of JAX models. Donors of class c are conditioned on defect-free texture of
  the images holding real class-c defects (`donor_textures`), cycling through them.
  """
  if per_class <= 0:
    raise ValueError(f"stage-1 donors: per_class must be positive, got {per_class}")
  gen = Stage1Generator.from_checkpoint(checkpoint)
  p = gen.patch_size
  records = list(records)
  textures = donor_textures(records, p, gen.class_ids)
  empty = [c for c, v in textures.items() if not v]
  if len(empty) == len(textures):
    raise ValueError(f"stage-1 donors: no source image holds a {p}x{p} defect-free window next "
                     f"to a defect of the classes {list(gen.class_ids)} of {checkpoint}")
  jobs = [(c, textures[c][k % len(textures[c])]) for c in sorted(textures) if textures[c]
          for k in range(per_class)]
  out_img, out_mask, out_cls = [], [], []
  key = jax.random.key(seed)
  for start in range(0, len(jobs), batch_size):
    chunk = jobs[start:start + batch_size]
    bgs = np.stack([t for _, t in chunk])
    cls = np.asarray([c for c, _ in chunk], np.int32)
    res = gen.generate(bgs, cls, jax.random.fold_in(key, start))
    out_img.append(np.clip(np.round(np.asarray(res["patch"]) * 255), 0, 255).astype(np.uint8))
    out_mask.append(np.asarray(res["mask"], np.float32))
    out_cls.append(cls)
  return np.concatenate(out_img), np.concatenate(out_mask), np.concatenate(out_cls)
