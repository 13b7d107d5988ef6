"""Pieces of one defect are joined transitively, across tile borders and across strips."""

import numpy as np

from fabgen.detector import grouping
from fabgen.detector import infer
from fabgen.inspection import web


def test_link_groups_joins_chains_and_keeps_singletons():
  roots = grouping.link_groups(6, [(0, 1), (2, 1), (4, 5)])
  assert roots[0] == roots[1] == roots[2] and roots[4] == roots[5]
  assert len({roots[0], roots[3], roots[4]}) == 3
  assert set(roots) <= set(range(6))


def test_a_stripe_cut_by_two_tile_borders_comes_back_whole():
  # three overlapping pieces of one class-3 stripe (tiles overlap) and a separate class-0 spot
  boxes = np.array([[10, 0, 14, 66], [10, 62, 14, 130], [10, 126, 14, 150], [40, 40, 50, 50]])
  scores, labels = np.array([0.9, 0.5, 0.8, 0.7]), np.array([3, 3, 3, 0])
  truncated = np.array([True, True, True, False])
  b, s, l = infer.merge_truncated(boxes, scores, labels, truncated)
  order = np.argsort(l)
  np.testing.assert_array_equal(b[order], [[40, 40, 50, 50], [10, 0, 14, 150]])
  np.testing.assert_array_equal(s[order], [0.7, 0.9])
  # below min_score a piece cannot link: the middle one breaks the chain
  b, _, _ = infer.merge_truncated(boxes, np.array([0.9, 0.1, 0.8, 0.7]), labels, truncated)
  assert len(b) == 4


def test_pieces_join_only_across_adjacent_strips():
  dets = {"boxes": np.array([[5, 200, 9, 255], [6, 0, 10, 30], [100, 0, 110, 20]], np.float64),
          "scores": np.array([0.6, 0.9, 0.5]), "labels": np.array([3, 3, 3]),
          "strip": np.array([0, 1, 2]), "edge_top": np.array([False, True, True]),
          "edge_bottom": np.array([True, False, False])}
  merged = web.merge_across_strips(dets)
  assert merged["strips"] == [[0, 1], [2]]
  np.testing.assert_array_equal(merged["boxes"][0], [5, 0, 10, 255])  # strip-local rows
  assert merged["scores"][0] == 0.9
