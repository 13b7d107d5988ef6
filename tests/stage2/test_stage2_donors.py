"""Stage-1 donors for the fusion network: per-class counts, conditioned on the defect's fabric."""

import numpy as np
import pytest

from fabgen.stage1 import generate as generate_lib
from fabgen.stage2 import data as data_lib


class _RecordingStage1:
  """A Stage1Generator double that records the texture windows it is conditioned on."""
  patch_size = 8
  class_ids = (0, 2)

  def __init__(self):
    self.seen = []

  def generate(self, backgrounds, class_ids, rng):
    del rng
    self.seen += list(zip(np.asarray(class_ids).tolist(), np.asarray(backgrounds)))
    b = len(backgrounds)
    mask = np.zeros((b, 8, 8), np.float32)
    mask[:, 2:6, 3:5] = 1.0
    return {"patch": np.asarray(backgrounds, np.float32) / 255.0, "mask": mask}


def _records():
  """Class-0 defects on a fabric of grey 60, class-2 defects on grey 180; defects are 255."""
  out = []
  for i in range(6):
    cid, grey = (0, 60) if i % 2 == 0 else (2, 180)
    image = np.full((24, 24, 3), grey, np.uint8)
    inst = np.zeros((24, 24), np.int32)
    inst[10:14, 2 + i:6 + i] = 1
    image[inst == 1] = 255
    out.append({"image": image, "instance_mask": inst, "fabric_id": np.int32(cid),
                "instance_class": np.array([cid, -1, -1, -1], np.int32)})
  return out


def test_donors_are_per_class_and_conditioned_on_clean_texture_of_their_class(monkeypatch):
  double = _RecordingStage1()
  monkeypatch.setattr(generate_lib.Stage1Generator, "from_checkpoint",
                      classmethod(lambda cls, path: double))
  images, masks, classes = data_lib.stage1_donors("ckpt", _records(), per_class=5, batch_size=4)
  assert images.shape == (10, 8, 8, 3) and masks.shape == (10, 8, 8)
  assert np.bincount(classes, minlength=3).tolist() == [5, 0, 5]  # a count per class, not total
  for cid, texture in double.seen:
    # defect-free (no 255 pixel) and of the fabric that holds this class's real defects
    assert texture.max() < 255 and texture.min() == {0: 60, 2: 180}[cid]


def test_donor_extent_cuts_the_donor_to_its_defect():
  donor = np.zeros((16, 16, 3), np.uint8)
  mask = np.zeros((16, 16), np.float32)
  mask[4:6, 2:12] = 1
  d, m = data_lib.donor_extent(donor, mask, margin=1)
  assert d.shape == (4, 12, 3) and m.shape == (4, 12)
  d, m = data_lib.donor_extent(donor, np.zeros_like(mask), margin=1)
  assert d.shape == (16, 16, 3)


def test_no_texture_is_a_clear_error(monkeypatch):
  double = _RecordingStage1()
  double.class_ids = (5,)
  monkeypatch.setattr(generate_lib.Stage1Generator, "from_checkpoint",
                      classmethod(lambda cls, path: double))
  with pytest.raises(ValueError, match="no source image holds"):
    data_lib.stage1_donors("ckpt", _records(), per_class=2)


def test_protocol_trains_fusion_on_stage1_donors_by_default():
  from configs import adapt as adapt_config
  from fabgen.adapt import platform_backend
  config = adapt_config.get_config("demo")
  done = {"stage1": {"checkpoint": "/runs/a/stage1"}}
  assert platform_backend.fusion_donor_overrides(config, done) == ["data.donors=/runs/a/stage1"]
  config.fusion_donors = "real"
  assert platform_backend.fusion_donor_overrides(config, done) == ["data.donors=real"]
  config.fusion_donors = "both"
  with pytest.raises(ValueError, match="fusion_donors='both'"):
    platform_backend.fusion_donor_overrides(config, done)
