"""Evaluation end to end on a stand-in detector: report, Markdown, pictures, comparison table."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "detector"))
from test_infer_tiling import cc_detector  # noqa: E402  pylint: disable=g-import-not-at-top
from test_metrics_defect import make_sample  # noqa: E402  pylint: disable=g-import-not-at-top

from fabgen.adapt import evaluation  # noqa: E402
from fabgen.adapt import table  # noqa: E402


def coloured_samples():
  """Samples whose defects are red (class 0) or green (class 5) rectangles on grey."""
  specs = [[(0, (4, 4, 20, 12))], [(5, (30, 0, 34, 64))], [], [(0, (40, 40, 56, 56)),
                                                               (5, (2, 50, 30, 54))]]
  out = []
  for defects in specs:
    s = make_sample(64, 64, [(c, [b]) for c, b in defects])
    img = np.full((64, 64, 3), 90, np.uint8)
    for c, (x0, y0, x1, y1) in defects:
      img[y0:y1, x0:x1] = (230, 40, 40) if c == 0 else (40, 230, 40)
    s["image"] = img
    out.append(s)
  return out


def test_perfect_stand_in_scores_100_everywhere(tmp_path):
  samples = coloured_samples()
  ev, kept = evaluation.evaluate(cc_detector, samples, tile=(64, 64), batch_size=2,
                                 keep_predictions=2, seg_class_ids=[0, 5])
  report = evaluation.write_report(ev, str(tmp_path))
  assert len(kept) == 2
  assert list(report["classes"]) == ["color_spot", "white_stripe"]
  for row in report["classes"].values():
    assert row["defect"]["f1"] == 1.0 and row["image"]["f1"] == 1.0
  assert report["coco"]["map_50"] == pytest.approx(1.0)
  assert report["image_any_defect"]["f1"] == 1.0
  for f in ("report.json", "report.md", "confusion_matrix.png", "pr_curves.png"):
    assert os.path.getsize(tmp_path / f) > 0
  md = (tmp_path / "report.md").read_text()
  assert "| color_spot | 2 | 100.0 | 100.0 | 100.0 |" in md
  json.loads((tmp_path / "report.json").read_text())


def test_blind_detector_and_comparison_table():
  samples = coloured_samples()
  blind = lambda images: {k: v * 0 for k, v in cc_detector(images).items()}
  ev_blind, _ = evaluation.evaluate(blind, samples, tile=(64, 64), batch_size=4,
                                        seg_class_ids=[0, 5])
  ev_good, _ = evaluation.evaluate(cc_detector, samples, tile=(64, 64), batch_size=4,
                                        seg_class_ids=[0, 5])
  reports = {"no adaptation": ev_blind.report(), "cutpaste": ev_good.report()}
  assert reports["no adaptation"]["mean_f1"]["defect"] == 0.0
  head, rows = table.comparison_rows(reports)
  assert head == ["method", "color_spot", "white_stripe", "mean", "mAP@.5"]
  assert rows[0][1:4] == ["0.0", "0.0", "0.0"] and rows[1][1:5] == ["100.0"] * 4
  md = table.comparison_markdown(reports, "adaptation")
  assert "defect level" in md and "pixel level" in md


def test_empty_source_is_an_error():
  with pytest.raises(ValueError, match="no samples"):
    evaluation.evaluate(cc_detector, [], tile=(64, 64))
