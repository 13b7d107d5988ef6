"""Multi-scale deformable attention (Deformable DETR) in pure JAX, with bilinear sampling.

Each query attends to `num_points` sampled locations per head and per feature level, placed
around its reference box: loc = ref_center + offset / num_points * ref_size / 2. Sampling is
bilinear with zero padding and pixel centres at (i + 0.5) / size (grid_sample with
align_corners=False), written as four gathers so it jits, vmaps and differentiates on any
backend without a custom kernel.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from flax import nnx


def bilinear_sample(value, locations, height, width, start=0):
  """Samples value [B, nH, S, D] at locations [B, nH, N, 2] (x, y in [0, 1]) -> [B, nH, N, D].

  The sampled map is value[:, :, start : start + height * width] (row-major); `height`, `width`
  and `start` may be arrays broadcastable to [B, nH, N], so one call samples every level of a
  concatenated multi-level memory (four gathers in all, which keeps compile time and the
  backward scatter small). Out-of-map corners contribute zero, as
  grid_sample(padding_mode="zeros").
  """
  px = locations[..., 0] * width - 0.5
  py = locations[..., 1] * height - 0.5
  x0 = jnp.floor(px)
  y0 = jnp.floor(py)
  fx = px - x0
  fy = py - y0
  out = 0.0
  for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                    (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
    xi = (x0 + dx).astype(jnp.int32)
    yi = (y0 + dy).astype(jnp.int32)
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    idx = start + jnp.clip(yi, 0, height - 1) * width + jnp.clip(xi, 0, width - 1)
    picked = jnp.take_along_axis(value, idx[..., None], axis=2)
    out = out + picked * (w * inside)[..., None]
  return out


def ms_deform_sample(value, shapes: Sequence[tuple[int, int]], locations, weights):
  """The core op: value [B, S, nH, D] (levels concatenated, S = sum H_l*W_l); locations
  [B, Q, nH, L, P, 2]; weights [B, Q, nH, L, P] (softmaxed over L*P) -> [B, Q, nH*D]."""
  b, q, nh, nl, npt, _ = locations.shape
  heights = np.array([h for h, _ in shapes], np.int32)
  widths = np.array([w for _, w in shapes], np.int32)
  starts = np.concatenate([[0], np.cumsum(heights * widths)[:-1]]).astype(np.int32)
  per_level = lambda a: jnp.asarray(np.broadcast_to(a[None, :, None], (q, nl, npt)).reshape(-1))
  loc = rearrange(locations, "b q h l p c -> b h (q l p) c")
  sampled = bilinear_sample(rearrange(value, "b s h d -> b h s d"), loc, per_level(heights),
                            per_level(widths), per_level(starts))        # [B, nH, Q*L*P, D]
  sampled = rearrange(sampled, "b h (q l p) d -> b q h l p d", q=q, l=nl)
  out = jnp.sum(sampled * weights[..., None], axis=(3, 4))
  return rearrange(out, "b q h d -> b q (h d)")


class MSDeformableAttention(nnx.Module):
  """Queries [B,Q,C] with reference boxes [B,Q,4] (cxcywh in [0,1]) attend to multi-level maps."""

  def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int, *,
               rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"deformable attention dim {dim} is not divisible by heads {num_heads}")
    self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
    n = num_heads * num_levels * num_points
    self.offsets = nnx.Linear(dim, n * 2, kernel_init=nnx.initializers.zeros, rngs=rngs)
    # Initial offsets point in num_heads directions, growing with the point index, so the
    # untrained layer already samples a spread-out pattern around each reference.
    theta = np.arange(num_heads) * 2 * np.pi / num_heads
    grid = np.stack([np.cos(theta), np.sin(theta)], -1)
    grid = grid / np.abs(grid).max(-1, keepdims=True)
    grid = np.tile(grid[:, None, None, :], (1, num_levels, num_points, 1))
    grid *= np.arange(1, num_points + 1)[None, None, :, None]
    self.offsets.bias.set_value(jnp.asarray(grid.reshape(-1), jnp.float32))
    self.weights = nnx.Linear(dim, n, kernel_init=nnx.initializers.zeros, rngs=rngs)
    self.value_proj = nnx.Linear(dim, dim, rngs=rngs)
    self.out_proj = nnx.Linear(dim, dim, rngs=rngs)

  def __call__(self, query, reference, memory, shapes: Sequence[tuple[int, int]]):
    """memory [B, sum(H_l*W_l), C] (levels concatenated in `shapes` order) -> [B, Q, C]."""
    b, q, _ = query.shape
    nh, nl, npt = self.num_heads, self.num_levels, self.num_points
    value = rearrange(self.value_proj(memory), "b s (h d) -> b s h d", h=nh)
    off = self.offsets(query).reshape(b, q, nh, nl, npt, 2)
    attn = jax.nn.softmax(self.weights(query).reshape(b, q, nh, nl * npt), -1)
    attn = attn.reshape(b, q, nh, nl, npt)
    center = reference[:, :, None, None, None, :2]
    size = reference[:, :, None, None, None, 2:]
    locations = center + off / npt * size * 0.5
    # f32 sampling coordinates make the bilinear sample f32: back to the queries' dtype.
    return self.out_proj(ms_deform_sample(value, shapes, locations, attn).astype(query.dtype))
