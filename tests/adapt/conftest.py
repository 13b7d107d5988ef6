"""Shared pieces of the adaptation tests: coloured-rectangle samples and a stand-in detector.

The stand-in is exact by construction (boxes = connected components of red / green pixels), so
an evaluation of it must come out at 100 everywhere; a blind copy of it must come out at 0. Both
have the `predict_fn` contract of `fabgen.detector.infer` (uint8 [B,H,W,3] -> numpy dict).
"""

import numpy as np
import pytest
from scipy import ndimage

from fabgen.data.readers import records

NUM_QUERIES = 16
RED, GREEN = 0, 5  # global class ids the colours stand for (color_spot, white_stripe)


def rectangle_sample(size, defects):
  """A sample record: grey fabric with filled rectangles [(class_id, (x0, y0, x1, y1))]."""
  image = np.full((size, size, 3), 90, np.uint8)
  mask = np.zeros((size, size), np.int32)
  for k, (cls, (x0, y0, x1, y1)) in enumerate(defects):
    image[y0:y1, x0:x1] = (230, 40, 40) if cls == RED else (40, 230, 40)
    mask[y0:y1, x0:x1] = k + 1
  sample, notes = records.make_sample(image, mask, [c for c, _ in defects])
  assert not notes, notes
  return sample


def colour_detector(images):
  """Stand-in detector: a box per connected red / green component, seg = pointwise softmax."""
  images = np.asarray(images)
  signed = images.astype(np.float32)
  b = len(images)
  out = {"boxes": np.zeros((b, NUM_QUERIES, 4), np.float32),
         "scores": np.zeros((b, NUM_QUERIES), np.float32),
         "labels": np.zeros((b, NUM_QUERIES), np.int32)}
  for i, im in enumerate(images.astype(np.int32)):
    q = 0
    for cls, ch in ((RED, 0), (GREEN, 1)):
      lab, _ = ndimage.label(im[..., ch] - im[..., 2] > 60)
      for sl in ndimage.find_objects(lab):
        out["boxes"][i, q] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        out["scores"][i, q], out["labels"][i, q] = 0.9, cls
        q += 1
  logits = np.stack([np.zeros(images.shape[:3]), (signed[..., 0] - 90) / 20.0,
                     (signed[..., 1] - 90) / 20.0], -1)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  out["seg_probs"] = (e / e.sum(-1, keepdims=True)).astype(np.float32)
  return out


@pytest.fixture
def coloured_samples():
  """Four 64x64 samples: a red defect, a green stripe, a clean image, one of each."""
  specs = [[(RED, (4, 4, 20, 12))], [(GREEN, (30, 0, 34, 64))], [],
           [(RED, (40, 40, 56, 56)), (GREEN, (2, 50, 30, 54))]]
  return [rectangle_sample(64, d) for d in specs]


@pytest.fixture
def stand_in_detector():
  return colour_detector
