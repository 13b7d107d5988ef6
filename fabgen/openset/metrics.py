"""Scores of the open-set protocol: AUROC, macro-F1 with an "unknown" class, pixel F1 / AUROC."""

from __future__ import annotations

import numpy as np
import scipy.stats


def auroc(scores, positive) -> float:
  """Area under the ROC curve of `scores` for the boolean `positive` (Mann-Whitney, ties = 1/2).

  NaN when one side is empty (no unknown, or no known, samples).
  """
  scores = np.asarray(scores, np.float64).ravel()
  positive = np.asarray(positive, bool).ravel()
  n_pos, n_neg = int(positive.sum()), int((~positive).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  ranks = scipy.stats.rankdata(scores)
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1(pred, true) -> float:
  """Binary F1 of boolean arrays (1.0 when both are empty)."""
  pred, true = np.asarray(pred, bool), np.asarray(true, bool)
  tp = float(np.sum(pred & true))
  denom = float(np.sum(pred) + np.sum(true))
  return 1.0 if denom == 0 else 2.0 * tp / denom


def macro_f1(true, pred, labels) -> float:
  """Mean over `labels` of the one-vs-rest F1 (the open-set F1 when labels include unknown)."""
  true, pred = np.asarray(true), np.asarray(pred)
  return float(np.mean([f1(pred == c, true == c) for c in labels]))
