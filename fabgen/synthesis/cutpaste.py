"""The naive baseline every table carries: paste real defect crops from source fabrics, hard seams.

From labelled source data (any reader spec `open_source` accepts, e.g.
`fabricsim:simple:train` or a folder) we build a bank of `patch_size` crops centred on defect
instances, each with its instance mask. Synthesis picks a crop of the requested class (with a
random flip), and copies exactly its masked pixels into the window: no blending, no colour
matching. That is the point of the baseline: the defect's own texture comes along, and the seam
is whatever the source and target fabrics make of it.

`--checkpoint` for this method is therefore a *data source*, not a model directory.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.synthesis import base
from fabgen.synthesis import compose


def extract_crops(records: Iterable[Mapping[str, np.ndarray]], patch_size: int,
                  max_per_class: int = 64, class_ids: Iterable[int] | None = None):
  """Crops centred on each defect instance: (images [K,P,P,3] u8, masks [K,P,P] f32, class [K])."""
  wanted = None if class_ids is None else set(int(c) for c in class_ids)
  images, masks, classes, per_class = [], [], [], {}
  p = patch_size
  for rec in records:
    image, inst = np.asarray(rec["image"]), np.asarray(rec["instance_mask"])
    h, w = inst.shape
    if h < p or w < p:
      continue
    for k, cid in enumerate(np.asarray(rec["instance_class"]).tolist()):
      if cid < 0 or (wanted is not None and cid not in wanted):
        continue
      if per_class.get(cid, 0) >= max_per_class:
        continue
      ys, xs = np.nonzero(inst == k + 1)
      if len(ys) == 0:
        continue
      cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
      y0 = int(np.clip(cy - p // 2, 0, h - p))
      x0 = int(np.clip(cx - p // 2, 0, w - p))
      m = inst[y0:y0 + p, x0:x0 + p] == k + 1
      if m.sum() < 4:
        continue
      images.append(image[y0:y0 + p, x0:x0 + p])
      masks.append(m.astype(np.float32))
      classes.append(cid)
      per_class[cid] = per_class.get(cid, 0) + 1
  if not images:
    return (np.zeros((0, p, p, 3), np.uint8), np.zeros((0, p, p), np.float32),
            np.zeros((0,), np.int32))
  return np.stack(images), np.stack(masks), np.asarray(classes, np.int32)


class CutPasteSynthesizer(base.Synthesizer):
  """Hard-seam paste of real source-fabric defect crops."""

  name = "cutpaste"

  def __init__(self, images: np.ndarray, masks: np.ndarray, classes: np.ndarray):
    if len(images) == 0:
      raise base.SynthesisError("cutpaste: the source has no defect instances to crop")
    self.patch_size = int(images.shape[1])
    self.class_ids = tuple(sorted(set(int(c) for c in classes)))
    self.state = {"images": jnp.asarray(images), "masks": jnp.asarray(masks),
                  "classes": jnp.asarray(classes, jnp.int32)}

  @classmethod
  def from_records(cls, records, patch_size: int = 64, max_per_class: int = 64,
                   class_ids=None) -> "CutPasteSynthesizer":
    """A crop bank from in-memory `fabgen.data.sample` records."""
    return cls(*extract_crops(records, patch_size, max_per_class, class_ids))

  @classmethod
  def from_checkpoint(cls, checkpoint: str, patch_size: int = 64, max_per_class: int = 64,
                      max_records: int = 2000, **unused) -> "CutPasteSynthesizer":
    """`checkpoint` is a labelled source: a reader spec or folder (see `open_source`)."""
    del unused
    from fabgen.data import readers  # pylint: disable=g-import-not-at-top
    try:
      src = readers.open_source(checkpoint)
    except Exception as e:  # the reader's own message names the path; keep it
      raise base.SynthesisError(
          f"cutpaste --checkpoint must be a labelled data source (reader spec or folder); "
          f"cannot open {checkpoint!r}: {e}") from e
    records = (src[i] for i in readers.spread_indices(len(src), max_records))
    bank = extract_crops(records, patch_size, max_per_class)
    if len(bank[0]) == 0:
      raise base.SynthesisError(f"cutpaste: {checkpoint!r} has no defect instance that fits a "
                                f"{patch_size}x{patch_size} crop")
    return cls(*bank)

  def apply(self, state, backgrounds, class_ids, offsets, keys):
    """Copies a random crop of each sample's class, flipped at random, into its window."""
    p = state["images"].shape[1]

    def pick(key, cid):
      kc, kh, kv = jax.random.split(key, 3)
      logits = jnp.where(state["classes"] == cid, 0.0, -jnp.inf)
      i = jax.random.categorical(kc, logits)
      img, m = state["images"][i], state["masks"][i]
      hflip, vflip = jax.random.bernoulli(kh), jax.random.bernoulli(kv)
      img = jnp.where(hflip, img[:, ::-1], img)
      m = jnp.where(hflip, m[:, ::-1], m)
      img = jnp.where(vflip, img[::-1], img)
      m = jnp.where(vflip, m[::-1], m)
      return img, m

    patches, masks = jax.vmap(pick)(keys, class_ids)
    windows = compose.crop_windows(backgrounds, offsets, p)
    pasted = compose.paste(windows, patches, masks)
    return compose.put_windows(backgrounds, jnp.round(pasted).astype(jnp.uint8), offsets)
