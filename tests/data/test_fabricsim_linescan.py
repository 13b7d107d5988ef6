"""The line-scan FabricSim preset: strips with exact masks, deterministic, AITEX-like shapes, the
camera's column gain, training crops from strips; and the strip statistics."""

import dataclasses

import numpy as np
import pytest

from fabgen.data import classes as classes_lib
from fabgen.data.fabricsim import FabricSim, get_preset
from fabgen.data.fabricsim import strip_stats
from fabgen.data.fabricsim.linescan_ranges import LineScanRanges

ID = classes_lib.CLASS_ID


@pytest.fixture(scope="module")
def strips():
  """One batch (one compile): a defect-free strip, each class on the same frame, a repeat."""
  sim = FabricSim("linescan_tiny", seed=0)
  classes = [-1, 0, 1, 2, 3, 4, 5, 4]
  fabrics = [1, 1, 1, 1, 1, 1, 1, 1]
  frames = [3] * 8
  out = sim.render_batch(fabrics, frames, classes)
  return classes, {k: np.asarray(v) for k, v in out.items()}


def test_strip_shape_and_exact_masks(strips):
  classes, out = strips
  assert out["image"].shape == (8, 64, 512, 3)
  clean = out["image"][0].astype(int)
  for n, c in enumerate(classes[1:], start=1):
    img, mask = out["image"][n].astype(int), out["instance_mask"][n]
    on = mask > 0
    assert on.sum() > 0, f"class {c}: nothing was rendered"
    np.testing.assert_array_equal(img[~on], clean[~on])            # outside: the clean twin
    assert (np.abs(img[on] - clean[on]).max(axis=-1) >= 2).all()   # inside: really changed
    kept = out["box_class"][n] >= 0
    assert (out["box_class"][n][kept] == c).all()
    assert set(np.unique(out["instance_class"][n][out["instance_class"][n] >= 0])) == {c}


def test_deterministic_per_seed(strips):
  _, out = strips
  np.testing.assert_array_equal(out["image"][5], out["image"][7])  # same spec, same pixels
  np.testing.assert_array_equal(out["instance_mask"][5], out["instance_mask"][7])


def test_aitex_like_shapes(strips):
  classes, out = strips
  w = out["image"].shape[2]
  width = lambda n: (lambda b: (b[:, 2] - b[:, 0]).max())(out["boxes"][n][out["box_class"][n] >= 0])
  height = lambda n: (lambda b: (b[:, 3] - b[:, 1]).max())(out["boxes"][n][out["box_class"][n] >= 0])
  assert width(classes.index(ID["broken_yarn"])) >= 0.25 * w     # a pick across the strip
  assert height(classes.index(ID["broken_yarn"])) <= 16          # ... one pick high
  assert width(classes.index(ID["knot"])) <= 40                  # a lump, not a band


def test_ranges_are_config_values():
  with pytest.raises(ValueError, match="column_gain"):
    LineScanRanges(column_gain=(0.1, 0.0))
  with pytest.raises(ValueError, match="selvage_prob"):
    LineScanRanges(selvage_prob=1.5)
  preset = dataclasses.replace(get_preset("linescan_tiny"),
                               linescan=LineScanRanges(width=256, banding=(0.2, 0.2)))
  assert preset.shape == (64, 256)
  assert get_preset("linescan").shape == (256, 4096)


def test_statistics_measure_what_they_claim():
  y, x = np.mgrid[0:64, 0:512]
  weave = 128 + 40 * np.cos(2 * np.pi * x / 4.0) + 20 * np.cos(2 * np.pi * y / 6.0)
  s = strip_stats.image_stats(weave.astype(np.uint8))
  assert s["period_x"] == pytest.approx(4.0, rel=0.02)
  assert s["period_y"] == pytest.approx(6.0, rel=0.05)
  flat = np.full((64, 512), 100, np.uint8)
  assert strip_stats.image_stats(flat)["local_contrast"] == 0.0
  banded = (flat * (1 + 0.1 * np.sin(x / 40.0))).astype(np.uint8)
  assert strip_stats.image_stats(banded)["column_banding"] > 0.05
  assert strip_stats.image_stats(banded)["row_drift"] < 0.01
  weave_only = strip_stats.image_stats(weave.astype(np.uint8))
  assert weave_only["column_banding"] < 0.01 and weave_only["row_drift"] < 0.01  # yarns drop out


def test_linescan_strips_have_fine_yarns_and_column_gain(strips):
  _, out = strips
  s = strip_stats.image_stats(out["image"][0])
  assert s["period_x"] <= 24 and s["period_y"] <= 24   # weave repeats of 2-8 px yarns
  assert 5 < s["grey_p1"] and s["grey_p99"] < 250       # no clipping
  assert s["column_banding"] > s["row_drift"]           # line-scan: columns differ, rows don't


def test_training_crops_from_strips(strips):
  from fabgen.data import pipeline  # pylint: disable=g-import-not-at-top
  _, out = strips
  crop = pipeline.make_transform("crop", (64, 64), on_defect=1.0)
  rng = np.random.default_rng(0)
  sample = {k: v[4] for k, v in out.items()}         # a broken end somewhere on a 64x512 strip
  for _ in range(4):
    c = crop(sample, rng)
    assert c["image"].shape == (64, 64, 3)
    assert (c["instance_mask"] > 0).any()               # the crop holds the defect
    b = c["boxes"][c["box_class"] >= 0]
    assert len(b) and (b[:, 2] <= 64).all() and (b[:, 0] >= 0).all()
