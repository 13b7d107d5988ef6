"""The fusion network T (an encoder-decoder with skips) and the patch discriminator D_T.

Both are R3GAN-style (normalisation-free residual blocks: 1x1 expand -> grouped 3x3 -> 1x1,
leaky ReLU, fix-up initialisation that zeroes each block's last conv so every block starts as the
identity; bilinear resampling). T predicts a *residual*, T(x) = x + delta(x, window), whose last
layer starts at zero, so T starts as the identity map: fusion can only learn to change what needs
changing, and the out-of-mask change starts at exactly zero. The same network with extra input
channels (noise, mask) and a class embedding is the single-stage inpainting generator.

D_T returns a *map* of logits (one per 4x4 or 8x8 input cell), so the loss can weight the band
around the seam, where pasted defects betray themselves, more than the rest of the image.

Parameters live in pure dicts (`split_params` / `bind`) so that the training state is a plain
pytree that orbax checkpoints and `jit` shards without knowing about NNX.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def _resize(x: jax.Array, factor: float) -> jax.Array:
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, int(h * factor), int(w * factor), c), "bilinear")


class ResBlock(nnx.Module):
  """Inverted-bottleneck residual block with grouped 3x3 conv and fix-up init."""

  def __init__(self, width: int, expansion: int = 2, group_size: int = 8, *, rngs: nnx.Rngs):
    hidden = width * expansion
    groups = max(1, hidden // group_size)
    self.expand = nnx.Conv(width, hidden, (1, 1), rngs=rngs)
    self.spatial = nnx.Conv(hidden, hidden, (3, 3), feature_group_count=groups, rngs=rngs)
    self.project = nnx.Conv(hidden, width, (1, 1), use_bias=False,
                            kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x):
    h = jax.nn.leaky_relu(self.expand(x), 0.2)
    h = jax.nn.leaky_relu(self.spatial(h), 0.2)
    return x + self.project(h)


class UNet(nnx.Module):
  """Encoder-decoder with skip connections; widths[i] channels at 1/2^i resolution.

  Optional class conditioning adds a learned embedding to every encoder stage (broadcast over
  space), which is how the single-stage generator is told which defect to paint.
  """

  def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int] = (32, 64, 128),
               blocks: int = 1, num_classes: int = 0, *, rngs: nnx.Rngs):
    self.depth = len(widths)
    self.stem = nnx.Conv(in_channels, widths[0], (3, 3), rngs=rngs)
    self.num_classes = num_classes
    for i, w in enumerate(widths):
      if i:
        setattr(self, f"down{i}", nnx.Conv(widths[i - 1], w, (1, 1), rngs=rngs))
      if num_classes:
        setattr(self, f"embed{i}", nnx.Embed(num_classes, w, rngs=rngs))
      for j in range(blocks):
        setattr(self, f"enc{i}_{j}", ResBlock(w, rngs=rngs))
    for i in reversed(range(self.depth - 1)):
      setattr(self, f"up{i}", nnx.Conv(widths[i + 1] + widths[i], widths[i], (1, 1), rngs=rngs))
      for j in range(blocks):
        setattr(self, f"dec{i}_{j}", ResBlock(widths[i], rngs=rngs))
    self.blocks = blocks
    self.head = nnx.Conv(widths[0], out_channels, (3, 3),
                         kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x, class_ids=None):
    h = self.stem(x)
    skips = []
    for i in range(self.depth):
      if i:
        h = getattr(self, f"down{i}")(_resize(h, 0.5))
      if self.num_classes:
        h = h + getattr(self, f"embed{i}")(class_ids)[:, None, None, :]
      for j in range(self.blocks):
        h = getattr(self, f"enc{i}_{j}")(h)
      skips.append(h)
    for i in reversed(range(self.depth - 1)):
      h = jnp.concatenate([_resize(h, 2.0), skips[i]], axis=-1)
      h = jax.nn.leaky_relu(getattr(self, f"up{i}")(h), 0.2)
      for j in range(self.blocks):
        h = getattr(self, f"dec{i}_{j}")(h)
    return self.head(jax.nn.leaky_relu(h, 0.2))


class FusionNet(nnx.Module):
  """T(x, window) = x + delta: images in [-1, 1], window in [0, 1] as an extra input channel."""

  def __init__(self, widths: Sequence[int] = (32, 64, 128), blocks: int = 1, *, rngs: nnx.Rngs):
    self.unet = UNet(4, 3, widths, blocks, rngs=rngs)

  def __call__(self, x, window):
    return x + self.unet(jnp.concatenate([x, window[..., None]], -1))


class PatchDiscriminator(nnx.Module):
  """Residual D with a logit map at 1/2^(len(widths)-1) resolution (a PatchGAN-style judge).

  `extra_channels` lets the caller feed conditioning maps (the window, a mask, a class map).
  """

  def __init__(self, widths: Sequence[int] = (32, 64, 128), extra_channels: int = 0,
               blocks: int = 1, num_classes: int = 0, *, rngs: nnx.Rngs):
    self.depth = len(widths)
    self.blocks = blocks
    self.stem = nnx.Conv(3 + extra_channels, widths[0], (3, 3), rngs=rngs)
    for i, w in enumerate(widths):
      if i:
        setattr(self, f"down{i}", nnx.Conv(widths[i - 1], w, (1, 1), rngs=rngs))
      for j in range(blocks):
        setattr(self, f"block{i}_{j}", ResBlock(w, rngs=rngs))
    self.num_classes = num_classes
    if num_classes:  # projection discriminator: logit += <embed(class), features>
      self.embed = nnx.Embed(num_classes, widths[-1], rngs=rngs)
    self.head = nnx.Conv(widths[-1], 1, (1, 1), rngs=rngs)

  def __call__(self, image, extra=None, class_ids=None):
    h = image if extra is None else jnp.concatenate([image, extra], -1)
    h = self.stem(h)
    for i in range(self.depth):
      if i:
        h = getattr(self, f"down{i}")(_resize(h, 0.5))
      for j in range(self.blocks):
        h = getattr(self, f"block{i}_{j}")(h)
    h = jax.nn.leaky_relu(h, 0.2)
    logits = self.head(h)[..., 0]
    if self.num_classes:
      logits = logits + jnp.einsum("bhwc,bc->bhw", h, self.embed(class_ids)) / h.shape[-1] ** 0.5
    return logits


def split_params(module: nnx.Module):
  """(graphdef, abstract state, params as a pure dict) of a module."""
  graphdef, state = nnx.split(module)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  return graphdef, abstract, nnx.to_pure_dict(state)


def bind(graphdef, abstract, params) -> nnx.Module:
  """A module whose weights are the pure-dict `params` (traceable: use inside jit/grad)."""
  state = jax.tree.map(lambda x: x, abstract)
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(graphdef, state)
