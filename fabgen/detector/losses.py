"""Detector losses: varifocal classification, L1 and GIoU boxes (with aux layers), seg CE.

Set losses follow DETR/RT-DETR: each decoder layer's predictions (and the encoder's top-k
proposals) are matched to the targets independently (fabgen/detector/matcher.py), then
  varifocal: BCE(logit, q) weighted by q on positives and alpha * p^gamma on negatives, where
             the positive target q is the IoU of the matched box (so scores rank by localisation);
  L1:        |b - b*|_1 on normalized cxcywh boxes;
  GIoU:      1 - GIoU(b, b*);
each summed over matched pairs and divided by the number of real boxes in the (global) batch.
The segmentation head gets pixel cross-entropy against the class map (0 = background,
k + 1 = head class k), with defect pixels up-weighted because defects cover a few percent of
an image.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from fabgen.detector import boxes as box_ops
from fabgen.detector import matcher as matcher_lib


def varifocal_loss(logits, target_score, positive, alpha: float = 0.75, gamma: float = 2.0):
  """Sum of the varifocal loss over [B, Q, K]; target_score = IoU on positives, 0 elsewhere."""
  p = jax.lax.stop_gradient(jax.nn.sigmoid(logits))
  weight = jnp.where(positive, target_score, alpha * p ** gamma)
  return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, target_score) * weight)


def gather_matched(pred_boxes, query_idx):
  """Predicted boxes [B, T, 4] of the queries matched to each target."""
  return jnp.take_along_axis(pred_boxes, query_idx[..., None], axis=1)


def per_image_terms(logits, pred_boxes, target_classes, target_boxes, valid, query_idx, *,
                    vfl_alpha: float = 0.75, vfl_gamma: float = 2.0) -> dict[str, jax.Array]:
  """Unnormalized varifocal, L1 and GIoU sums per image [B] under a given matching."""
  b, q, k = logits.shape
  matched = gather_matched(pred_boxes, query_idx)                        # [B, T, 4]
  vf = valid.astype(jnp.float32)
  l1 = jnp.sum(jnp.sum(jnp.abs(matched - target_boxes), -1) * vf, -1)
  g = box_ops.giou(box_ops.cxcywh_to_xyxy(matched), box_ops.cxcywh_to_xyxy(target_boxes))
  giou_loss = jnp.sum((1.0 - g) * vf, -1)
  overlap = jax.lax.stop_gradient(box_ops.iou(box_ops.cxcywh_to_xyxy(matched),
                                              box_ops.cxcywh_to_xyxy(target_boxes)))
  # Scatter (query, class) positives; padded targets go to an out-of-range query and are dropped.
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], query_idx.shape)
  qi = jnp.where(valid, query_idx, q)
  ci = jnp.clip(target_classes, 0, k - 1)
  score = jnp.zeros((b, q, k), jnp.float32).at[rows, qi, ci].set(overlap, mode="drop")
  positive = jnp.zeros((b, q, k), bool).at[rows, qi, ci].set(True, mode="drop")
  vfl = jax.vmap(lambda x, t, m: varifocal_loss(x, t, m, vfl_alpha, vfl_gamma))(
      logits, score, positive)
  return {"vfl": vfl, "l1": l1, "giou": giou_loss}


def set_losses(logits, pred_boxes, target_classes, target_boxes, valid, query_idx, num_boxes,
               **kwargs) -> dict[str, jax.Array]:
  """Varifocal, L1 and GIoU losses of one prediction set under a given matching.

  logits [B,Q,K]; pred_boxes, target_boxes normalized cxcywh; target_classes [B,T] head class
  indices; valid [B,T]; query_idx [B,T] from the matcher; num_boxes the global box count.
  """
  terms = per_image_terms(logits, pred_boxes, target_classes, target_boxes, valid, query_idx,
                          **kwargs)
  return {k: jnp.sum(v) / num_boxes for k, v in terms.items()}


def seg_loss(seg_logits, class_map, fg_weight: float = 1.0):
  """Weighted pixel cross-entropy; seg_logits [B,h,w,K+1] are resized to class_map [B,H,W]."""
  bsz, h, w = class_map.shape
  if seg_logits.shape[1:3] != (h, w):
    seg_logits = jax.image.resize(seg_logits, (bsz, h, w, seg_logits.shape[-1]), "bilinear")
  ce = optax.softmax_cross_entropy_with_integer_labels(seg_logits, class_map)
  weight = jnp.where(class_map > 0, fg_weight, 1.0)
  return jnp.sum(ce * weight) / jnp.sum(weight)


def detector_loss(outputs: Mapping[str, jax.Array], targets: Mapping[str, jax.Array], *,
                  weights: Mapping[str, float], matcher: str = "auction",
                  cost_weights: Mapping[str, float] | None = None,
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Total loss and its terms for the model outputs (see DetectorModel.__call__).

  outputs: logits [L,B,Q,K], boxes [L,B,Q,4] (per decoder layer), enc_logits [B,Q,K],
    enc_boxes [B,Q,4] (top-k proposals), seg_logits [B,h,w,K+1].
  targets: classes [B,T] (head indices, -1 pad), boxes [B,T,4] normalized cxcywh, class_map
    [B,H,W].
  weights: vfl, l1, giou, seg, fg (seg foreground weight). Terms of the last decoder layer are
  reported bare ("vfl"), of the others as "aux/vfl" (summed over layers).
  """
  cw = dict(cost_weights or {"class": 2.0, "l1": 5.0, "giou": 2.0})
  classes, tboxes = targets["classes"], targets["boxes"]
  valid = classes >= 0
  num_boxes = jnp.maximum(jnp.sum(valid.astype(jnp.float32)), 1.0)
  # Every decoder layer and the encoder proposals form one stacked batch of S = L + 1 sets, so
  # the matcher and the loss graph appear once (matching stays per set: each set is its own
  # images in the stacked batch).
  logits = jnp.concatenate([outputs["logits"], outputs["enc_logits"][None]], 0)
  pboxes = jnp.concatenate([outputs["boxes"], outputs["enc_boxes"][None]], 0)
  n_sets, b = logits.shape[:2]
  flat = lambda x: x.reshape((n_sets * b,) + x.shape[2:])
  tile = lambda x: jnp.tile(x, (n_sets,) + (1,) * (x.ndim - 1))
  logits, pboxes = flat(logits), flat(pboxes)
  s_classes, s_boxes, s_valid = tile(classes), tile(tboxes), tile(valid)
  cost = matcher_lib.cost_matrix(jax.lax.stop_gradient(logits), jax.lax.stop_gradient(pboxes),
                                 s_classes, s_boxes, w_class=cw["class"], w_l1=cw["l1"],
                                 w_giou=cw["giou"])
  idx = jax.lax.stop_gradient(matcher_lib.match(cost, s_valid, matcher))
  terms = per_image_terms(logits, pboxes, s_classes, s_boxes, s_valid, idx)
  per_set = {k: jnp.sum(v.reshape(n_sets, b), 1) / num_boxes for k, v in terms.items()}
  weighted = (weights["vfl"] * per_set["vfl"] + weights["l1"] * per_set["l1"]
              + weights["giou"] * per_set["giou"])
  total = jnp.sum(weighted)
  metrics = {k: v[n_sets - 2] for k, v in per_set.items()}          # last decoder layer
  metrics.update({f"aux/{k}": jnp.sum(v[:n_sets - 2]) for k, v in per_set.items()})
  metrics.update({f"enc/{k}": v[n_sets - 1] for k, v in per_set.items()})
  if weights.get("seg", 0.0) > 0 and "seg_logits" in outputs:
    seg = seg_loss(outputs["seg_logits"], targets["class_map"], weights.get("fg", 1.0))
    total = total + weights["seg"] * seg
    metrics["seg"] = seg
  metrics["loss"] = total
  return total, metrics
