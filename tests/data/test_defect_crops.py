"""One centring rule and one defect region: the shared pieces every model's data uses."""

import jax.numpy as jnp
import numpy as np

from fabgen.data import defect_crops
from fabgen.nn import masks as mask_ops


def _record(box, size=40):
  y0, x0, y1, x1 = box
  inst = np.zeros((size, size), np.int32)
  inst[y0:y1, x0:x1] = 1
  image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
  return {"image": image, "instance_mask": inst, "instance_class": np.array([2])}


def test_crops_and_windows_use_one_centre():
  # An even-sized defect [10, 14) x [20, 26): centre (12, 23) by (a0 + a1) // 2.
  box = (10, 20, 14, 26)
  rec = _record(box)
  assert defect_crops.instance_box(rec["instance_mask"], 0) == box
  assert defect_crops.box_centre(box) == (12, 23)
  assert defect_crops.centred_window(box, 8, (40, 40)) == (8, 19)
  images, masks, classes = defect_crops.extract_crops([rec], 8)
  np.testing.assert_array_equal(images[0], rec["image"][8:16, 19:27])
  assert classes.tolist() == [2]
  # The defect sits at the same place in the crop as the stage-1 window and the pipeline see it.
  ys, xs = np.nonzero(masks[0])
  assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (2, 1, 6, 7)
  # Windows are shifted to stay inside the image.
  assert defect_crops.centred_window((0, 36, 2, 40), 8, (40, 40)) == (0, 32)


def test_positions_containing_hold_the_box():
  lo, hi = defect_crops.positions_containing(10, 14, 8, 40)
  for s in range(lo, hi):
    assert s <= 10 and s + 8 >= 14
  assert (lo, hi) == (6, 11)


def test_defect_region_is_the_same_on_host_and_device():
  rng = np.random.default_rng(0)
  m = (rng.random((3, 24, 24)) > 0.97).astype(np.float32)
  for margin in (0, 1, 3):
    host = mask_ops.defect_region(m, margin)
    device = np.asarray(mask_ops.defect_region(jnp.asarray(m), margin))
    np.testing.assert_array_equal(host, device)
  # A square, not a diamond: the corner pixel at (r, r) from a point is inside.
  point = np.zeros((9, 9), np.float32)
  point[4, 4] = 1
  square = mask_ops.defect_region(point, 2)
  assert square[2, 2] == 1 and square.sum() == 25
