"""Evaluation end to end on a stand-in detector: report, Markdown, pictures, comparison table."""

import json
import os

import pytest

from fabgen.adapt import evaluation
from fabgen.adapt import table


def test_perfect_stand_in_scores_100_everywhere(tmp_path, coloured_samples, stand_in_detector):
  samples = coloured_samples
  ev, kept = evaluation.evaluate(stand_in_detector, samples, tile=(64, 64), batch_size=2,
                                 keep_predictions=2, seg_class_ids=[0, 5])
  report = evaluation.write_report(ev, str(tmp_path))
  assert len(kept) == 2
  assert list(report["classes"]) == ["color_spot", "white_stripe"]
  for row in report["classes"].values():
    assert row["defect"]["f1"] == 1.0 and row["image"]["f1"] == 1.0
    assert row["pixel"]["f1"] == pytest.approx(1.0)
  assert report["coco"]["map_50"] == pytest.approx(1.0)
  assert report["image_any_defect"]["f1"] == 1.0
  for f in ("report.json", "report.md", "confusion_matrix.png", "pr_curves.png"):
    assert os.path.getsize(tmp_path / f) > 0
  md = (tmp_path / "report.md").read_text()
  assert "| color_spot | 2 | 100.0 | 100.0 | 100.0 |" in md
  json.loads((tmp_path / "report.json").read_text())


def test_blind_detector_and_comparison_table(coloured_samples, stand_in_detector):
  samples = coloured_samples
  blind = lambda images: {k: v * 0 for k, v in stand_in_detector(images).items()}
  ev_blind, _ = evaluation.evaluate(blind, samples, tile=(64, 64), batch_size=4,
                                        seg_class_ids=[0, 5])
  ev_good, _ = evaluation.evaluate(stand_in_detector, samples, tile=(64, 64), batch_size=4,
                                        seg_class_ids=[0, 5])
  reports = {"no adaptation": ev_blind.report(), "cutpaste": ev_good.report()}
  assert reports["no adaptation"]["mean_f1"]["defect"] == 0.0
  head, rows = table.comparison_rows(reports)
  assert head == ["method", "color_spot", "white_stripe", "mean", "mAP@.5"]
  assert rows[0][1:4] == ["0.0", "0.0", "0.0"] and rows[1][1:5] == ["100.0"] * 4
  md = table.comparison_markdown(reports, "adaptation")
  assert "defect level" in md and "pixel level" in md


def test_empty_source_is_an_error(stand_in_detector):
  with pytest.raises(ValueError, match="no samples"):
    evaluation.evaluate(stand_in_detector, [], tile=(64, 64))


def test_the_report_says_what_the_source_skipped(tmp_path, coloured_samples, stand_in_detector):
  class Skipping(list):
    skipped = [("bad/0001.png", "truncated or corrupt image")]

  ev, _ = evaluation.evaluate(stand_in_detector, Skipping(coloured_samples), tile=(64, 64),
                              batch_size=2, seg_class_ids=[0, 5])
  report = evaluation.write_report(ev, str(tmp_path))
  assert report["skipped_files"] == 1
  assert report["skipped_examples"] == [["bad/0001.png", "truncated or corrupt image"]]
  assert json.loads((tmp_path / "report.json").read_text())["skipped_files"] == 1
