"""Defect-free backgrounds of the target fabric, validated once, served by index.

`--backgrounds` may be a plain folder of images (read in name order), any reader spec (`fabricsim:simple:target_good`, an MVTec or
AITEX layout), a FabricSim fabric id (`fabricsim:<preset>:fabric=<id>`), or, from Python, an
array of images. Synthesis needs one static image size per run (so one jit serves every batch):
the first image fixes it unless `image_size` is given, larger images are centre-cropped, and an
image that is smaller, or that cannot be read, is an error naming it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from fabgen.data.fabricsim import FabricSim
from fabgen.data.readers import open_source
from fabgen.synthesis.base import SynthesisError


class Backgrounds:
  """Indexable defect-free images of one size: `bg[i]` -> uint8 [H, W, 3]."""

  def __init__(self, get: Callable[[int], Any], length: int, describe: Callable[[int], str],
               spec: str, image_size: tuple[int, int] | None = None):
    if length <= 0:
      raise SynthesisError(f"backgrounds {spec!r} hold no images")
    self._get, self._len, self._describe, self.spec = get, length, describe, spec
    self.source = None  # the opened reader source, when there is one (for the skip report)
    self.size = image_size or self._raw(0).shape[:2]

  def __len__(self) -> int:
    return self._len

  def _raw(self, i: int) -> np.ndarray:
    try:
      item = self._get(i)
    except Exception as e:  # a broken file: name it, keep the reader's reason
      raise SynthesisError(f"cannot read background {self._describe(i)}: {e}") from e
    image = np.asarray(item["image"] if isinstance(item, dict) else item)
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise SynthesisError(f"background {self._describe(i)} must be uint8 [H, W, 3], got "
                           f"{image.dtype} {list(image.shape)}")
    return image

  def __getitem__(self, i: int) -> np.ndarray:
    image = self._raw(i)
    h, w = self.size
    if image.shape[0] < h or image.shape[1] < w:
      raise SynthesisError(f"background {self._describe(i)} is {image.shape[0]}x{image.shape[1]},"
                           f" smaller than the run's image size {h}x{w}")
    y0, x0 = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return np.ascontiguousarray(image[y0:y0 + h, x0:x0 + w])

  def check_fits(self, patch_size: int) -> None:
    """Every background must hold the method's window."""
    h, w = self.size
    if h < patch_size or w < patch_size:
      raise SynthesisError(f"backgrounds {self.spec!r} are {h}x{w}, smaller than the method's "
                           f"{patch_size}x{patch_size} patch")


def _fabric_id_source(spec: str):
  """`fabricsim:<preset>:fabric=<id>[:<n>]`: defect-free renders of one FabricSim fabric."""
  parts = spec.split(":")
  preset, fabric = parts[1], int(parts[2].split("=", 1)[1])
  count = int(parts[3]) if len(parts) > 3 else 64
  sim = FabricSim(preset)
  return (lambda i: sim.render(fabric, i, -1)), count


def open_backgrounds(spec: "str | np.ndarray | Sequence[np.ndarray]",
                     image_size: tuple[int, int] | None = None) -> Backgrounds:
  """Backgrounds from a reader spec / folder / FabricSim fabric id / in-memory images."""
  if not isinstance(spec, str):
    images = list(spec)
    return Backgrounds(lambda i: images[i], len(images), lambda i: f"#{i}", "<array>",
                       image_size)
  if spec.startswith("fabricsim:") and ":fabric=" in spec:
    get, count = _fabric_id_source(spec)
    return Backgrounds(get, count, lambda i: f"{spec}[{i}]", spec, image_size)
  try:
    src = open_source(spec)
  except Exception as e:
    raise SynthesisError(f"cannot open backgrounds {spec!r}: {e}") from e
  if getattr(src, "layout", None) == "plain" and src.skipped:
    # A folder of plain images is the user's own set: one that fails its header check is an
    # error naming it, not a silently smaller set of backgrounds.
    path, reason = src.skipped[0]
    more = f" (and {len(src.skipped) - 1} more)" if len(src.skipped) > 1 else ""
    raise SynthesisError(f"cannot read background {path}: {reason}{more}")

  def describe(i):
    path = getattr(src, "path_of", None)
    return f"{spec}[{i}]" + (f" ({path(i)})" if callable(path) else "")
  bgs = Backgrounds(lambda i: src[i], len(src), describe, spec, image_size)
  bgs.source = src
  return bgs
