"""RT-DETR's decoder: top-k query selection from the encoder, then deformable decoder layers
that refine their boxes layer by layer.

Query selection: every encoder pixel proposes a box (an anchor at its own position, scale
growing with the level, plus a predicted offset) with class scores; the `num_queries` most
confident proposals become the decoder's initial reference boxes and content queries (both
detached, as in RT-DETR), so the decoder starts from the image instead of from learnt queries.
Iterative refinement: each layer predicts a delta in logit space, b_l = sigmoid(delta_l +
logit(b_{l-1})), and passes the detached b_l on; every layer's boxes and logits are returned for
the auxiliary losses.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.detector.deformable_attention import MSDeformableAttention


def inverse_sigmoid(x, eps: float = 1e-5):
  x = jnp.clip(x, eps, 1 - eps)
  return jnp.log(x / (1 - x))


class MLP(nnx.Module):
  """Linear layers with ReLU between them (box heads, query position embedding)."""

  def __init__(self, din: int, dhidden: int, dout: int, layers: int, *, rngs: nnx.Rngs,
               zero_last: bool = False):
    dims = [din] + [dhidden] * (layers - 1) + [dout]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
    if zero_last:
      last = self.layers[-1]
      last.kernel.set_value(jnp.zeros_like(last.kernel.get_value()))
      last.bias.set_value(jnp.zeros_like(last.bias.get_value()))

  def __call__(self, x):
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = jax.nn.relu(x)
    return x


def make_anchors(shapes: Sequence[tuple[int, int]], base_size: float = 0.05):
  """Anchors [S, 4] in logit space (cxcywh) and their validity [S] over all levels' pixels."""
  anchors = []
  for level, (h, w) in enumerate(shapes):
    gy, gx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    cxcy = jnp.stack([(gx + 0.5) / w, (gy + 0.5) / h], -1).reshape(-1, 2)
    wh = jnp.full_like(cxcy, base_size * 2.0 ** level)
    anchors.append(jnp.concatenate([cxcy, wh], -1))
  anchors = jnp.concatenate(anchors, 0)
  valid = jnp.all((anchors > 0.01) & (anchors < 0.99), -1)
  return inverse_sigmoid(anchors), valid


class DecoderLayer(nnx.Module):
  """Self-attention among queries, deformable cross-attention to the encoder maps, FFN."""

  def __init__(self, dim: int, heads: int, ffn: int, levels: int, points: int, *,
               rngs: nnx.Rngs):
    self.self_attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
    self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
    self.cross_attn = MSDeformableAttention(dim, heads, levels, points, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
    self.ffn1 = nnx.Linear(dim, ffn, rngs=rngs)
    self.ffn2 = nnx.Linear(ffn, dim, rngs=rngs)
    self.norm3 = nnx.LayerNorm(dim, rngs=rngs)

  def __call__(self, x, pos, reference, memory, shapes):
    qk = x + pos
    x = self.norm1(x + self.self_attn(qk, qk, x, deterministic=True))
    x = self.norm2(x + self.cross_attn(x + pos, reference, memory, shapes))
    return self.norm3(x + self.ffn2(jax.nn.relu(self.ffn1(x))))


class Decoder(nnx.Module):
  """Encoder maps -> per-layer (logits, boxes) plus the selected encoder proposals."""

  def __init__(self, dim: int, num_classes: int, num_queries: int, num_layers: int, heads: int,
               ffn: int, levels: int, points: int, *, rngs: nnx.Rngs):
    self.num_queries = num_queries
    self.enc_proj = nnx.Linear(dim, dim, rngs=rngs)
    self.enc_norm = nnx.LayerNorm(dim, rngs=rngs)
    prior_bias = -4.6  # sigmoid(-4.6) ~ 0.01: the focal-loss prior, so early scores are calm
    self.enc_score = nnx.Linear(dim, num_classes, bias_init=nnx.initializers.constant(prior_bias),
                                rngs=rngs)
    self.enc_box = MLP(dim, dim, 4, 3, rngs=rngs, zero_last=True)
    self.query_pos = MLP(4, 2 * dim, dim, 2, rngs=rngs)
    self.layers = nnx.List([DecoderLayer(dim, heads, ffn, levels, points, rngs=rngs)
                            for _ in range(num_layers)])
    self.scores = nnx.List([
        nnx.Linear(dim, num_classes, bias_init=nnx.initializers.constant(prior_bias), rngs=rngs)
        for _ in range(num_layers)])
    self.box_heads = nnx.List([MLP(dim, dim, 4, 3, rngs=rngs, zero_last=True)
                               for _ in range(num_layers)])

  def __call__(self, maps: Sequence[jax.Array]) -> dict[str, jax.Array]:
    shapes = [(m.shape[1], m.shape[2]) for m in maps]
    b, dim = maps[0].shape[0], maps[0].shape[-1]
    memory = jnp.concatenate([m.reshape(b, -1, dim) for m in maps], axis=1)
    anchors, valid = make_anchors(shapes)
    feats = self.enc_norm(self.enc_proj(jnp.where(valid[None, :, None], memory, 0.0)))
    enc_logits = self.enc_score(feats)
    enc_coords = self.enc_box(feats) + jnp.where(valid[:, None], anchors, 0.0)[None]
    score = jnp.where(valid[None], jnp.max(enc_logits, -1), -jnp.inf)
    if self.num_queries > score.shape[1]:
      raise ValueError(f"num_queries={self.num_queries} exceeds the {score.shape[1]} encoder "
                       f"positions of a {shapes[0]} stride-8 map: use fewer queries or larger "
                       f"images")
    _, top = jax.lax.top_k(score, self.num_queries)                          # [B, Q]
    take = lambda x: jnp.take_along_axis(x, top[..., None], axis=1)
    sel_logits = take(enc_logits)
    sel_boxes = jax.nn.sigmoid(take(enc_coords))
    x = jax.lax.stop_gradient(take(feats))
    reference = jax.lax.stop_gradient(sel_boxes)
    all_logits, all_boxes = [], []
    for layer, score_head, box_head in zip(self.layers, self.scores, self.box_heads):
      # Boxes and references stay f32 (coordinates); the query path runs in the features' dtype.
      x = layer(x, self.query_pos(reference.astype(x.dtype)), reference, memory, shapes)
      boxes = jax.nn.sigmoid(box_head(x) + inverse_sigmoid(reference))
      all_logits.append(score_head(x))
      all_boxes.append(boxes)
      reference = jax.lax.stop_gradient(boxes)
    return {"logits": jnp.stack(all_logits), "boxes": jnp.stack(all_boxes),
            "enc_logits": sel_logits, "enc_boxes": sel_boxes}
