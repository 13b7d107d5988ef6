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

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.data import defect_crops
from fabgen.data import readers
from fabgen.data.readers import skips
from fabgen.nn import masks as mask_ops
from fabgen.synthesis import base


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
    return cls(*defect_crops.extract_crops(records, patch_size, max_per_class, class_ids))

  @classmethod
  def from_checkpoint(cls, checkpoint: str, patch_size: int = 64, max_per_class: int = 64,
                      max_records: int = 2000, **unused) -> "CutPasteSynthesizer":
    """`checkpoint` is a labelled source: a reader spec or folder (see `open_source`)."""
    del unused
    try:
      src = readers.open_source(checkpoint)
    except Exception as e:  # the reader's own message names the path; keep it
      raise base.SynthesisError(
          f"cutpaste --checkpoint must be a labelled data source (reader spec or folder); "
          f"cannot open {checkpoint!r}: {e}") from e
    return cls.from_source(src, patch_size, max_per_class, max_records, name=checkpoint)

  @classmethod
  def from_source(cls, src, patch_size: int = 64, max_per_class: int = 64,
                  max_records: int = 2000, name: str | None = None) -> "CutPasteSynthesizer":
    """The crop bank of an opened labelled source (e.g. one with a class map applied)."""
    # A record only a full decode finds broken is left out, logged with its path and counted.
    records = skips.read_records(src, readers.spread_indices(len(src), max_records))
    bank = defect_crops.extract_crops(records, patch_size, max_per_class)
    if len(bank[0]) == 0:
      raise base.SynthesisError(f"cutpaste: {name or getattr(src, 'name', src)!r} has no defect "
                                f"instance that fits a {patch_size}x{patch_size} crop")
    synth = cls(*bank)
    synth.input_sources = (src,)
    return synth

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
    windows = mask_ops.crop_windows(backgrounds, offsets, p)
    pasted = mask_ops.paste(windows, patches, masks)
    return mask_ops.put_windows(backgrounds, jnp.round(pasted).astype(jnp.uint8), offsets)
