"""RT-DETR's hybrid encoder: attention within the coarsest level, convolutional cross-scale fusion.

Self-attention over every pixel of every level (Deformable DETR's encoder) costs most of a DETR's
compute while the fine levels gain little from it; RT-DETR attends only within C5 (AIFI: one
transformer layer with 2-D sine positions) and then fuses scales with convolutions (CCFM: a
top-down then bottom-up path, PAN-style), which is cheap on any backend.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.detector.backbone import ConvNorm
from fabgen.platform import sharding as sharding_lib


def sine_position_2d(height: int, width: int, dim: int, temperature: float = 10000.0):
  """2-D sin/cos position embedding [H*W, dim] (dim divisible by 4)."""
  if dim % 4:
    raise ValueError(f"2-D position embedding needs dim divisible by 4, got {dim}")
  gy, gx = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing="ij")
  omega = 1.0 / temperature ** (jnp.arange(dim // 4, dtype=jnp.float32) / (dim // 4))
  ox = gx.reshape(-1)[:, None] * omega[None]
  oy = gy.reshape(-1)[:, None] * omega[None]
  return jnp.concatenate([jnp.sin(ox), jnp.cos(ox), jnp.sin(oy), jnp.cos(oy)], axis=1)


class TransformerEncoderLayer(nnx.Module):
  """Post-norm self-attention + FFN; positions are added to queries and keys only."""

  def __init__(self, dim: int, heads: int, ffn: int, *, rngs: nnx.Rngs):
    self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
    self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
    self.ffn1 = nnx.Linear(dim, ffn, rngs=rngs)
    self.ffn2 = nnx.Linear(ffn, dim, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, rngs=rngs)

  def __call__(self, x, pos):
    qk = x + pos
    x = self.norm1(x + self.attn(qk, qk, x, deterministic=True))
    x = self.norm2(x + self.ffn2(jax.nn.gelu(self.ffn1(x))))
    return sharding_lib.constrain(x, "batch", None, None)


class FusionBlock(nnx.Module):
  """CSP-style fusion: two 1x1 branches, one through `depth` 3x3 convs, summed."""

  def __init__(self, cin: int, cout: int, depth: int, *, rngs: nnx.Rngs):
    self.a = ConvNorm(cin, cout, 1, rngs=rngs)
    self.b = ConvNorm(cin, cout, 1, rngs=rngs)
    self.convs = nnx.List([ConvNorm(cout, cout, 3, rngs=rngs) for _ in range(depth)])

  def __call__(self, x):
    y = self.a(x)
    for conv in self.convs:
      y = conv(y)
    return y + self.b(x)


def _upsample2(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class HybridEncoder(nnx.Module):
  """[C3, C4, C5] at any widths -> three fused maps [B, H_l, W_l, dim] (strides 8, 16, 32)."""

  def __init__(self, in_channels: Sequence[int], dim: int, heads: int, ffn: int,
               fusion_depth: int, *, rngs: nnx.Rngs):
    self.proj = nnx.List([ConvNorm(c, dim, 1, act=False, rngs=rngs) for c in in_channels])
    self.aifi = TransformerEncoderLayer(dim, heads, ffn, rngs=rngs)
    n = len(in_channels)
    self.lateral = nnx.List([ConvNorm(dim, dim, 1, rngs=rngs) for _ in range(n - 1)])
    self.top_down = nnx.List([FusionBlock(2 * dim, dim, fusion_depth, rngs=rngs)
                              for _ in range(n - 1)])
    self.down = nnx.List([ConvNorm(dim, dim, 3, 2, rngs=rngs) for _ in range(n - 1)])
    self.bottom_up = nnx.List([FusionBlock(2 * dim, dim, fusion_depth, rngs=rngs)
                               for _ in range(n - 1)])
    self.dim = dim

  def __call__(self, features: Sequence[jax.Array]) -> list[jax.Array]:
    feats = [p(f) for p, f in zip(self.proj, features)]
    b, h, w, c = feats[-1].shape
    tokens = feats[-1].reshape(b, h * w, c)
    tokens = self.aifi(tokens, sine_position_2d(h, w, c)[None].astype(tokens.dtype))
    feats[-1] = tokens.reshape(b, h, w, c)
    # Top-down: coarse -> fine.
    inner = [feats[-1]]
    for i in range(len(feats) - 1):
      coarse = self.lateral[i](inner[0])
      inner[0] = coarse
      fine = feats[-2 - i]
      inner.insert(0, self.top_down[i](jnp.concatenate([_upsample2(coarse), fine], -1)))
    # Bottom-up: fine -> coarse.
    outs = [inner[0]]
    for i in range(len(feats) - 1):
      down = self.down[i](outs[-1])
      outs.append(self.bottom_up[i](jnp.concatenate([down, inner[i + 1]], -1)))
    return outs
