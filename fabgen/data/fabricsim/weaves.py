"""Weave structures as warp-up tables: which yarn lies on top at each warp/weft crossing.

A weave is a binary repeat `up[j, i]` (weft pick j, warp end i): 1 means the warp is over the
weft there. All repeats are stored zero-padded in one [NUM_WEAVES, 8, 8] table with their
periods, so that a traced weave id selects one inside jit (`up[id, j % ph, i % pw]`).
"""

from __future__ import annotations

import numpy as np

REPEAT = 8  # largest period of any weave below


def _build(period_w: int, period_h: int, rule) -> np.ndarray:
  j, i = np.mgrid[:period_h, :period_w]
  return rule(i, j).astype(np.int32)


# name -> (warp period, weft period, rule(i, j) -> warp up)
_WEAVES = {
    "plain": (2, 2, lambda i, j: (i + j) % 2 == 0),
    "twill_2_1_z": (3, 3, lambda i, j: (i - j) % 3 < 2),
    "twill_2_1_s": (3, 3, lambda i, j: (i + j) % 3 < 2),
    "twill_1_2_z": (3, 3, lambda i, j: (i - j) % 3 < 1),
    "twill_3_1_z": (4, 4, lambda i, j: (i - j) % 4 < 3),
    "twill_3_1_s": (4, 4, lambda i, j: (i + j) % 4 < 3),
    "twill_2_2_z": (4, 4, lambda i, j: (i - j) % 4 < 2),
    "twill_2_2_s": (4, 4, lambda i, j: (i + j) % 4 < 2),
    "satin_5_warp": (5, 5, lambda i, j: (i - 2 * j) % 5 != 0),
    "satin_5_weft": (5, 5, lambda i, j: (i - 2 * j) % 5 == 0),
    "satin_8_warp": (8, 8, lambda i, j: (i - 3 * j) % 8 != 0),
    "satin_8_weft": (8, 8, lambda i, j: (i - 3 * j) % 8 == 0),
    "basket_2_2": (4, 4, lambda i, j: (i // 2 + j // 2) % 2 == 0),
    "warp_rib": (2, 4, lambda i, j: (i + j // 2) % 2 == 0),
    "weft_rib": (4, 2, lambda i, j: (i // 2 + j) % 2 == 0),
    "herringbone": (8, 4, lambda i, j: np.where(i % 8 < 4, (i - j) % 4 < 2, (i + j + 1) % 4 < 2)),
}

NAMES: tuple[str, ...] = tuple(_WEAVES)
NUM_WEAVES = len(NAMES)


def weave_id(name: str) -> int:
  """Index of a weave in the table, with an error listing the known names."""
  try:
    return NAMES.index(name)
  except ValueError:
    raise ValueError(f"unknown weave {name!r}; known: {', '.join(NAMES)}") from None


def weave_table() -> tuple[np.ndarray, np.ndarray]:
  """(up int32 [NUM_WEAVES, 8, 8], periods int32 [NUM_WEAVES, 2] as (warp, weft))."""
  table = np.zeros((NUM_WEAVES, REPEAT, REPEAT), np.int32)
  periods = np.zeros((NUM_WEAVES, 2), np.int32)
  for k, name in enumerate(NAMES):
    pw, ph, rule = _WEAVES[name]
    table[k, :ph, :pw] = _build(pw, ph, rule)
    periods[k] = (pw, ph)
  return table, periods
