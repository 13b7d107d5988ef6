"""DeepLabV3+-style segmentation head on the detector's backbone: per-pixel defect class maps.

The paper's own detector is a segmentation network, and thin or irregular defects (broken ends,
stripes) are poorly described by boxes; a pixel head on the same backbone gives the pixel-level
F-measure at little extra cost. Atrous spatial pyramid pooling (parallel dilated 3x3 convs plus
an image-level pooling branch) on the stride-16 map C4, upsampled and fused with the stride-4
map C2 (the V3+ decoder), then a classifier over K + 1 channels (0 = background).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.detector.backbone import ConvNorm


class ASPP(nnx.Module):
  """1x1 conv, one dilated 3x3 conv per rate, and global pooling, concatenated and projected."""

  def __init__(self, cin: int, dim: int, rates: Sequence[int], *, rngs: nnx.Rngs):
    self.branches = nnx.List([ConvNorm(cin, dim, 1, rngs=rngs)] + [
        ConvNorm(cin, dim, 3, dilation=r, rngs=rngs) for r in rates])
    self.pool = ConvNorm(cin, dim, 1, rngs=rngs)
    self.project = ConvNorm(dim * (len(rates) + 2), dim, 1, rngs=rngs)

  def __call__(self, x):
    outs = [branch(x) for branch in self.branches]
    pooled = self.pool(jnp.mean(x, axis=(1, 2), keepdims=True))
    outs.append(jnp.broadcast_to(pooled, outs[0].shape))
    return self.project(jnp.concatenate(outs, -1))


class SegHead(nnx.Module):
  """(C2, C4) -> logits [B, H/4, W/4, num_classes + 1]."""

  def __init__(self, c2: int, c4: int, dim: int, num_classes: int, rates: Sequence[int], *,
               rngs: nnx.Rngs):
    self.aspp = ASPP(c4, dim, rates, rngs=rngs)
    self.low = ConvNorm(c2, max(dim // 4, 8), 1, rngs=rngs)
    self.fuse = ConvNorm(dim + max(dim // 4, 8), dim, 3, rngs=rngs)
    self.classify = nnx.Conv(dim, num_classes + 1, (1, 1), rngs=rngs)

  def __call__(self, c2, c4):
    high = self.aspp(c4)
    b, h, w, _ = c2.shape
    high = jax.image.resize(high, (b, h, w, high.shape[-1]), "bilinear")
    return self.classify(self.fuse(jnp.concatenate([high, self.low(c2)], -1)))
