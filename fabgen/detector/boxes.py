"""Box conversions, IoU and generalized IoU, in JAX, for the matcher and the losses.

The model predicts boxes as normalized (cx, cy, w, h) in [0, 1] (what the sigmoid head emits and
what the L1 loss compares); the data and the public predictions use pixel (x0, y0, x1, y1) with
x1/y1 exclusive (fabgen/data/sample.py). GIoU (Rezatofighi et al. 2019) is the overlap measure
whose gradient does not vanish for disjoint boxes, hence its use in both cost and loss.
"""

from __future__ import annotations

import jax.numpy as jnp

_EPS = 1e-7


def cxcywh_to_xyxy(boxes):
  """(cx, cy, w, h) -> (x0, y0, x1, y1), any leading shape."""
  cx, cy, w, h = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_cxcywh(boxes):
  """(x0, y0, x1, y1) -> (cx, cy, w, h), any leading shape."""
  x0, y0, x1, y1 = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def normalize_xyxy(boxes, height: int, width: int):
  """Pixel xyxy -> xyxy in [0, 1] of the image."""
  scale = jnp.asarray([width, height, width, height], jnp.float32)
  return boxes.astype(jnp.float32) / scale


def denormalize_xyxy(boxes, height: int, width: int):
  """xyxy in [0, 1] -> pixel xyxy, clipped to the image."""
  scale = jnp.asarray([width, height, width, height], jnp.float32)
  return jnp.clip(boxes, 0.0, 1.0) * scale


def area(boxes):
  """Area of xyxy boxes (zero for degenerate ones)."""
  return jnp.clip(boxes[..., 2] - boxes[..., 0], 0) * jnp.clip(boxes[..., 3] - boxes[..., 1], 0)


def _iou_and_union(a, b):
  """Elementwise IoU and union of broadcastable xyxy boxes a, b."""
  lt = jnp.maximum(a[..., :2], b[..., :2])
  rb = jnp.minimum(a[..., 2:], b[..., 2:])
  wh = jnp.clip(rb - lt, 0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(a) + area(b) - inter
  return inter / (union + _EPS), union


def iou(a, b):
  """Elementwise IoU of broadcastable xyxy boxes."""
  return _iou_and_union(a, b)[0]


def giou(a, b):
  """Elementwise generalized IoU of broadcastable xyxy boxes, in [-1, 1]."""
  overlap, union = _iou_and_union(a, b)
  lt = jnp.minimum(a[..., :2], b[..., :2])
  rb = jnp.maximum(a[..., 2:], b[..., 2:])
  wh = jnp.clip(rb - lt, 0)
  hull = wh[..., 0] * wh[..., 1]
  return overlap - (hull - union) / (hull + _EPS)


def pairwise_giou(a, b):
  """GIoU of every a [..., N, 4] with every b [..., M, 4] -> [..., N, M]."""
  return giou(a[..., :, None, :], b[..., None, :, :])
