"""Joining detections that are pieces of one defect (cut by tile or strip borders) into groups.

Tiled inference (`fabgen.detector.infer.merge_truncated`) and roll inspection
(`fabgen.inspection.web.merge_across_strips`) each decide which pairs of detections touch across
a border; this module turns those links into groups, transitively, so a stripe longer than a
tile or a strip comes back as one defect.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def link_groups(n: int, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
  """Group root of each of `n` items, given linked index pairs (union-find, path halving).

  Items i and j share a root exactly when a chain of pairs connects them; the root is one of the
  group's indices, so `np.unique(roots)` enumerates the groups.
  """
  parent = np.arange(n)

  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for i, j in pairs:
    parent[root(int(i))] = root(int(j))
  return np.array([root(i) for i in range(n)], np.int64)
