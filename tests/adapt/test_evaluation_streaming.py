"""Evaluation over many images: strips batched across images, an unreadable record skipped and
reported, defect-free images giving false alarms, per-class thresholds from a validation split,
partial reports while running."""

import json
import os

import numpy as np
from PIL import Image

from fabgen.adapt import evaluation
from fabgen.data.readers import open_source
from fabgen.detector import infer
from conftest import GREEN, RED, colour_detector, rectangle_sample  # pylint: disable=g-bad-import-order


def strip(width, defects):
  """A 64-row strip with coloured rectangles (class, (x0, y0, x1, y1))."""
  img = np.full((64, width, 3), 90, np.uint8)
  for cls, (x0, y0, x1, y1) in defects:
    img[y0:y1, x0:x1] = (230, 40, 40) if cls == RED else (40, 230, 40)
  return img


def test_stream_batches_tiles_across_strips_with_one_shape():
  images = [strip(320, [(RED, (10, 10, 30, 20))]), strip(320, [(GREEN, (200, 0, 204, 64))]),
            strip(64, []), strip(448, [(RED, (300, 30, 340, 50))])]
  shapes = []

  def spy(batch):
    shapes.append(batch.shape)
    return colour_detector(batch)

  streamed = dict(infer.predict_stream(spy, enumerate(images), tile=(64, 64), overlap=16,
                                       batch_size=8))
  assert set(shapes) == {(8, 64, 64, 3)}        # one compiled shape, whatever the strip
  tiles = sum(len(infer._Pending(0, im, (64, 64), 16, 32, 0.1).origins) for im in images)
  assert len(shapes) == -(-tiles // 8)           # full batches across strips, one padded last
  for i, im in enumerate(images):
    alone = infer.tiled_predict(colour_detector, im, tile=(64, 64), overlap=16, batch_size=8)
    np.testing.assert_allclose(streamed[i]["boxes"], alone["boxes"])
    np.testing.assert_allclose(streamed[i]["seg_probs"], alone["seg_probs"], atol=1e-6)


def write_generic(folder, samples):
  os.makedirs(folder / "images")
  os.makedirs(folder / "masks")
  for n, (img, mask) in enumerate(samples):
    Image.fromarray(img).save(folder / "images" / f"{n:03d}.png")
    Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"{n:03d}.png")
  (folder / "classes.json").write_text(json.dumps(["color_spot"]))


def test_unreadable_record_is_skipped_and_reported(tmp_path):
  samples = []
  for n in range(4):
    img = strip(128, [(RED, (10 + 20 * n, 10, 30 + 20 * n, 20))])
    mask = np.zeros(img.shape[:2])
    mask[10:20, 10 + 20 * n:30 + 20 * n] = 1
    samples.append((img, mask))
  write_generic(tmp_path / "data", samples)
  with open(tmp_path / "data" / "images" / "002.png", "r+b") as f:
    f.truncate(os.path.getsize(f.name) - 60)      # header intact, pixel data cut short
  src = open_source(str(tmp_path / "data"))
  ev, _ = evaluation.evaluate(colour_detector, src, tile=(64, 64), overlap=16, batch_size=4,
                              seg_class_ids=[0, 5])
  report = evaluation.write_report(ev, str(tmp_path / "out"))
  assert report["num_images"] == 3
  assert [s["index"] for s in report["skipped"]] == [2]
  assert "002.png" in report["skipped"][0]["error"]
  assert report["classes"]["color_spot"]["defect"]["f1"] == 1.0
  assert "Skipped 1 unreadable" in (tmp_path / "out" / "report.md").read_text()


def test_good_images_false_alarms_validation_split_and_partial_report(tmp_path):
  defects = [rectangle_sample(64, [(RED, (4 + n, 4, 20 + n, 12))]) for n in range(8)]
  good = [rectangle_sample(64, []) for _ in range(3)]
  good[1]["image"][30:40, 30:40] = (230, 40, 40)  # a red mark on defect-free cloth: an alarm
  ev, _ = evaluation.evaluate(colour_detector, defects, tile=(64, 64), batch_size=4,
                              good_sources=[(good, range(3))], val_fraction=0.25,
                              pixel_pitch_mm=0.25, partial_dir=str(tmp_path),
                              partial_every_s=0.0, seg_class_ids=[0, 5])
  partial = json.loads((tmp_path / "report.json").read_text())
  assert partial["partial"] is True
  report = ev.report()
  assert report["validation"]["num_images"] == 2    # positions 3 and 7 of 11 (every 4th)
  assert report["num_images"] == 9                  # 6 defect images + 3 defect-free ones
  fa = report["false_alarms"]
  assert (fa["num_good_images"], fa["alarms_on_good_images"]) == (3, 1)
  assert fa["per_good_image"] == 1 / 3
  assert fa["metres"] == 0.25 * 64 * 9 / 1000 and fa["per_metre"] == 1 / fa["metres"]
  assert abs(report["validation"]["class_thresholds"]["color_spot"] - 0.9) < 1.5e-3  # float32 0.9
  # 6 defects found, 7 alarms (one on the red mark of a defect-free image): F = 12 / 13.
  assert abs(report["at_class_thresholds"]["color_spot"]["f1"] - 12 / 13) < 1e-9
  md = evaluation.write_report(ev, str(tmp_path)) and (tmp_path / "report.md").read_text()
  assert "per defect-free image" in md and "any defect" in md and "validation split" in md


def test_target_classes_unknown_to_the_detector_get_their_own_rows(tmp_path):
  # Class 7 ("crease" in the data's names) is not a detector class: a red box still finds it.
  names = ["color_spot", "oil_stain", "knot", "broken_end", "broken_yarn", "white_stripe",
           "fuzzyball", "crease"]
  samples = [rectangle_sample(64, [(RED, (4, 4, 20, 12))]) for _ in range(2)]
  crease = rectangle_sample(64, [(RED, (30, 30, 50, 40))])
  crease["instance_class"][0] = 7
  crease["box_class"][crease["box_class"] >= 0] = 7
  ev, _ = evaluation.evaluate(colour_detector, samples + [crease], class_names=names,
                              tile=(64, 64), batch_size=4, detector_class_ids=[0, 5],
                              seg_class_ids=[0, 5])
  report = evaluation.write_report(ev, str(tmp_path))
  assert list(report["classes"]) == ["color_spot"]          # not a zero column for crease
  assert report["unknown_classes"]["crease"] == {
      "class_id": 7, "num_true": 1, "found_by_any_class": 1, "recall_any_class": 1.0}
  # Recall of color_spot stays 1 (the crease is no missed color_spot); the red box on the crease
  # is still a color_spot alarm on something else: P = 2/3, F = 0.8.
  assert abs(report["mean_f1"]["defect"] - 0.8) < 1e-9
  assert report["any_defect"]["defect"]["recall"] == 1.0
  md = (tmp_path / "report.md").read_text()
  assert "| crease (not a detector class) | 1 |" in md


def test_defect_free_images_alone_report_false_alarms(tmp_path):
  good = [rectangle_sample(64, []) for _ in range(4)]
  good[2]["image"][10:20, 10:20] = (230, 40, 40)
  ev, _ = evaluation.evaluate(colour_detector, good, tile=(64, 64), batch_size=4,
                              seg_class_ids=[0, 5])
  report = evaluation.write_report(ev, str(tmp_path))
  assert report["classes"] == {} and "error" in report["coco"]
  assert report["false_alarms"]["per_good_image"] == 0.25
  assert "0.25 per defect-free image" in (tmp_path / "report.md").read_text()
