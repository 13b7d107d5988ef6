"""The fusion network T (an encoder-decoder with skips) and the patch discriminator D_T.

Both are assembled from the shared R3GAN pieces (`fabgen.nn.r3gan`): normalisation-free
residual blocks (1x1 expand -> grouped 3x3 -> 1x1, leaky ReLU, fix-up initialisation with the
L^(-1/4) scale and a zero last conv, so every block starts as the identity), [1, 2, 1]
resampling (`fabgen.nn.resample`) with 1x1 convs where the width changes, and the grouped conv's
per-backend fast path (`fabgen.nn.grouped_conv`). What is stage-2 specific is the topology:

* T predicts a *residual*, T(x) = x + delta(x, window), whose head is zero-initialised, so T
  starts as the identity map: fusion can only learn to change what needs changing, and the
  out-of-mask change starts at exactly zero. The same U-Net with extra input channels (noise,
  mask) and class conditioning is the single-stage inpainting generator.
* D_T returns a *map* of logits (one per 2^(n-1) x 2^(n-1) input cell) instead of R3GAN's single
  logit, so the loss can weight the band around the seam, where pasted defects betray themselves.

Parameters are pure dicts through `fabgen.platform.nnx_bridge.PureModule`, so the training state
is a plain pytree that orbax checkpoints and `jit` shards without knowing about NNX.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.nn import masks as mask_ops
from fabgen.nn import r3gan
from fabgen.nn import resample


def _fixup_scale(num_blocks: int) -> float:
  return max(1, num_blocks) ** -0.25


class UNet(nnx.Module):
  """Encoder-decoder with skip connections; widths[i] channels at 1/2^i resolution.

  Optional class conditioning adds a learned class embedding (a 1x1 map of the one-hot class) to
  every encoder level, broadcast over space: that is how the single-stage generator is told which
  defect to paint. The head is zero-initialised, so the network's output starts at zero.
  """

  def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int] = (32, 64, 128),
               blocks: int = 1, num_classes: int = 0, expansion: int = 2, group_width: int = 16,
               impl: str = "auto", *, rngs: nnx.Rngs):
    widths = tuple(widths)
    self.depth, self.blocks, self.num_classes = len(widths), blocks, num_classes
    scale = _fixup_scale(blocks * (2 * len(widths) - 1))
    self.stem = r3gan.GroupedConv3x3(in_channels, widths[0], 1, rngs=rngs)

    def block(w):
      return r3gan.ResidualBlock(w, expansion, None, group_width, scale, impl, rngs=rngs)

    for i, w in enumerate(widths):
      if i:
        setattr(self, f"down{i}", r3gan.Conv1x1(widths[i - 1], w, rngs=rngs))
      if num_classes:
        setattr(self, f"embed{i}", r3gan.Conv1x1(num_classes, w, rngs=rngs))
      for j in range(blocks):
        setattr(self, f"enc{i}_{j}", block(w))
    for i in reversed(range(self.depth - 1)):
      setattr(self, f"up{i}", r3gan.Conv1x1(widths[i + 1] + widths[i], widths[i], rngs=rngs))
      for j in range(blocks):
        setattr(self, f"dec{i}_{j}", block(widths[i]))
    self.head = r3gan.Conv1x1(widths[0], out_channels, zero=True, rngs=rngs)

  def __call__(self, x, class_ids=None):
    h = self.stem(x)
    onehot = None
    if self.num_classes:
      if class_ids is None:
        raise ValueError("this UNet was built with num_classes > 0 and needs class_ids")
      onehot = jax.nn.one_hot(class_ids, self.num_classes, dtype=h.dtype)
    skips = []
    for i in range(self.depth):
      if i:
        h = getattr(self, f"down{i}")(resample.downsample2x(h))
      if onehot is not None:
        h = h + getattr(self, f"embed{i}")(onehot)[:, None, None, :]
      for j in range(self.blocks):
        h = getattr(self, f"enc{i}_{j}")(h)
      skips.append(h)
    for i in reversed(range(self.depth - 1)):
      h = jnp.concatenate([resample.upsample2x(h), skips[i]], axis=-1)
      h = r3gan.act(getattr(self, f"up{i}")(h))
      for j in range(self.blocks):
        h = getattr(self, f"dec{i}_{j}")(h)
    return self.head(r3gan.act(h))


class FusionNet(nnx.Module):
  """T(x, window) = x + delta * reach: images in [-1, 1], window in [0, 1] as an input channel.

  `reach` = dilate(window, reach_radius) (0 = no limit) bounds where T can act at all: a conv
  net's early updates spread over the whole image, so without it T's change leaks across the
  fabric until the L1 term has pushed it back. With it, T can still move pixels in a ring
  around the seam band (reach_radius > the loss's seam_radius), which the L1 term and the
  out-of-mask share police.
  """

  def __init__(self, widths: Sequence[int] = (32, 64, 128), blocks: int = 1, expansion: int = 2,
               group_width: int = 16, impl: str = "auto", reach_radius: int = 0,
               *, rngs: nnx.Rngs):
    self.reach_radius = reach_radius
    self.unet = UNet(4, 3, widths, blocks, 0, expansion, group_width, impl, rngs=rngs)

  @classmethod
  def from_config(cls, m, rngs: nnx.Rngs) -> "FusionNet":
    """From configs/fusion.py's `model` section."""
    return cls(m.widths, m.blocks, **network_args(m), reach_radius=m.reach_radius, rngs=rngs)

  def __call__(self, x, window):
    delta = self.unet(jnp.concatenate([x, window[..., None]], -1))
    if self.reach_radius > 0:
      delta = delta * mask_ops.defect_region(window, self.reach_radius)[..., None].astype(
          delta.dtype)
    return x + delta


class PatchDiscriminator(nnx.Module):
  """R3GAN trunk with a logit map at 1/2^(len(widths)-1) resolution (a PatchGAN-style judge).

  `extra_channels` lets the caller feed conditioning maps (the window, a mask). With
  `num_classes` it is a projection discriminator: each location's logit gains
  <embed(class), features> / sqrt(width).
  """

  def __init__(self, widths: Sequence[int] = (32, 64, 128), extra_channels: int = 0,
               blocks: int = 1, num_classes: int = 0, expansion: int = 2, group_width: int = 16,
               impl: str = "auto", *, rngs: nnx.Rngs):
    widths = tuple(widths)
    self.depth, self.blocks, self.num_classes = len(widths), blocks, num_classes
    scale = _fixup_scale(blocks * len(widths))
    self.stem = r3gan.Conv1x1(3 + extra_channels, widths[0], rngs=rngs)
    for i, w in enumerate(widths):
      if i and w != widths[i - 1]:
        setattr(self, f"t{i}", r3gan.Conv1x1(widths[i - 1], w, rngs=rngs))
      for j in range(blocks):
        setattr(self, f"block{i}_{j}",
                r3gan.ResidualBlock(w, expansion, None, group_width, scale, impl, rngs=rngs))
    if num_classes:
      self.embed = r3gan.Conv1x1(num_classes, widths[-1], rngs=rngs)
    self.head = r3gan.Conv1x1(widths[-1], 1, rngs=rngs)

  @classmethod
  def from_config(cls, m, rngs: nnx.Rngs, num_classes: int = 0) -> "PatchDiscriminator":
    """D for a fusion / inpainter `model` section, with the window or mask as one extra channel."""
    return cls(m.d_widths, extra_channels=1, blocks=m.blocks, num_classes=num_classes,
               **network_args(m), rngs=rngs)

  def __call__(self, image, extra=None, class_ids=None):
    h = image if extra is None else jnp.concatenate([image, extra], -1)
    h = self.stem(h)
    for i in range(self.depth):
      if i:
        h = resample.downsample2x(h)
        t = getattr(self, f"t{i}", None)
        h = t(h) if t is not None else h
      for j in range(self.blocks):
        h = getattr(self, f"block{i}_{j}")(h)
    h = r3gan.act(h)
    logits = self.head(h)[..., 0]
    if self.num_classes:
      e = self.embed(jax.nn.one_hot(class_ids, self.num_classes, dtype=h.dtype))
      logits = logits + jnp.einsum("bhwc,bc->bhw", h, e) / math.sqrt(h.shape[-1])
    return logits


def network_args(model_config) -> dict:
  """The R3GAN block options shared by T, G and D, from a config's `model` section."""
  return {"expansion": model_config.expansion, "group_width": model_config.group_width,
          "impl": model_config.conv_impl}
