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

NMS runs on the host in numpy, one kept box against the rest at a time (O(N) memory): after the
score floor a strip has tens to thousands of boxes, and the host keeps the device program
shape-static. `predict_stream` runs a whole data set this way: tiles of consecutive images fill
the same fixed-size batches (one compiled shape, no half-empty batch per strip), and an image
leaves memory as soon as its last tile has come back.

`predict_fn` is anything with the detector's predict signature, uint8 [B, H, W, 3] -> dict with
boxes [B, Q, 4] (xyxy pixels), scores [B, Q], labels [B, Q] and optionally seg_probs
[B, H, W, K + 1]: the training code's `task.predict` bound to a state, or an exported artifact
(`fabgen.detector.export`).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from fabgen.data import tiling
from fabgen.detector import export
from fabgen.detector import grouping
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
  """Indices kept by class-aware NMS with IoU and containment suppression, by score.

  Row by row (one kept box against the rest), so memory is O(N), not O(N^2): a strip can carry
  thousands of low-score candidates.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  order = np.argsort(-np.asarray(scores), kind="stable")
  area = metrics.box_area(boxes)
  labels = np.asarray(labels)
  keep: list[int] = []
  suppressed = np.zeros(len(boxes), bool)
  for i in order:
    if suppressed[i]:
      continue
    keep.append(int(i))
    inter = metrics.intersection(boxes, boxes[i:i + 1])[:, 0]
    union = area + area[i] - inter
    ious = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    inside = np.where(area > 0, inter / np.maximum(area, 1e-12), 0.0)
    suppressed |= (labels == labels[i]) & ((ious >= iou) | (inside >= contain))
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
  labels = np.asarray(labels)
  act = np.nonzero(np.asarray(scores) >= min_score)[0]  # only these can link: O(active^2)
  ab, al, at = boxes[act], labels[act], np.asarray(truncated)[act]
  link = (metrics.intersection(ab, ab) > 0) & (al[:, None] == al[None, :])
  link &= at[:, None] | at[None, :]
  roots = grouping.link_groups(n, ((act[i], act[j]) for i, j in zip(*np.nonzero(np.triu(link, 1)))))
  uniq, group = np.unique(roots, return_inverse=True)
  out_b = np.stack([np.full(len(uniq), np.inf), np.full(len(uniq), np.inf),
                    np.full(len(uniq), -np.inf), np.full(len(uniq), -np.inf)], axis=1)
  for col, fn in ((0, np.minimum), (1, np.minimum), (2, np.maximum), (3, np.maximum)):
    fn.at(out_b[:, col], group, boxes[:, col])
  out_s = np.full(len(uniq), -np.inf)
  np.maximum.at(out_s, group, np.asarray(scores, np.float64))
  return (out_b.reshape(-1, 4), out_s, labels[uniq].astype(np.int64))


def pad_to_multiple(image: np.ndarray, multiple: int, min_h: int, min_w: int) -> np.ndarray:
  """Edge-pads an [H, W, 3] image to sides >= (min_h, min_w) that are multiples of `multiple`."""
  h, w = image.shape[:2]
  th = max(min_h, -(-h // multiple) * multiple)
  tw = max(min_w, -(-w // multiple) * multiple)
  if (th, tw) == (h, w):
    return image
  return np.pad(image, ((0, th - h), (0, tw - w), (0, 0)), mode="edge")


class _Pending:
  """One image in flight through `predict_stream`: its tiles, and what they have returned."""

  def __init__(self, key, image: np.ndarray, tile: tuple[int, int], overlap: int, multiple: int,
               edge_weight: float):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise ValueError(f"inference wants uint8 [H, W, 3] images, got {image.dtype} "
                       f"{image.shape} (image {key!r})")
    th, tw = tile
    self.key, self.h, self.w = key, image.shape[0], image.shape[1]
    self.padded = pad_to_multiple(image, multiple, th, tw)
    self.small = self.h <= th and self.w <= tw
    ph, pw = self.padded.shape[:2]
    self.origins = ([(0, 0)] if self.small else
                    [(int(y), int(x)) for y, x in tiling.tile_grid(ph, pw, (th, tw), overlap)])
    self.remaining = len(self.origins)
    self.edge_weight = edge_weight
    self.seg_sum = None
    self.weight_sum = None
    self.raw = None  # the small-image path: the one tile's raw queries
    self.boxes, self.scores, self.labels, self.truncated = [], [], [], []

  def tile(self, k: int, tile: tuple[int, int]) -> np.ndarray:
    y, x = self.origins[k]
    return self.padded[y:y + tile[0], x:x + tile[1]]

  def take(self, k: int, out: Mapping[str, np.ndarray], i: int, tile: tuple[int, int],
           score_floor: float, edge_tol: float) -> None:
    """Folds row i of a batch output (the prediction for tile k) into this image."""
    self.remaining -= 1
    if self.small:
      self.raw = {name: v[i] for name, v in out.items()}
      return
    th, tw = tile
    ph, pw = self.padded.shape[:2]
    y, x = self.origins[k]
    keep = out["scores"][i] >= score_floor
    b = np.asarray(out["boxes"][i][keep], np.float64)
    self.truncated.append(((b[:, 0] <= edge_tol) & (x > 0)) | ((b[:, 1] <= edge_tol) & (y > 0))
                          | ((b[:, 2] >= tw - edge_tol) & (x + tw < pw))
                          | ((b[:, 3] >= th - edge_tol) & (y + th < ph)))
    self.boxes.append(b + np.array([x, y, x, y], np.float64))
    self.scores.append(out["scores"][i][keep])
    self.labels.append(out["labels"][i][keep])
    if "seg_probs" in out:
      wt = edge_weights(th, tw, y == 0, y + th == ph, x == 0, x + tw == pw,
                        self.edge_weight).astype(np.float32)
      if self.seg_sum is None:
        self.seg_sum = np.zeros((ph, pw, out["seg_probs"].shape[-1]), np.float32)
        self.weight_sum = np.zeros((ph, pw), np.float32)
      self.seg_sum[y:y + th, x:x + tw] += out["seg_probs"][i] * wt[..., None]
      self.weight_sum[y:y + th, x:x + tw] += wt

  def result(self, score_floor: float, nms_iou: float, nms_contain: float, merge_score: float,
             max_detections: int | None) -> dict[str, np.ndarray]:
    h, w = self.h, self.w
    if self.small:
      res = postprocess(self.raw["boxes"], self.raw["scores"], self.raw["labels"], h, w,
                        score_floor, nms_iou, nms_contain, max_detections)
      if "seg_probs" in self.raw:
        res["seg_probs"] = np.asarray(self.raw["seg_probs"][:h, :w], np.float32)
      return res
    boxes, scores, labels = merge_truncated(
        np.concatenate(self.boxes), np.concatenate(self.scores),
        np.concatenate(self.labels).astype(np.int64), np.concatenate(self.truncated),
        merge_score)
    res = postprocess(boxes, scores, labels, h, w, 0.0, nms_iou, nms_contain, max_detections)
    if self.seg_sum is not None:
      res["seg_probs"] = (self.seg_sum[:h, :w] / self.weight_sum[:h, :w, None]).astype(np.float32)
    return res


def predict_stream(predict_fn: PredictFn, items: Iterable[tuple[Any, np.ndarray]],
                   tile: tuple[int, int] = (256, 256), overlap: int = 64, batch_size: int = 8,
                   score_floor: float = 0.05, nms_iou: float = 0.5, nms_contain: float = 0.7,
                   edge_weight: float = 0.1, multiple: int = 32, merge_score: float = 0.3,
                   edge_tol: float = 2.0, max_detections: int | None = None
                   ) -> Iterator[tuple[Any, dict[str, np.ndarray]]]:
  """Predictions for a stream of (key, uint8 [H, W, 3] image) pairs, yielded in input order.

  Every image becomes one tile (small images, edge-padded to the tile) or a grid of overlapping
  tiles (strips); tiles from consecutive images fill the same fixed-size batches, so a data set
  of 4096x256 strips costs one compiled shape and no half-empty batch per strip, and only the
  images whose tiles are in the current batch are held in memory. Each result holds boxes [N, 4],
  scores [N], labels [N] (after the score floor, tile merging and NMS, highest score first, at
  most `max_detections`) and, when the detector has a segmentation head, seg_probs [H, W, K + 1].
  """
  th, tw = tile
  if th % multiple or tw % multiple:
    raise ValueError(f"tile {tile} must be a multiple of {multiple} on both sides")
  pending: collections.deque[_Pending] = collections.deque()
  queue: list[tuple[_Pending, int]] = []

  def run(jobs):
    tiles = np.stack([p.tile(k, tile) for p, k in jobs])
    if len(jobs) < batch_size:  # one compiled shape: repeat the last tile
      tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch_size - len(jobs), 0)])
    out = {name: np.asarray(v) for name, v in predict_fn(tiles).items()}
    for i, (p, k) in enumerate(jobs):
      p.take(k, out, i, tile, score_floor, edge_tol)

  def finished():
    while pending and pending[0].remaining == 0:
      p = pending.popleft()
      yield p.key, p.result(score_floor, nms_iou, nms_contain, merge_score, max_detections)

  for key, image in items:
    p = _Pending(key, image, tile, overlap, multiple, edge_weight)
    pending.append(p)
    queue.extend((p, k) for k in range(len(p.origins)))
    while len(queue) >= batch_size:
      run(queue[:batch_size])
      del queue[:batch_size]
      yield from finished()
  if queue:
    run(queue)
  yield from finished()


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
  [(_, res)] = list(predict_stream(predict_fn, [(0, image)], tile, overlap, batch_size,
                                   score_floor, nms_iou, nms_contain, edge_weight, multiple,
                                   merge_score, edge_tol))
  return res


def postprocess(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, height: int,
                width: int, score_floor: float = 0.05, nms_iou: float = 0.5,
                nms_contain: float = 0.7, max_detections: int | None = None
                ) -> dict[str, np.ndarray]:
  """Score floor, clip to the image, NMS (and at most `max_detections`): raw queries -> detections."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
  scores = np.asarray(scores, np.float64).reshape(-1)
  labels = np.asarray(labels, np.int64).reshape(-1)
  keep = scores >= score_floor
  boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
  boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
  boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
  keep = nms(boxes, scores, labels, nms_iou, nms_contain)
  if max_detections is not None:
    keep = keep[:max_detections]
  return {"boxes": boxes[keep].astype(np.float32), "scores": scores[keep].astype(np.float32),
          "labels": labels[keep].astype(np.int32)}


def predict_images(predict_fn: PredictFn, images: list[np.ndarray],
                   tile: tuple[int, int] = (256, 256), overlap: int = 64, batch_size: int = 8,
                   score_floor: float = 0.05, nms_iou: float = 0.5, nms_contain: float = 0.7,
                   edge_weight: float = 0.1, multiple: int = 32) -> list[dict]:
  """Predictions for images of any sizes, in order (`predict_stream` over a list).

  Images that fit in one tile are edge-padded to the tile size; larger ones are tiled; tiles of
  all images share fixed-size batches (one compiled shape).
  """
  return [res for _, res in predict_stream(predict_fn, enumerate(images), tile, overlap,
                                           batch_size, score_floor, nms_iou, nms_contain,
                                           edge_weight, multiple)]


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
