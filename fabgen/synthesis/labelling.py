"""Exact labels for a synthesized image: the mask IS the set of pixels the method changed.

The design rule is that labels come for free: whatever a generator, fusion
network or paste changed is the defect. We apply it literally, after generation, on the host:

  changed = max_c |out - background| > tau          (tau in uint8 levels: "beyond noise")

then keep the connected components (8-connectivity) of at least `min_area` pixels, the first
`max_boxes` in raster order (`fabgen.data.labels.component_boxes_np`, the labeller every data
source shares), and *revert every dropped pixel to the background*. So after this function, for
every pixel: it is in the mask iff it differs from the background by more than tau, and pixels
outside the mask differ by at most tau. Boxes are the minimal rectangles of the mask's connected
components (x1/y1 exclusive, as `fabgen.data.sample`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fabgen.data import labels as labels_lib
from fabgen.data import sample as sample_lib


class Labelled(NamedTuple):
  """One labelled synthetic sample (a single defect instance, id 1)."""
  image: np.ndarray          # uint8 [H, W, 3], with sub-threshold specks reverted
  instance_mask: np.ndarray  # int32 [H, W], 0 background, 1 the defect
  boxes: np.ndarray          # float32 [K, 4] (x0, y0, x1, y1), K <= max_boxes
  areas: np.ndarray          # int64 [K] pixel count of each component


def changed_pixels(image: np.ndarray, background: np.ndarray, tau: int) -> np.ndarray:
  """bool [H, W]: pixels whose largest channel difference exceeds `tau` uint8 levels."""
  diff = np.abs(image.astype(np.int16) - background.astype(np.int16)).max(axis=-1)
  return diff > tau


def label_change(image: np.ndarray, background: np.ndarray, tau: int = 6, min_area: int = 4,
                 max_boxes: int = sample_lib.MAX_BOXES) -> Labelled:
  """Exact instance mask and component boxes of what changed between background and image."""
  if image.shape != background.shape or image.dtype != np.uint8:
    raise ValueError(f"image {image.shape} {image.dtype} must be uint8 and match the background "
                     f"{background.shape}")
  changed = changed_pixels(image, background, tau)
  comps = labels_lib.component_boxes_np(changed.astype(np.int32), max_boxes, min_area)
  kept = comps.kept
  out = image.copy()
  out[~kept] = background[~kept]  # revert specks and surplus components: labels stay exact
  valid = comps.box_instance > 0
  return Labelled(image=out, instance_mask=kept.astype(np.int32),
                  boxes=np.asarray(comps.boxes[valid], np.float32).reshape(-1, 4),
                  areas=np.asarray(comps.areas[valid], np.int64))


def to_sample(labelled: Labelled, class_id: int, fabric_id: int = -1) -> dict[str, np.ndarray]:
  """The `fabgen.data.sample` record of a labelled synthetic image (padded to fixed shapes)."""
  k = len(labelled.boxes)
  boxes = np.zeros((sample_lib.MAX_BOXES, 4), np.float32)
  boxes[:k] = labelled.boxes
  box_class = np.full(sample_lib.MAX_BOXES, -1, np.int32)
  box_class[:k] = class_id
  box_instance = np.zeros(sample_lib.MAX_BOXES, np.int32)
  box_instance[:k] = 1
  instance_class = np.full(sample_lib.MAX_INSTANCES, -1, np.int32)
  if k:
    instance_class[0] = class_id
  return {"image": labelled.image, "instance_mask": labelled.instance_mask,
          "instance_class": instance_class, "boxes": boxes, "box_class": box_class,
          "box_instance": box_instance, "fabric_id": np.asarray(fabric_id, np.int32)}
