"""The whole detector as one NNX module: backbone -> hybrid encoder -> decoder, + seg head.

Sizes come in as explicit arguments (`DetectorModel.from_config(config.model)` maps the config
section onto them); nothing reads a global config. `postprocess` turns raw outputs into the
public prediction format (pixel xyxy boxes, scores, global class ids, per-pixel probabilities).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from fabgen.detector import boxes as box_ops
from fabgen.detector.backbone import ResNet
from fabgen.detector.decoder import Decoder
from fabgen.detector.encoder import HybridEncoder
from fabgen.detector.seg_head import SegHead

# ImageNet statistics: the usual input normalization, and what a backbone trained elsewhere expects.
MEAN = jnp.asarray([0.485, 0.456, 0.406], jnp.float32) * 255
STD = jnp.asarray([0.229, 0.224, 0.225], jnp.float32) * 255

STRIDE = 32  # images must be multiples of the backbone's total stride


def normalize(images):
  """uint8 (or 0..255 float) [B,H,W,3] -> zero-mean unit-variance float32."""
  return (images.astype(jnp.float32) - MEAN) / STD


class DetectorModel(nnx.Module):
  """RT-DETR-style detector with a DeepLabV3+ segmentation head on the same backbone."""

  def __init__(self, num_classes: int, *, widths: Sequence[int], depths: Sequence[int],
               dim: int, heads: int, ffn: int, fusion_depth: int, num_queries: int,
               decoder_layers: int, points: int, seg_dim: int, seg_rates: Sequence[int],
               rngs: nnx.Rngs):
    self.num_classes = num_classes
    self.backbone = ResNet(widths, depths, rngs=rngs)
    self.encoder = HybridEncoder(widths[1:], dim, heads, ffn, fusion_depth, rngs=rngs)
    self.decoder = Decoder(dim, num_classes, num_queries, decoder_layers, heads, ffn, 3, points,
                           rngs=rngs)
    self.seg = (SegHead(widths[0], widths[2], seg_dim, num_classes, seg_rates, rngs=rngs)
                if seg_dim > 0 else None)

  @classmethod
  def from_config(cls, m: ml_collections.ConfigDict, rngs: nnx.Rngs) -> "DetectorModel":
    """Builds the model from a `config.model` section (see configs/detector.py)."""
    return cls(len(m.class_ids), widths=tuple(m.widths), depths=tuple(m.depths), dim=m.dim,
               heads=m.heads, ffn=m.ffn, fusion_depth=m.fusion_depth,
               num_queries=m.num_queries, decoder_layers=m.decoder_layers, points=m.points,
               seg_dim=m.seg_dim, seg_rates=tuple(m.seg_rates), rngs=rngs)

  def __call__(self, images) -> dict[str, jax.Array]:
    """images uint8 [B,H,W,3] (H, W multiples of 32) -> raw outputs.

    logits [L,B,Q,K] and boxes [L,B,Q,4] (normalized cxcywh) per decoder layer; enc_logits,
    enc_boxes [B,Q,...] of the selected proposals; seg_logits [B,H/4,W/4,K+1].
    """
    h, w = images.shape[1:3]
    if h % STRIDE or w % STRIDE:
      raise ValueError(f"detector input {h}x{w} is not a multiple of {STRIDE}; pad or tile it")
    # The network computes in its weights' dtype (bf16 under a mixed-precision policy, which
    # casts the weights): the f32 normalised image would otherwise promote every layer to f32.
    dtype = self.backbone.stem1.conv.kernel.get_value().dtype
    c2, c3, c4, c5 = self.backbone(normalize(images).astype(dtype))
    out = self.decoder(self.encoder([c3, c4, c5]))
    if self.seg is not None:
      out["seg_logits"] = self.seg(c2, c4)
    return out


def postprocess(outputs, height: int, width: int, class_ids) -> dict[str, jax.Array]:
  """Raw outputs -> the public predictions of the last decoder layer.

  boxes [B,Q,4] pixel xyxy, scores [B,Q] max class probability, labels [B,Q] global class ids,
  class_probs [B,Q,K], seg_probs [B,H,W,K+1] (channel 0 = background; uniform if no seg head).
  """
  logits = outputs["logits"][-1]
  probs = jax.nn.sigmoid(logits)
  xyxy = box_ops.denormalize_xyxy(box_ops.cxcywh_to_xyxy(outputs["boxes"][-1]), height, width)
  ids = jnp.asarray(class_ids, jnp.int32)
  b, k = logits.shape[0], logits.shape[-1]
  if "seg_logits" in outputs:
    seg = outputs["seg_logits"]
    seg = jax.image.resize(seg, (b, height, width, seg.shape[-1]), "bilinear")
    seg_probs = jax.nn.softmax(seg, -1)
  else:
    seg_probs = jnp.full((b, height, width, k + 1), 1.0 / (k + 1), jnp.float32)
  return {"boxes": xyxy.astype(jnp.float32), "scores": jnp.max(probs, -1),
          "labels": ids[jnp.argmax(probs, -1)], "class_probs": probs,
          "seg_probs": seg_probs.astype(jnp.float32)}
