"""Tiled inference round-trips: tiled == whole-image for a translation-equivariant detector."""

import numpy as np
import pytest
from scipy import ndimage

from fabgen.detector import infer

Q = 16


def cc_detector(images):
  """A stand-in detector that is exactly translation-equivariant: boxes = connected components
  of coloured pixels (red -> class 0, green -> class 5), seg = a pointwise softmax."""
  boxes = np.zeros((len(images), Q, 4), np.float32)
  scores = np.zeros((len(images), Q), np.float32)
  labels = np.zeros((len(images), Q), np.int32)
  for b, im in enumerate(images):
    im = im.astype(np.int32)
    q = 0
    for cls, ch in ((0, 0), (5, 1)):
      lab, n = ndimage.label(im[..., ch] - im[..., 2] > 60)
      for sl in ndimage.find_objects(lab):
        boxes[b, q] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        scores[b, q], labels[b, q] = 0.9, cls
        q += 1
  logits = np.stack([np.zeros(images.shape[:3]), images[..., 0] / 40.0, images[..., 1] / 40.0], -1)
  seg = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  return {"boxes": boxes, "scores": scores, "labels": labels, "seg_probs": seg}


def strip_with_defects(h=250, w=1000):
  img = np.full((h, w, 3), 90, np.uint8)
  defects = {
      "inside_one_tile": (0, (10, 10, 40, 30)),
      "in_overlap": (0, (200, 100, 220, 120)),       # lies in the overlap of tiles 0 and 1
      "across_seam": (5, (230, 50, 300, 60)),        # cut by the first tile's right border
      "long_stripe": (5, (350, 200, 990, 206)),      # longer than a tile: three+ pieces
      "at_image_edge": (0, (980, 0, 1000, 8)),
  }
  for cls, (x0, y0, x1, y1) in defects.values():
    img[y0:y1, x0:x1] = (230, 40, 40) if cls == 0 else (40, 230, 40)
  return img, defects


def test_tiled_equals_whole_image():
  img, defects = strip_with_defects()
  tiled = infer.tiled_predict(cc_detector, img, tile=(128, 256), overlap=64, batch_size=4)
  whole = cc_detector(img[None])
  got = sorted(map(tuple, tiled["boxes"].astype(int).tolist()))
  want = sorted(tuple(b) for _, b in defects.values())
  assert got == want
  by_box = {tuple(b.astype(int)): l for b, l in zip(tiled["boxes"], tiled["labels"])}
  assert all(by_box[b] == c for c, b in defects.values())
  np.testing.assert_allclose(tiled["seg_probs"], whole["seg_probs"][0], rtol=1e-5, atol=1e-6)


def test_nms_suppresses_duplicates_and_contained_pieces():
  boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [2, 2, 5, 5], [0, 0, 10, 10], [50, 50, 60, 60]])
  scores = np.array([0.9, 0.8, 0.7, 0.95, 0.1])
  labels = np.array([0, 0, 0, 1, 0])
  keep = infer.nms(boxes, scores, labels)
  assert sorted(keep.tolist()) == [0, 3, 4]   # other class survives; contained piece does not


def test_small_images_batch_path_matches_direct_call():
  rng = np.random.default_rng(0)
  imgs = []
  for h, w in ((64, 64), (64, 64), (64, 64), (60, 50)):  # the last is padded up to the tile
    im = rng.integers(80, 100, (h, w, 3), dtype=np.uint8)
    for _ in range(3):
      x, y = rng.integers(0, w - 8), rng.integers(0, h - 8)
      im[y:y + rng.integers(2, 8), x:x + rng.integers(2, 8)] = (230, 40, 40)
    imgs.append(im)
  calls = []

  def spy(batch):
    calls.append(batch.shape)
    return cc_detector(batch)

  out = infer.predict_images(spy, imgs, tile=(64, 64), batch_size=2, nms_iou=1.01, nms_contain=1.01)
  assert calls == [(2, 64, 64, 3), (2, 64, 64, 3)]
  for im, res in zip(imgs[:3], out[:3]):
    direct = cc_detector(im[None])
    np.testing.assert_allclose(res["seg_probs"], direct["seg_probs"][0], rtol=1e-6)
    assert len(res["boxes"]) == int((direct["scores"][0] >= 0.05).sum())
  assert out[3]["seg_probs"].shape == (60, 50, 3)
  assert (out[3]["boxes"][:, 2] <= 50).all() and (out[3]["boxes"][:, 3] <= 60).all()


def test_bad_image_is_named():
  with pytest.raises(ValueError, match="uint8"):
    infer.tiled_predict(cc_detector, np.zeros((64, 64), np.float32))
