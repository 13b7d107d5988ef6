"""Build `fabgen.data.sample` records from an image, an instance mask and instance classes.

Every reader ends here, so the box rule and the fixed-shape padding are applied once:

  * boxes are the minimal rectangles (x0, y0, x1, y1; x1/y1 exclusive) of each 8-connected
    component of each instance, ordered by the component's first pixel in raster order: the
    contract of `fabgen.data.labels` (8-connectivity: a thin diagonal thread is one defect, as an
    annotator boxes it);
  * the record has fixed shapes (`MAX_INSTANCES`, `MAX_BOXES`). Real images can exceed them
    (AITEX strips with many masks, COCO images with many annotations). Rather than dropping
    pixels, surplus instances are *merged by class* (pixels, classes and component boxes are
    unchanged; only the split into instances is lost). If more than `MAX_BOXES` components remain,
    the largest are kept. Both are returned as notes, which the sources count and report.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from fabgen.data import sample as sample_lib

_STRUCTURE = np.ones((3, 3), bool)  # 8-connectivity


class LabelError(ValueError):
  """The labels of one image cannot be put in a record (the source names the file)."""


def instance_component_boxes(instance_mask: np.ndarray, num_instances: int
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Boxes [K, 4], 1-based instances [K] and areas [K] of every component of every instance.

  Ordered by each component's first pixel in raster order, the order of
  `fabgen.data.labels.component_boxes_np`, so real and synthetic records list boxes alike.
  """
  found = []  # (first raster index, instance, box, area)
  for k in range(1, num_instances + 1):
    comps, count = ndimage.label(instance_mask == k, structure=_STRUCTURE)
    if not count:
      continue
    labels, first, areas = np.unique(comps.ravel(), return_index=True, return_counts=True)
    for lab, sl in enumerate(ndimage.find_objects(comps), start=1):
      j = np.searchsorted(labels, lab)
      found.append((int(first[j]), k, (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop),
                    int(areas[j])))
  found.sort(key=lambda t: t[0])
  return (np.asarray([f[2] for f in found], np.float32).reshape(-1, 4),
          np.asarray([f[1] for f in found], np.int32),
          np.asarray([f[3] for f in found], np.int64))


def _merge_by_class(instance_mask: np.ndarray, classes: list[int]) -> tuple[np.ndarray, list[int]]:
  """Relabels instances so that all instances of one class become one instance."""
  order = list(dict.fromkeys(classes))  # distinct classes, first occurrence first
  lut = np.zeros(len(classes) + 1, np.int32)
  for k, c in enumerate(classes, start=1):
    lut[k] = order.index(c) + 1
  return lut[instance_mask], order


def make_sample(image: np.ndarray, instance_mask: np.ndarray, instance_classes: Sequence[int],
                fabric_id: int = -1, boxes: np.ndarray | None = None,
                box_instance: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
  """A padded sample dict and a list of notes (e.g. "merged_instances", "dropped_boxes").

  Args:
    image: uint8 [H, W, 3].
    instance_mask: int [H, W]; 0 background, k = instance k (1-based, k <= len(classes)).
    instance_classes: class id of instance k+1.
    fabric_id: fabric identity, -1 when unknown.
    boxes: optional given boxes (float [K, 4] xyxy) with `box_instance` (1-based), kept as they
      are and in their order (COCO files written by `fabgen.data.writer` carry exact boxes);
      computed from the mask's components otherwise.
  """
  notes = []
  mask = np.asarray(instance_mask, np.int32)
  classes = [int(c) for c in instance_classes]
  if mask.shape != image.shape[:2]:
    raise LabelError(f"mask {mask.shape} does not match image {image.shape[:2]}")
  if mask.max(initial=0) > len(classes):
    raise LabelError(f"mask has instance id {int(mask.max())} but only {len(classes)} classes")
  if len(classes) > sample_lib.MAX_INSTANCES:
    if len(set(classes)) > sample_lib.MAX_INSTANCES:
      raise LabelError(f"{len(set(classes))} distinct classes in one image; a record holds at "
                       f"most {sample_lib.MAX_INSTANCES}")
    old_classes = classes
    mask, classes = _merge_by_class(mask, classes)
    notes.append("merged_instances")
    if boxes is not None:
      box_instance = np.asarray([classes.index(old_classes[k - 1]) + 1 for k in box_instance])
  if boxes is None:
    boxes, box_instance, areas = instance_component_boxes(mask, len(classes))
  else:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    box_instance = np.asarray(box_instance, np.int32).reshape(-1)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  if len(boxes) > sample_lib.MAX_BOXES:
    keep = np.sort(np.argsort(-areas, kind="stable")[:sample_lib.MAX_BOXES])
    boxes, box_instance = boxes[keep], box_instance[keep]
    notes.append("dropped_boxes")
  out = {
      "image": np.ascontiguousarray(image, np.uint8),
      "instance_mask": mask,
      "instance_class": np.full(sample_lib.MAX_INSTANCES, -1, np.int32),
      "boxes": np.zeros((sample_lib.MAX_BOXES, 4), np.float32),
      "box_class": np.full(sample_lib.MAX_BOXES, -1, np.int32),
      "box_instance": np.zeros(sample_lib.MAX_BOXES, np.int32),
      "fabric_id": np.asarray(fabric_id, np.int32),
  }
  out["instance_class"][:len(classes)] = classes
  n = len(boxes)
  out["boxes"][:n] = boxes
  out["box_instance"][:n] = box_instance
  out["box_class"][:n] = np.asarray(classes, np.int32)[box_instance - 1] if n else []
  return out, notes


def num_instances(sample: dict) -> int:
  """How many instances a record holds (non-padding entries of instance_class)."""
  return int((np.asarray(sample["instance_class"]) >= 0).sum())


def valid_boxes(sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(boxes [K, 4], box_class [K], box_instance [K]) without the padding."""
  keep = np.asarray(sample["box_instance"]) > 0
  return (np.asarray(sample["boxes"])[keep], np.asarray(sample["box_class"])[keep],
          np.asarray(sample["box_instance"])[keep])
