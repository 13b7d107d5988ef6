"""A folder of plain images opens as defect-free records at their natural size."""

import os

import numpy as np
import pytest
from PIL import Image

from fabgen.data.readers import detect_layout, open_source


def test_plain_folder_is_defect_free_at_natural_size(tmp_path):
  Image.fromarray(np.full((64, 512), 120, np.uint8)).save(tmp_path / "strip_a.png")
  Image.fromarray(np.full((64, 512, 3), 90, np.uint8)).save(tmp_path / "strip_b.bmp")
  os.makedirs(tmp_path / "roll2")
  Image.fromarray(np.full((32, 48, 3), 60, np.uint8)).save(tmp_path / "roll2" / "c.jpg")
  (tmp_path / "notes.txt").write_text("not an image")
  assert detect_layout(str(tmp_path)) == "plain"
  src = open_source(str(tmp_path))
  assert len(src) == 3
  shapes = [src[i]["image"].shape for i in range(3)]
  assert shapes == [(64, 512, 3), (64, 512, 3), (32, 48, 3)]
  for i in range(3):
    assert (src[i]["instance_class"] < 0).all() and not src[i]["instance_mask"].any()
  assert len(open_source(f"{tmp_path}@good")) == 3
  with pytest.raises(ValueError, match="only subset"):
    open_source(f"{tmp_path}@defect")


def test_folder_without_images_is_still_an_error(tmp_path):
  (tmp_path / "readme.txt").write_text("x")
  with pytest.raises(ValueError, match="plain images"):
    detect_layout(str(tmp_path))
