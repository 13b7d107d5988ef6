"""Tiling with overlap: full coverage, exact crops and boxes, and predictions mapped back."""

import numpy as np
import pytest

from fabgen.data import tiling
from fabgen.data.readers import records


def _strip(h=16, w=100):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  mask = np.zeros((h, w), np.int32)
  mask[3:6, 20:45] = 1   # crosses tile borders
  mask[10:12, 90:98] = 2  # only in the last tile
  s, _ = records.make_sample(image, mask, [3, 5], fabric_id=4)
  return s


def test_tile_starts_cover_everything_and_stay_inside():
  for size, tile, overlap in [(100, 32, 8), (4096, 256, 32), (32, 32, 0), (20, 32, 4)]:
    starts = tiling.tile_starts(size, tile, overlap)
    covered = np.zeros(max(size, tile), bool)
    for s in starts:
      covered[s:s + tile] = True
      assert s >= 0 and (s + tile <= size or size <= tile)
    assert covered[:size].all()
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
  assert len(tiling.tile_starts(4096, 256, 32)) == 19
  with pytest.raises(ValueError, match="overlap"):
    tiling.tile_starts(10, 4, 4)


def test_tiles_are_exact_crops_with_recomputed_boxes():
  s = _strip()
  tiles = tiling.tile_sample(s, (16, 32), overlap=8)
  assert [p for _, p in tiles] == [(0, 0), (0, 24), (0, 48), (0, 68)]
  for t, (y, x) in tiles:
    np.testing.assert_array_equal(t["image"], s["image"][y:y + 16, x:x + 32])
    full = s["instance_mask"][y:y + 16, x:x + 32]
    np.testing.assert_array_equal(t["instance_mask"] > 0, full > 0)
    assert t["fabric_id"] == 4
    # Classes follow the pixels; boxes are the visible parts, mapped back inside the original.
    for k, c in enumerate(t["instance_class"], start=1):
      if c >= 0:
        orig = np.unique(full[t["instance_mask"] == k])
        assert len(orig) == 1 and s["instance_class"][orig[0] - 1] == c
    boxes, _, _ = records.valid_boxes(t)
    for b in tiling.boxes_to_image(boxes, (y, x)):
      x0, y0, x1, y1 = b.astype(int)
      assert (s["instance_mask"][y0:y1, x0:x1] > 0).any()
  first = tiles[0][0]
  np.testing.assert_array_equal(records.valid_boxes(first)[0], [[20, 3, 32, 6]])
  last = tiles[-1][0]
  assert list(last["instance_class"][:2]) == [5, -1]


def test_small_image_is_padded_to_one_tile():
  s = _strip(h=10, w=20)
  (t, pos), = tiling.tile_sample(s, (16, 32))
  assert pos == (0, 0) and t["image"].shape == (16, 32, 3)
  assert (t["image"][10:] == 0).all() and (t["instance_mask"][:, 20:] == 0).all()


def test_stitch_restores_a_full_map():
  rng = np.random.default_rng(1)
  full = rng.random((16, 100)).astype(np.float32)
  pos = tiling.tile_grid(16, 100, (16, 32), 8)
  maps = np.stack([full[y:y + 16, x:x + 32] for y, x in pos])
  for reduce in ("max", "mean"):
    np.testing.assert_allclose(tiling.stitch(maps, pos, (16, 100), reduce), full, rtol=1e-6)
  # Tiles that disagree on their overlaps (tile k predicts k everywhere): max keeps the larger
  # tile's value, mean averages them, and the two differ exactly on the overlaps.
  const = np.stack([np.full((16, 32), k, np.float32) for k in range(len(pos))])
  got_max = tiling.stitch(const, pos, (16, 100), "max")
  got_mean = tiling.stitch(const, pos, (16, 100), "mean")
  starts = [x for _, x in pos]  # [0, 24, 48, 68]
  want_max, want_mean = np.zeros(100), np.zeros(100)
  for col in range(100):
    covering = [k for k, x in enumerate(starts) if x <= col < x + 32]
    want_max[col], want_mean[col] = max(covering), np.mean(covering)
  np.testing.assert_allclose(got_max, np.broadcast_to(want_max, (16, 100)))
  np.testing.assert_allclose(got_mean, np.broadcast_to(want_mean, (16, 100)))
  assert (got_max != got_mean).any(axis=0).sum() == 8 + 8 + 12  # the three overlaps


def test_tiled_source_keeps_positions():
  from fabgen.data.readers import base

  class Mem(base.Source):
    def _load(self, entry):
      return entry

    def _path(self, entry):
      return "mem"

    def image_hw(self, index):
      return self.entries[index]["image"].shape[:2]

  parent = Mem("mem", [_strip(), _strip(w=40)], ("a",) * 6)
  src = tiling.TiledSource(parent, (16, 32), overlap=8)
  assert len(src) == 4 + 2
  assert src.position(4) == (1, 0, 0) and src.position(5) == (1, 0, 8)
  np.testing.assert_array_equal(src[5]["image"], parent[1]["image"][:, 8:40])
