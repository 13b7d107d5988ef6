"""The three DGT networks, as small NNX modules: G, DIS and the DFC classifier.

* `Generator`: encoder-decoder with skip connections over X^ = [E~_fore, E~_back, N]; skips carry
  the background texture to the output at full resolution, the bottleneck carries the class.
* `DIS`: a U-Net that reconstructs the defect-free version of its input, then a light
  segmentation head that looks at the comparison [x, r, |x - r|] and outputs a pixel heat map
  (logits). The note says DIS "locates defects from the difference between the image and its
  reconstruction"; feeding the head the difference (not thresholding it) keeps it trainable.
* `Classifier` (DFC): a strided conv net; returns logits over the known classes and the
  penultimate features. OpenMax (`openmax.py`) models the logit vectors, as Bendale & Boult do.

No normalisation layers: every sample is processed independently, so sharded and unsharded runs
agree and batch composition never changes an output.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def _conv(cin, cout, rngs, stride=1, kernel=3):
  return nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride), padding="SAME",
                  rngs=rngs)


class ConvBlock(nnx.Module):
  """conv3x3 -> SiLU -> conv3x3 -> SiLU."""

  def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
    self.a = _conv(cin, cout, rngs)
    self.b = _conv(cout, cout, rngs)

  def __call__(self, x):
    return jax.nn.silu(self.b(jax.nn.silu(self.a(x))))


def _upsample(x):
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")


class UNet(nnx.Module):
  """Encoder (ConvBlock, 2x down per level) - decoder (2x up, concat skip, ConvBlock)."""

  def __init__(self, cin: int, cout: int, widths: Sequence[int], *, rngs: nnx.Rngs):
    widths = tuple(int(w) for w in widths)
    self.enc = nnx.List([ConvBlock(a, b, rngs=rngs) for a, b in zip((cin,) + widths, widths)])
    self.down = nnx.List([_conv(w, w, rngs, stride=2) for w in widths[:-1]])
    self.up = nnx.List([ConvBlock(widths[i + 1] + widths[i], widths[i], rngs=rngs)
                        for i in reversed(range(len(widths) - 1))])
    self.out = _conv(widths[0], cout, rngs, kernel=1)

  def __call__(self, x):
    skips = []
    for i, block in enumerate(self.enc):
      x = block(x)
      if i < len(self.down):
        skips.append(x)
        x = self.down[i](x)
    for block in self.up:
      x = block(jnp.concatenate([_upsample(x), skips.pop()], -1))
    return self.out(x)


class Generator(nnx.Module):
  """G(X^) -> X_fake in [0, 1]; X^ has S + 1 + 3 channels."""

  def __init__(self, num_classes: int, widths: Sequence[int], *, rngs: nnx.Rngs):
    self.unet = UNet(num_classes + 1 + 3, 3, widths, rngs=rngs)

  def __call__(self, x_hat):
    return jax.nn.sigmoid(self.unet(x_hat))


class DIS(nnx.Module):
  """x -> (reconstruction r in [0, 1], heat-map logits [B, H, W])."""

  def __init__(self, widths: Sequence[int], head_width: int, *, rngs: nnx.Rngs):
    self.recon = UNet(3, 3, widths, rngs=rngs)
    self.head = nnx.List([_conv(9, head_width, rngs), _conv(head_width, head_width, rngs)])
    self.logit = _conv(head_width, 1, rngs, kernel=1)

  def __call__(self, x):
    r = jax.nn.sigmoid(self.recon(x))
    h = jnp.concatenate([x, r, jnp.abs(x - r)], -1)
    for conv in self.head:
      h = jax.nn.silu(conv(h))
    return r, self.logit(h)[..., 0]


class Classifier(nnx.Module):
  """DFC backbone: strided convs, global mean + max pool, linear -> (logits [B, S], features).

  A defect is a small local change on a fabric whose colour and brightness vary from image to
  image, so the input is standardised per image and channel (the fabric's own statistics) and
  the max pool keeps the strongest local response that a mean over the texture would dilute.
  Measured on 32x32 FabricSim tiny crops, 4 known classes, 150 steps of this net alone
  (/tmp probe, not a test): mean pool on raw pixels 31 % train / 25 % test accuracy (chance),
  standardised + mean-max pool 84 % / 52 %.
  """

  def __init__(self, num_classes: int, widths: Sequence[int], *, rngs: nnx.Rngs):
    widths = tuple(int(w) for w in widths)
    self.convs = nnx.List([_conv(a, b, rngs, stride=2) for a, b in zip((3,) + widths, widths)])
    self.fc = nnx.Linear(2 * widths[-1], num_classes, rngs=rngs)

  def __call__(self, x):
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    x = (x - mean) / (jnp.std(x, axis=(1, 2), keepdims=True) + 0.02)
    for conv in self.convs:
      x = jax.nn.silu(conv(x))
    features = jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2))], -1)
    return self.fc(features), features
