"""The preview shows each defect untouched beside its outlined label, and the box statistics."""

import numpy as np
from scipy import stats

from fabgen.data import drawing
from fabgen.synthesis import box_stats
from fabgen.synthesis import preview


def test_defect_is_shown_untouched_beside_an_outline_only_label():
  image = np.full((64, 64, 3), 100, np.uint8)
  image[20:30, 10:50] = 30  # a dark 10 x 40 defect
  mask = np.zeros((64, 64), np.int32)
  mask[20:30, 10:50] = 1
  pair = np.asarray(preview.defect_pair(image, mask, 3, [[10, 20, 50, 30]], side=80))
  half = (pair.shape[1] - 9) // 2
  left, right = pair[3:-3, 3:3 + half], pair[3:-3, 6 + half:6 + 2 * half]
  colour = np.asarray(drawing.class_colour(3))
  assert not (left == colour).all(-1).any()  # the left view is the image itself
  assert set(np.unique(left)) <= {30, 100, 32}  # defect, fabric, the frame's dark grey
  outline = (right == colour).all(-1)
  assert outline.any()
  dark = (right == 30).all(-1)  # the defect's interior keeps its own pixels on the right too
  assert dark.sum() > 0.6 * (left == 30).all(-1).sum()
  fabric_rows = np.flatnonzero((left == 100).all(-1).any(1))
  assert len(fabric_rows) < 0.8 * left.shape[1]  # a wide defect gives a wide, short view


def test_box_report_quantiles_and_ks_match_numpy_and_scipy():
  rng = np.random.default_rng(0)
  real = {3: np.stack([rng.integers(5, 12, 40), rng.integers(80, 200, 40)], 1).astype(float)}
  synth = {3: np.stack([rng.integers(6, 14, 30), rng.integers(60, 180, 30)], 1).astype(float)}
  add_area = lambda d: {c: np.concatenate([v, v[:, :1] * v[:, 1:]], 1) for c, v in d.items()}
  real, synth = add_area(real), add_area(synth)
  rep = box_stats.compare(real, synth)["classes"]["broken_end"]
  assert rep["ks"]["h"] == stats.ks_2samp(synth[3][:, 1], real[3][:, 1]).statistic
  assert rep["synthesized"]["w"]["q50"] == np.percentile(synth[3][:, 0], 50)
  np.testing.assert_allclose(rep["median_area_ratio"],
                             np.median(synth[3][:, 2]) / np.median(real[3][:, 2]))
  assert "| broken_end | synthesized | 30 |" in box_stats.markdown(
      box_stats.compare(real, synth))
