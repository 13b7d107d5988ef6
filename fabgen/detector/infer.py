"""Inference on images of any size: tile with overlap, predict in fixed batches, merge back.

Line-scan fabric images are long strips (4096x256 and larger) while the detector trains on
256x256 crops. We cut the image into overlapping tiles of the training size at the positions
of `fabgen.data.tiling.tile_grid` (the same grid the training data is tiled with), run the
detector on fixed-size batches of tiles (one compiled shape, however long the strip), and merge:

* segmentation maps: a weighted average of the overlapping tiles' probabilities (rather than
  `tiling.stitch`'s plain mean or max); the weight
  falls linearly from the tile centre to `edge_weight` at its border, because a convolutional
  net sees least context at a tile edge (a tile border that is also the image border keeps full
  weight, nothing else covers it);
* boxes: shifted to image coordinates; pieces of one defect cut by tile borders are joined
  (`merge_truncated`); then class-aware non-maximum suppression that removes a
  box when it has IoU >= `nms_iou` with, or lies >= `nms_contain` inside, a higher-scoring box of
  its class. Containment matters here: a defect cut by a tile edge yields a partial box in one
  tile and the whole box in the next; the partial one has low IoU with the whole one but lies
  inside it.

NMS runs on the host in numpy: after the score floor a strip has tens of boxes, and the host
keeps the device program shape-static.

`predict_fn` is anything with the detector's predict signature, uint8 [B, H, W, 3] -> dict with
boxes [B, Q, 4] (xyxy pixels), scores [B, Q], labels [B, Q] and optionally seg_probs
[B, H, W, K + 1]: the training code's `task.predict` bound to a state, or an exported artifact
(`fabgen.detector.export`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from fabgen.data import tiling
from fabgen.detector import export
from fabgen.detector import metrics
from fabgen.detector import thresholds as thresholds_lib

PredictFn = Callable[[np.ndarray], Mapping[str, Any]]


def edge_weights(tile_h: int, tile_w: int, at_top: bool, at_bottom: bool, at_left: bool,
                 at_right: bool, edge_weight: float = 0.1) -> np.ndarray:
  """Per-pixel merge weight [tile_h, tile_w]: 1 at the centre, `edge_weight` at inner borders."""
  def ramp(n, lo_edge, hi_edge):
    pos = (np.arange(n) + 0.5) / n
    w = 1 - (1 - edge_weight) * np.abs(2 * pos - 1)
    if lo_edge:
      w[: n // 2] = 1.0
    if hi_edge:
      w[n // 2:] = 1.0
    return w
  return np.outer(ramp(tile_h, at_top, at_bottom), ramp(tile_w, at_left, at_right))


def nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float = 0.5,
        contain: float = 0.7) -> np.ndarray:
  """Indices kept by class-aware NMS with IoU and containment suppression, by score."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  order = np.argsort(-np.asarray(scores), kind="stable")
  ious = metrics.box_iou(boxes, boxes)
  inter = metrics.intersection(boxes, boxes)
  area = metrics.box_area(boxes)
  inside = np.where(area[:, None] > 0, inter / np.maximum(area[:, None], 1e-12), 0.0)
  labels = np.asarray(labels)
  keep: list[int] = []
  suppressed = np.zeros(len(boxes), bool)
  for i in order:
    if suppressed[i]:
      continue
    keep.append(int(i))
    same = labels == labels[i]
    suppressed |= same & ((ious[i] >= iou) | (inside[:, i] >= contain))
  return np.asarray(keep, np.int64)


def merge_truncated(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    truncated: np.ndarray, min_score: float = 0.3) -> tuple[np.ndarray, ...]:
  """Joins the pieces of defects that were cut by tile borders.

  Boxes of one class that intersect, where at least one of them touches an inner tile border
  (`truncated`), belong to one defect seen through two tiles: they are replaced by their union
  with the higher score. Connected groups are joined transitively, so a white stripe longer than
  a tile comes back whole. Only boxes scoring >= `min_score` take part, so that low-confidence
  queries cannot chain distinct defects together.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  n = len(boxes)
  active = (np.asarray(scores) >= min_score)
  link = (metrics.intersection(boxes, boxes) > 0) & (labels[:, None] == labels[None, :])
  link &= truncated[:, None] | truncated[None, :]
  link &= active[:, None] & active[None, :]
  parent = np.arange(n)

  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for i, j in zip(*np.nonzero(np.triu(link, 1))):
    parent[root(i)] = root(j)
  roots = np.array([root(i) for i in range(n)], np.int64)
  out_b, out_s, out_l = [], [], []
  for r in np.unique(roots):
    members = roots == r
    b = boxes[members]
    out_b.append([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
    out_s.append(np.asarray(scores)[members].max())
    out_l.append(labels[r])
  return (np.asarray(out_b, np.float64).reshape(-1, 4), np.asarray(out_s, np.float64),
          np.asarray(out_l, np.int64))


def pad_to_multiple(image: np.ndarray, multiple: int, min_h: int, min_w: int) -> np.ndarray:
  """Edge-pads an [H, W, 3] image to sides >= (min_h, min_w) that are multiples of `multiple`."""
  h, w = image.shape[:2]
  th = max(min_h, -(-h // multiple) * multiple)
  tw = max(min_w, -(-w // multiple) * multiple)
  if (th, tw) == (h, w):
    return image
  return np.pad(image, ((0, th - h), (0, tw - w), (0, 0)), mode="edge")


def tiled_predict(predict_fn: PredictFn, image: np.ndarray, tile: tuple[int, int] = (256, 256),
                  overlap: int = 64, batch_size: int = 8, score_floor: float = 0.05,
                  nms_iou: float = 0.5, nms_contain: float = 0.7, edge_weight: float = 0.1,
                  multiple: int = 32, merge_score: float = 0.3,
                  edge_tol: float = 2.0) -> dict[str, np.ndarray]:
  """Detections and segmentation of one image of any size (uint8 [H, W, 3]).

  Returns boxes [N, 4], scores [N], labels [N] (after the score floor and NMS, highest score
  first) and, when the detector has a segmentation head, seg_probs [H, W, K + 1].
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f"tiled_predict wants one uint8 [H, W, 3] image, got {image.dtype} "
                     f"{image.shape}")
  h, w = image.shape[:2]
  th, tw = tile
  if th % multiple or tw % multiple:
    raise ValueError(f"tile {tile} must be a multiple of {multiple} on both sides")
  padded = pad_to_multiple(image, multiple, th, tw)
  ph, pw = padded.shape[:2]
  origins = [(int(y), int(x)) for y, x in tiling.tile_grid(ph, pw, (th, tw), overlap)]
  seg_sum, weight_sum = None, np.zeros((ph, pw), np.float64)
  all_boxes, all_scores, all_labels, all_truncated = [], [], [], []
  batch_size = min(batch_size, len(origins))
  for start in range(0, len(origins), batch_size):
    chunk = origins[start:start + batch_size]
    tiles = np.stack([padded[y:y + th, x:x + tw] for y, x in chunk])
    if len(chunk) < batch_size:  # one compiled shape: repeat the last tile
      tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch_size - len(chunk), 0)])
    out = {k: np.asarray(v) for k, v in predict_fn(tiles).items()}
    for i, (y, x) in enumerate(chunk):
      keep = out["scores"][i] >= score_floor
      b = np.asarray(out["boxes"][i][keep], np.float64)
      all_truncated.append(((b[:, 0] <= edge_tol) & (x > 0)) | ((b[:, 1] <= edge_tol) & (y > 0))
                           | ((b[:, 2] >= tw - edge_tol) & (x + tw < pw))
                           | ((b[:, 3] >= th - edge_tol) & (y + th < ph)))
      all_boxes.append(b + np.array([x, y, x, y], np.float64))
      all_scores.append(out["scores"][i][keep])
      all_labels.append(out["labels"][i][keep])
      if "seg_probs" in out:
        wt = edge_weights(th, tw, y == 0, y + th == ph, x == 0, x + tw == pw, edge_weight)
        if seg_sum is None:
          seg_sum = np.zeros((ph, pw, out["seg_probs"].shape[-1]), np.float64)
        seg_sum[y:y + th, x:x + tw] += out["seg_probs"][i] * wt[..., None]
        weight_sum[y:y + th, x:x + tw] += wt
  boxes, scores, labels = merge_truncated(
      np.concatenate(all_boxes), np.concatenate(all_scores),
      np.concatenate(all_labels).astype(np.int64), np.concatenate(all_truncated), merge_score)
  result = postprocess(boxes, scores, labels, h, w, 0.0, nms_iou, nms_contain)
  if seg_sum is not None:
    result["seg_probs"] = (seg_sum / weight_sum[..., None])[:h, :w].astype(np.float32)
  return result


def postprocess(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, height: int,
                width: int, score_floor: float = 0.05, nms_iou: float = 0.5,
                nms_contain: float = 0.7) -> dict[str, np.ndarray]:
  """Score floor, clip to the image, NMS: one image's raw queries -> its detections."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
  scores = np.asarray(scores, np.float64).reshape(-1)
  labels = np.asarray(labels, np.int64).reshape(-1)
  keep = scores >= score_floor
  boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
  boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
  boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
  keep = nms(boxes, scores, labels, nms_iou, nms_contain)
  return {"boxes": boxes[keep].astype(np.float32), "scores": scores[keep].astype(np.float32),
          "labels": labels[keep].astype(np.int32)}


def predict_images(predict_fn: PredictFn, images: list[np.ndarray],
                   tile: tuple[int, int] = (256, 256), overlap: int = 64, batch_size: int = 8,
                   score_floor: float = 0.05, nms_iou: float = 0.5, nms_contain: float = 0.7,
                   edge_weight: float = 0.1, multiple: int = 32) -> list[dict]:
  """Predictions for images of any sizes, in order.

  Images that fit in one tile are edge-padded to the tile size and run `batch_size` at a time
  (so a data set of crops costs one compiled shape and full batches); larger ones are tiled.
  """
  th, tw = tile
  results: list[dict | None] = [None] * len(images)
  small = [i for i, im in enumerate(images) if im.shape[0] <= th and im.shape[1] <= tw]
  for start in range(0, len(small), batch_size):
    idx = small[start:start + batch_size]
    batch = np.stack([pad_to_multiple(np.asarray(images[i]), multiple, th, tw)[:th, :tw]
                      for i in idx])
    if len(idx) < batch_size:
      batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(idx), 0)])
    out = {k: np.asarray(v) for k, v in predict_fn(batch).items()}
    for j, i in enumerate(idx):
      h, w = images[i].shape[:2]
      res = postprocess(out["boxes"][j], out["scores"][j], out["labels"][j], h, w, score_floor,
                        nms_iou, nms_contain)
      if "seg_probs" in out:
        res["seg_probs"] = out["seg_probs"][j, :h, :w].astype(np.float32)
      results[i] = res
  for i, im in enumerate(images):
    if results[i] is None:
      results[i] = tiled_predict(predict_fn, np.asarray(im), tile, overlap, batch_size,
                                 score_floor, nms_iou, nms_contain, edge_weight, multiple)
  return results


def load_predictor(checkpoint: str) -> tuple[PredictFn, dict]:
  """(predict_fn, info) from an exported artifact folder or a detector training workdir.

  info holds `class_ids`, `class_names` and `tile` (the input size the detector was trained or
  exported at), which is what tiling and reporting need, and `thresholds` (class name -> score,
  or None): the folder's thresholds.json (`fabgen calibrate`) if present, else an export's
  metadata; `thresholds_from` says which.
  """
  import os  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(checkpoint):
    raise FileNotFoundError(f"--checkpoint {checkpoint!r} is not a directory (expected a "
                            f"detector workdir or an exported detector)")
  table = thresholds_lib.load(checkpoint)
  where = thresholds_lib.path_for(checkpoint)
  if export.is_export_dir(checkpoint):
    det = export.load(checkpoint)
    if table is None and det.thresholds:
      table = thresholds_lib.check_table(det.thresholds, os.path.join(checkpoint, export.META))
      where = os.path.join(checkpoint, export.META)
    return det, {"class_ids": det.class_ids, "class_names": det.class_names, "tile": det.tile,
                 "thresholds": table, "thresholds_from": where if table else None}
  import jax  # pylint: disable=g-import-not-at-top
  # Deferred: serving an exported artifact needs no training code; only a workdir imports it.
  from fabgen.data import classes as classes_lib  # pylint: disable=g-import-not-at-top
  from fabgen.detector import task as task_lib  # pylint: disable=g-import-not-at-top
  task, state = task_lib.DetectorTask.restore(checkpoint)
  size = task.config.get("image_size", 256)
  tile = (size, size) if isinstance(size, int) else tuple(size)
  predict = jax.jit(task.predict)
  class_ids = [int(c) for c in task.class_ids]
  names = [classes_lib.CLASSES[c] if c < len(classes_lib.CLASSES) else str(c) for c in class_ids]
  fn = lambda images: {k: np.asarray(v) for k, v in predict(state, images).items()}
  return fn, {"class_ids": class_ids, "class_names": names, "tile": tile, "thresholds": table,
              "thresholds_from": where if table else None}
