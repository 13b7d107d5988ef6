"""Box ops, matching costs and both matchers against hand-computed cases and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from fabgen.detector import boxes as box_ops
from fabgen.detector import matcher


def test_giou_hand_computed():
  a = jnp.array([[0., 0., 2., 2.], [0., 0., 1., 1.], [0., 0., 1., 1.]])
  b = jnp.array([[1., 1., 3., 3.], [2., 0., 3., 1.], [0., 0., 1., 1.]])
  # overlap 1, union 7, hull 9 | disjoint: union 2, hull 3 | identical.
  np.testing.assert_allclose(box_ops.iou(a, b), [1 / 7, 0, 1], atol=1e-6)
  np.testing.assert_allclose(box_ops.giou(a, b), [1 / 7 - 2 / 9, -1 / 3, 1], atol=1e-6)
  np.testing.assert_allclose(box_ops.pairwise_giou(a, b)[0, 1], box_ops.giou(a[0], b[1]),
                             atol=1e-6)


def test_box_conversions_round_trip():
  xyxy = jnp.array([[2., 4., 10., 8.]])
  cxcywh = box_ops.xyxy_to_cxcywh(xyxy)
  np.testing.assert_allclose(cxcywh, [[6., 6., 8., 4.]])
  np.testing.assert_allclose(box_ops.cxcywh_to_xyxy(cxcywh), xyxy)
  np.testing.assert_allclose(box_ops.normalize_xyxy(xyxy, 16, 20), [[0.1, 0.25, 0.5, 0.5]])


def test_cost_matrix_hand_computed():
  logits = jnp.array([[[0.0, 2.0]]])                  # one query, two classes
  pred = jnp.array([[[0.5, 0.5, 0.2, 0.2]]])
  tgt = jnp.array([[[0.5, 0.6, 0.2, 0.2]]])
  cost = matcher.cost_matrix(logits, pred, jnp.array([[1]]), tgt, w_class=2.0, w_l1=5.0,
                             w_giou=2.0)
  p = 1 / (1 + np.exp(-2.0))
  c_cls = 0.25 * (1 - p) ** 2 * -np.log(p) - 0.75 * p ** 2 * -np.log(1 - p)
  inter = 0.2 * 0.1
  iou = inter / (0.04 + 0.04 - inter)
  hull = 0.2 * 0.3
  giou = iou - (hull - (0.08 - inter)) / hull
  np.testing.assert_allclose(cost[0, 0, 0], 2 * c_cls + 5 * 0.1 + 2 * -giou, rtol=1e-4)


@pytest.mark.parametrize("method", matcher.METHODS)
def test_matchers_hand_case(method):
  # 3 queries x 2 targets (+1 padded): optimum is t0 -> q2 (0.5), t1 -> q1 (1.0).
  cost = jnp.array([[[1., 2., 0.], [2., 1., 0.], [0.5, 3., 0.]]])
  valid = jnp.array([[True, True, False]])
  idx = jax.jit(lambda c, v: matcher.match(c, v, method))(cost, valid)
  np.testing.assert_array_equal(idx[0, :2], [2, 1])


@pytest.mark.parametrize("method", matcher.METHODS)
def test_matchers_agree_with_scipy(method):
  rng = np.random.default_rng(0)
  batch, queries, targets = 4, 12, 5
  cost = rng.integers(0, 20, (batch, queries, targets)).astype(np.float32)
  valid = np.ones((batch, targets), bool)
  valid[1, 3:] = False
  valid[2, :] = False
  idx = np.asarray(jax.jit(lambda c, v: matcher.match(c, v, method))(cost, valid))
  for b in range(batch):
    cols = np.nonzero(valid[b])[0]
    if not len(cols):
      continue
    rows, picked = optimize.linear_sum_assignment(cost[b][:, cols])
    best = cost[b][rows, cols[picked]].sum()
    got = idx[b, cols]
    assert len(set(got.tolist())) == len(cols), "a query was matched twice"
    # Integer costs: the auction with eps_min < 1/T is exactly optimal.
    np.testing.assert_allclose(cost[b][got, cols].sum(), best)


def test_auction_near_optimal_on_float_costs():
  rng = np.random.default_rng(1)
  cost = rng.normal(size=(3, 30, 8)).astype(np.float32) * 3
  valid = np.ones((3, 8), bool)
  idx = np.asarray(jax.jit(matcher.match_auction)(cost, valid))
  for b in range(3):
    rows, cols = optimize.linear_sum_assignment(cost[b])
    best = cost[b][rows, cols].sum()
    got = cost[b][idx[b], np.arange(8)].sum()
    assert len(set(idx[b].tolist())) == 8
    assert best - 1e-4 <= got <= best + 8 * 1e-3 + 1e-4


def test_unknown_matcher_is_an_error():
  with pytest.raises(ValueError, match="unknown matcher 'greedy'"):
    matcher.match(jnp.zeros((1, 2, 1)), jnp.ones((1, 1), bool), "greedy")
