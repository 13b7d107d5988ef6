"""The single-stage R3GAN inpainter: G(z, background, mask, class) paints a defect in place.

The open question it answers is whether one end-to-end generator fuses as well as
the two-stage pipeline. G sees the background with the defect region R = dilate(mask, margin)
blanked out, the mask, and noise channels, is told the class through embeddings, and its output
is composited back only inside R: out = background * (1 - R) + G(...) * R. There is therefore no
separate fusion stage (G paints the seam itself) and no way to change pixels outside R.

Training pairs are real defect crops y with their masks m: the input is y with R blanked, the
real sample for D is y, the fake is the composite. D is a patch discriminator that sees the mask
and projects the class, trained with the stage-1 recipe (RpGAN + R1 + R2).
"""

from __future__ import annotations

from typing import Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fabgen.nn import masks as mask_ops
from fabgen.platform import input_options
from fabgen.stage2 import fusion


class Inpainter(nnx.Module):
  """UNet over [blanked background (3), mask (1), noise (noise_channels)] + class embeddings."""

  def __init__(self, num_classes: int, widths: Sequence[int] = (32, 64, 128), blocks: int = 1,
               noise_channels: int = 4, expansion: int = 2, group_width: int = 16,
               impl: str = "auto", *, rngs: nnx.Rngs):
    self.noise_channels = noise_channels
    self.unet = fusion.UNet(4 + noise_channels, 3, widths, blocks, num_classes, expansion,
                            group_width, impl, rngs=rngs)

  @classmethod
  def from_config(cls, m, num_classes: int, rngs: nnx.Rngs) -> "Inpainter":
    """From configs/inpainter.py's `model` section."""
    return cls(num_classes, m.widths, m.blocks, m.noise_channels, **fusion.network_args(m),
               rngs=rngs)

  def __call__(self, blanked, mask, class_ids, noise):
    return jnp.tanh(self.unet(jnp.concatenate([blanked, mask[..., None], noise], -1), class_ids))


def inpaint(g_fn, background, mask, class_ids, key, margin: int, noise_channels: int):
  """Signed background [B,S,S,3], mask [B,S,S] -> signed composite (G only inside R)."""
  r = mask_ops.defect_region(mask, margin)
  blanked = background * (1.0 - r[..., None])
  noise = jax.random.normal(key, background.shape[:3] + (noise_channels,))
  painted = g_fn(blanked, mask, class_ids, noise)
  return blanked + painted * r[..., None]


def mask_bank(crops: tuple, size: int) -> dict[str, np.ndarray]:
  """The real defect shapes a trained model samples from at synthesis, in a fixed-size bank.

  The bank lives in the training state (one checkpoint is everything the `inpainter` method needs);
  its shape is fixed by `size`, not by how many crops the data held, so a checkpoint's layout does
  not depend on the data. Crops are taken round-robin over classes; unused rows have class -1.
  """
  _, masks, classes = crops
  classes = np.asarray(classes, np.int32)
  by_class = [np.flatnonzero(classes == c) for c in np.unique(classes)]
  order = [int(idx[k]) for k in range(max((len(i) for i in by_class), default=0))
           for idx in by_class if k < len(idx)][:size]
  out_masks = np.zeros((size,) + np.asarray(masks).shape[1:], np.float32)
  out_classes = np.full((size,), -1, np.int32)
  out_masks[:len(order)] = np.asarray(masks, np.float32)[order]
  out_classes[:len(order)] = classes[order]
  return {"masks": out_masks, "classes": out_classes}


def crop_dataset(crops: tuple, batch_size: int, process_index: int, process_count: int,
                 seed: int, options: grain.ReadOptions | None = None) -> grain.IterDataset:
  """Infinite shuffled batches of real crops {"y", "mask", "class_id"} with random flips."""
  images, masks, classes = crops

  def example(i, rng):
    img, m = images[i], masks[i]
    if rng.random() < 0.5:
      img, m = img[:, ::-1], m[:, ::-1]
    return {"y": np.ascontiguousarray(img), "mask": np.ascontiguousarray(m),
            "class_id": np.asarray(classes[i], np.int32)}

  ds = grain.MapDataset.range(len(images)).slice(slice(process_index, None, process_count))
  ds = ds.shuffle(seed=seed).repeat(None).random_map(lambda i, r: example(int(i), r), seed=seed)
  return ds.batch(batch_size, drop_remainder=True).to_iter_dataset(
      options or input_options.read_options())
