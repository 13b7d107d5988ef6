"""Synthesis on line-scan strips: whole strips as backgrounds, defects placed anywhere along the
strip, labels in strip coordinates, and the written set read back as training data."""

import json

import numpy as np

from fabgen.data import pipeline
from fabgen.data.readers import open_source
from fabgen.synthesis import backgrounds as backgrounds_lib
from fabgen.synthesis import cutpaste
from fabgen.synthesis import stream
from test_synthesis_stream import _read_png, _source_records  # pylint: disable=g-bad-import-order


def _strip(rng, h, w):
  """A fine-weave grey strip (period 3 px) with column gain, like a line-scan camera's."""
  y, x = np.mgrid[:h, :w]
  weave = 120 + 30 * np.sin(2 * np.pi * x / 3.0) * np.sin(2 * np.pi * y / 3.0)
  gain = 1 + 0.03 * np.sin(x / 50.0)
  img = weave * gain + rng.normal(0, 2, (h, w))
  return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_defects_across_strips_with_labels_in_strip_coordinates(tmp_path):
  rng = np.random.default_rng(0)
  strips = [_strip(rng, 48, 640) for _ in range(3)]
  synth = cutpaste.CutPasteSynthesizer.from_records(_source_records(), patch_size=16)
  bgs = backgrounds_lib.open_backgrounds(strips)
  manifest = stream.SynthesisRun(synth, bgs, 16, str(tmp_path), batch_size=4).run()
  assert manifest["complete"] and manifest["boxes"] > 0
  coco = json.load(open(tmp_path / "annotations.json"))
  assert {(im["height"], im["width"]) for im in coco["images"]} == {(48, 640)}
  xs = [a["bbox"][0] for a in coco["annotations"]]
  assert min(xs) < 160 and max(xs) > 480              # placed along the whole strip
  by_id = {im["id"]: im for im in coco["images"]}
  for a in coco["annotations"]:
    im = by_id[a["image_id"]]
    mask = _read_png(tmp_path / im["file_name"].replace("images/", "masks/"))
    x, y, w, h = (int(v) for v in a["bbox"])
    assert mask[y:y + h, x:x + w].any()                 # the box sits on its mask, in the strip
  # The written strips are training data: defect-aware crops come back with their labels.
  src = open_source(str(tmp_path))
  crop = pipeline.make_transform("crop", (32, 32), on_defect=1.0)
  sample = src[0]
  assert sample["image"].shape == (48, 640, 3)
  c = crop(sample, np.random.default_rng(1))
  assert c["image"].shape == (32, 32, 3) and (c["instance_mask"] > 0).any()
