"""The evaluation pictures: they draw what the numbers say (colours, sizes), not just any PNG."""

import numpy as np
import pytest

from fabgen.data import drawing
from fabgen.detector import metrics
from fabgen.detector import plots
from test_metrics_defect import make_sample  # pylint: disable=g-bad-import-order


def test_confusion_matrix_colours_follow_row_shares():
  cm = np.array([[4, 0], [1, 3]])
  img = np.asarray(plots.confusion_matrix_image(cm, ["a", "bg"], ["a", "missed"], cell=40))
  left, top = 120, 110
  full = img[top + 2, left + 2]            # cell (0, 0): share 1.0 -> darkest blue
  empty = img[top + 2, left + 40 + 2]      # cell (0, 1): share 0 -> white
  assert tuple(empty) == (255, 255, 255)
  assert tuple(full) == (8, 48, 107)
  with pytest.raises(ValueError, match="does not match"):
    plots.confusion_matrix_image(cm, ["a"], ["a", "b"])


def test_pr_curve_picture_draws_each_class_colour():
  ev = metrics.DefectEvaluator(num_classes=2)
  s = make_sample(32, 32, [(0, [(0, 0, 8, 8)]), (1, [(16, 16, 24, 24)])])
  ev.add(s, np.array([[0, 0, 8, 8], [16, 16, 24, 24]]), np.array([0.9, 0.4]), np.array([0, 1]))
  img = np.asarray(plots.pr_curves_image({"a": ev.pr_curve(0), "b": ev.pr_curve(1)}, size=200))
  for k in range(2):
    assert (img == drawing.class_colour(k)).all(axis=-1).sum() > 20


def test_overlay_draws_boxes_in_class_colour_and_tints_seg():
  image = np.full((32, 32, 3), 100, np.uint8)
  seg = np.zeros((32, 32), int)
  seg[20:30, 20:30] = 2
  out = np.asarray(drawing.draw_detections(image, np.array([[2, 2, 12, 12], [0, 0, 4, 4]]),
                                         np.array([0.9, 0.1]), np.array([3, 0]),
                                         [str(i) for i in range(6)], threshold=0.5, seg_map=seg))
  assert tuple(out[2, 6]) == drawing.class_colour(3)          # top edge of the kept box
  assert tuple(out[1, 1]) == (100, 100, 100)                # the low-score box is not drawn
  assert tuple(out[25, 25]) != (100, 100, 100)              # tinted segmentation
  overlay = drawing.draw_detections(image, np.zeros((0, 4)), [], [], [])
  sheet = drawing.side_by_side([drawing.grid([overlay] * 3, 3)], ["x"])
  assert sheet.size[0] > 3 * 32


def _longest_run(flags):
  best = run = 0
  for f in flags:
    run = run + 1 if f else 0
    best = max(best, run)
  return best


def test_confusion_matrix_arrows_are_drawn_not_missing_glyphs():
  img = np.asarray(plots.confusion_matrix_image(np.array([[1, 0], [0, 1]]), ["a", "bg"],
                                                ["a", "missed"]))
  dark = img[110 - 46:110 - 2, :118].sum(-1) < 200   # the axis captions, left of the cells
  # Arrows are lines of >= 14 px (glyphs, and the boxes of missing glyphs, are far shorter).
  assert max(_longest_run(row) for row in dark) >= 14      # predicted ->
  assert max(_longest_run(col) for col in dark.T) >= 14    # true (down)


def test_pr_plot_title_and_axis_label_do_not_overlap():
  img = np.asarray(plots.pr_curves_image({}, size=200))
  rows = (img[:44, :120].sum(-1) < 600).any(axis=1)   # rows with ink left of x = 120, above the box
  runs = np.flatnonzero(np.diff(rows.astype(int)) == 1)
  assert len(runs) >= 2                                 # title and "precision": separate lines
