"""Tiling large images (AITEX's 4096x256 strips) with overlap, keeping where each tile came from.

A detector trains and predicts at a fixed size, but line-scan strips are long. We cut each image
into tiles of `tile_hw` whose starts step by `tile - overlap`, with the last tile aligned to the
far edge (so every pixel is covered and no tile hangs over the border); an image smaller than a
tile gets one tile, zero-padded at the bottom/right. Each tile is a full record: its mask is the
crop, its instances are the ones visible in it (renumbered), and its boxes are the components of
the *cropped* mask (a defect cut by the tile edge gets the box of its visible part).

Positions `(y0, x0)` are kept, so predictions map back: `boxes_to_image` shifts boxes, and
`stitch` merges per-tile pixel maps (max or mean over the overlaps) into the full image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fabgen.data.readers import base
from fabgen.data.readers import records


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """Starts along one axis: stride `tile - overlap`, the last one flush with the far edge."""
  if tile <= 0 or not 0 <= overlap < tile:
    raise ValueError(f"need tile > 0 and 0 <= overlap < tile, got tile={tile} overlap={overlap}")
  if size <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, size - tile, stride))
  return starts + [size - tile]


def tile_grid(height: int, width: int, tile_hw: tuple[int, int], overlap: int | tuple[int, int]
              ) -> np.ndarray:
  """int32 [T, 2] tile origins (y0, x0), row-major."""
  oy, ox = (overlap, overlap) if isinstance(overlap, int) else overlap
  ys, xs = tile_starts(height, tile_hw[0], oy), tile_starts(width, tile_hw[1], ox)
  return np.asarray([(y, x) for y in ys for x in xs], np.int32).reshape(-1, 2)


def crop_sample(sample: dict, y0: int, x0: int, tile_hw: tuple[int, int]) -> dict:
  """The record of one tile (zero-padded if the image ends inside it); boxes recomputed."""
  th, tw = tile_hw
  image = np.asarray(sample["image"])
  mask = np.asarray(sample["instance_mask"])
  h, w = image.shape[:2]
  crop_img = np.zeros((th, tw, 3), np.uint8)
  crop_mask = np.zeros((th, tw), np.int32)
  ch, cw = min(th, h - y0), min(tw, w - x0)
  crop_img[:ch, :cw] = image[y0:y0 + ch, x0:x0 + cw]
  crop_mask[:ch, :cw] = mask[y0:y0 + ch, x0:x0 + cw]
  inst_class = np.asarray(sample["instance_class"])
  present = [int(k) for k in np.unique(crop_mask) if k > 0]
  lut = np.zeros(max([len(inst_class)] + present) + 1, np.int32)
  lut[present] = np.arange(1, len(present) + 1)
  out, _ = records.make_sample(crop_img, lut[crop_mask], [int(inst_class[k - 1]) for k in present],
                               fabric_id=int(np.asarray(sample.get("fabric_id", -1))))
  return out


def tile_sample(sample: dict, tile_hw: tuple[int, int], overlap: int = 0
                ) -> list[tuple[dict, tuple[int, int]]]:
  """Every tile of one record with its (y0, x0) position."""
  h, w = np.asarray(sample["image"]).shape[:2]
  return [(crop_sample(sample, int(y), int(x), tile_hw), (int(y), int(x)))
          for y, x in tile_grid(h, w, tile_hw, overlap)]


def boxes_to_image(boxes: np.ndarray, position: Sequence[int]) -> np.ndarray:
  """Tile-frame boxes (x0, y0, x1, y1) to full-image coordinates."""
  y0, x0 = position
  return np.asarray(boxes, np.float32) + np.asarray([x0, y0, x0, y0], np.float32)


def stitch(maps: np.ndarray, positions: np.ndarray, full_hw: tuple[int, int],
           reduce: str = "max") -> np.ndarray:
  """Per-tile maps [T, th, tw, ...] -> one full-image map [H, W, ...] (max or mean on overlaps)."""
  maps = np.asarray(maps)
  th, tw = maps.shape[1:3]
  h, w = full_hw
  out = np.full((h, w) + maps.shape[3:], -np.inf if reduce == "max" else 0.0, np.float64)
  count = np.zeros((h, w) + (1,) * (maps.ndim - 3))
  for tile, (y, x) in zip(maps, np.asarray(positions)):
    ch, cw = min(th, h - y), min(tw, w - x)
    region = (slice(y, y + ch), slice(x, x + cw))
    if reduce == "max":
      out[region] = np.maximum(out[region], tile[:ch, :cw])
    elif reduce == "mean":
      out[region] += tile[:ch, :cw]
      count[region] += 1
    else:
      raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
  if reduce == "mean":
    out = out / np.maximum(count, 1)
  return out.astype(maps.dtype)


class TiledSource(base.Source):
  """A source of tiles of another source's images; `position(i)` maps a tile back."""

  layout = "tiled"

  def __init__(self, parent: base.Source, tile_hw: tuple[int, int], overlap: int = 0):
    entries = []
    for i in range(len(parent)):
      h, w = parent.image_hw(i)
      entries += [(i, int(y), int(x)) for y, x in tile_grid(h, w, tile_hw, overlap)]
    super().__init__(f"{parent.name}/tiles{tile_hw[0]}x{tile_hw[1]}", entries,
                     parent.class_names, parent.skipped)
    self.parent, self.tile_hw, self.overlap = parent, tuple(tile_hw), overlap
    self._cache: tuple[int, dict] | None = None

  def position(self, index: int) -> tuple[int, int, int]:
    """(parent index, y0, x0) of tile `index`."""
    return self._entry(index)

  def _path(self, entry) -> str:
    return f"{self.parent.path_of(entry[0])}@y{entry[1]}x{entry[2]}"

  def _load(self, entry) -> dict:
    i, y, x = entry
    cache = self._cache  # tiles of one image come in a row; a local copy keeps threads safe
    if cache is None or cache[0] != i:
      cache = (i, self.parent[i])
      self._cache = cache
    return crop_sample(cache[1], y, x, self.tile_hw)

  def image_hw(self, index: int) -> tuple[int, int]:
    return self.tile_hw
