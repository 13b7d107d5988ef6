"""Bipartite (Hungarian) matching of predicted queries to ground-truth boxes, as in DETR.

The cost of assigning query q to target t is
  C[q, t] = w_class * focal_cost(p[q, c_t]) + w_l1 * |b_q - b_t|_1 + w_giou * (-GIoU(b_q, b_t)),
with boxes as normalized cxcywh (L1) and xyxy (GIoU). Padded targets (box_class = -1) take part
in no assignment.

Two solvers, selected by `method` (the config's `loss.matcher`):
  "scipy"    exact: `scipy.optimize.linear_sum_assignment` on the host through
             `jax.pure_callback`. Costs a device->host->device round trip per step and
             serializes the batch on one host thread.
  "auction"  JAX-native: Bertsekas' forward auction (targets bid for queries; Jacobi rounds as
             scatter-max), all inside the jitted step so it runs on the accelerator and shards
             with the batch. Its total cost is within `num_targets * eps` of the optimum (exact
             for the integer-valued costs in the tests since eps < 1 / num_targets). No epsilon
             scaling: with fewer targets than queries, a forward auction is only optimal when
             it starts from equal prices, which scaling's later phases do not have (a test
             caught exactly that).
benchmarks/bench_detector.py measures both inside a real train step; the config default is the
one that measured cheaper (see configs/detector.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from fabgen.detector import boxes as box_ops

METHODS = ("scipy", "auction")


def focal_class_cost(logits, target_classes, alpha: float = 0.25, gamma: float = 2.0):
  """Focal-style classification cost [B, Q, T] of each query's logit for each target's class."""
  p = jax.nn.sigmoid(logits)
  neg = (1 - alpha) * p ** gamma * -jnp.log(1 - p + 1e-8)
  pos = alpha * (1 - p) ** gamma * -jnp.log(p + 1e-8)
  cost = pos - neg                                           # [B, Q, K]
  idx = jnp.clip(target_classes, 0)[:, None, :]              # [B, 1, T]
  return jnp.take_along_axis(cost, jnp.broadcast_to(idx, cost.shape[:2] + idx.shape[-1:]), -1)


def cost_matrix(logits, pred_boxes, target_classes, target_boxes, *, w_class: float,
                w_l1: float, w_giou: float):
  """Matching cost [B, Q, T]; logits [B,Q,K], boxes normalized cxcywh [B,Q,4] / [B,T,4]."""
  c_cls = focal_class_cost(logits, target_classes)
  c_l1 = jnp.sum(jnp.abs(pred_boxes[:, :, None, :] - target_boxes[:, None, :, :]), -1)
  c_giou = -box_ops.pairwise_giou(box_ops.cxcywh_to_xyxy(pred_boxes),
                                  box_ops.cxcywh_to_xyxy(target_boxes))
  return w_class * c_cls + w_l1 * c_l1 + w_giou * c_giou


# ---- exact host solver ---------------------------------------------------------------------

def _scipy_batch(cost, valid):
  cost, valid = np.asarray(cost), np.asarray(valid)
  out = np.zeros(valid.shape, np.int32)
  for b in range(cost.shape[0]):
    cols = np.nonzero(valid[b])[0]
    if len(cols) == 0:
      continue
    rows, picked = optimize.linear_sum_assignment(cost[b][:, cols])
    out[b, cols[picked]] = rows
  return out


def match_scipy(cost, valid):
  """Exact assignment on the host: query index per target [B, T] (0 for padded targets)."""
  shape = jax.ShapeDtypeStruct(valid.shape, jnp.int32)
  return jax.pure_callback(_scipy_batch, shape, cost.astype(jnp.float32), valid,
                           vmap_method="expand_dims")


# ---- JAX-native auction --------------------------------------------------------------------

def _auction_one(benefit, valid, eps_schedule, max_rounds: int):
  """Auction for one image: benefit [T, Q] (to maximize), valid [T] -> query per target [T]."""
  num_t, num_q = benefit.shape
  t_idx = jnp.arange(num_t)

  def phase(prices, eps):
    def cond(carry):
      _, assigned, _, rounds = carry
      return jnp.any(valid & (assigned < 0)) & (rounds < max_rounds)

    def body(carry):
      prices, assigned, owner, rounds = carry
      bidding = valid & (assigned < 0)
      values = benefit - prices[None, :]                    # [T, Q]
      top2, arg2 = jax.lax.top_k(values, 2)
      j1 = arg2[:, 0]
      bid = prices[j1] + top2[:, 0] - top2[:, 1] + eps
      bid = jnp.where(bidding, bid, -jnp.inf)
      best = jnp.full((num_q,), -jnp.inf).at[j1].max(bid)
      is_best = bidding & (bid >= best[j1])
      winner = jnp.full((num_q,), num_t, jnp.int32).at[j1].min(
          jnp.where(is_best, t_idx, num_t).astype(jnp.int32))
      won = winner < num_t                                    # objects sold this round
      # Previous owners of re-sold objects lose them; winners take them.
      lost = jnp.zeros((num_t + 1,), bool).at[jnp.where(won, owner, num_t)].set(True)[:num_t]
      assigned = jnp.where(lost, -1, assigned)
      got = jnp.full((num_t + 1,), -1, jnp.int32).at[
          jnp.where(won, winner, num_t)].set(jnp.arange(num_q, dtype=jnp.int32))[:num_t]
      assigned = jnp.where(got >= 0, got, assigned)
      owner = jnp.where(won, winner, owner)
      prices = jnp.where(won, best, prices)
      return prices, assigned, owner, rounds + 1

    init = (prices, jnp.full((num_t,), -1, jnp.int32), jnp.full((num_q,), -1, jnp.int32),
            jnp.zeros((), jnp.int32))
    prices, assigned, _, _ = jax.lax.while_loop(cond, body, init)
    return prices, assigned

  prices = jnp.zeros((num_q,), benefit.dtype)
  assigned = jnp.zeros((num_t,), jnp.int32)
  for eps in eps_schedule:
    prices, assigned = phase(prices, eps)
  return jnp.where(valid, jnp.maximum(assigned, 0), 0)


def match_auction(cost, valid, eps: float = 1e-3, max_rounds: int = 20_000):
  """Near-exact assignment in JAX: query index per target [B, T] (0 for padded targets)."""
  cost = cost.astype(jnp.float32)
  num_t = cost.shape[-1]
  if cost.shape[1] < 2:
    raise ValueError(f"auction matching needs at least 2 queries, got {cost.shape[1]}")
  if cost.shape[1] < num_t:
    raise ValueError(f"more targets ({num_t}) than queries ({cost.shape[1]}): raise num_queries")
  benefit = -jnp.swapaxes(cost, 1, 2)                          # [B, T, Q]
  return jax.vmap(lambda b, v: _auction_one(b, v, [eps], max_rounds))(benefit, valid)


def match(cost, valid, method: str = "scipy"):
  """Query index per target [B, T] for cost [B, Q, T] and valid targets [B, T]."""
  if method == "scipy":
    return match_scipy(cost, valid)
  if method == "auction":
    return match_auction(cost, valid)
  raise ValueError(f"unknown matcher {method!r}; known: {', '.join(METHODS)}")
