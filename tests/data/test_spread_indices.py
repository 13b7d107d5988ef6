"""`spread_indices`: what "scan at most N records" reads from a source ordered by class."""

import numpy as np

from fabgen.data.readers import spread_indices
from fabgen.data import defect_crops


def test_spread_indices_cover_the_range_evenly():
  assert spread_indices(10, 4) == [0, 2, 5, 7]
  assert spread_indices(3, 10) == [0, 1, 2]
  assert spread_indices(5, 0) == [] and spread_indices(0, 5) == []
  idx = spread_indices(4232, 24)
  assert len(idx) == 24 and idx == sorted(set(idx)) and idx[-1] > 4000
  assert max(np.diff(idx)) <= -(-4232 // 24)  # evenly spaced: no gap over ceil(total / N)


def _record(cls):
  inst = np.zeros((32, 32), np.int32)
  inst[10:18, 12:20] = 1
  return {"image": np.full((32, 32, 3), 40 * cls, np.uint8), "instance_mask": inst,
          "instance_class": np.array([cls, -1, -1, -1], np.int32)}


def test_a_class_ordered_source_gives_every_class_to_a_small_scan():
  """Folder-per-class data and FabricSim splits list one class after another: the first N
  records hold one class; N spread ones hold them all (here: the cut-paste crop bank)."""
  records = [_record(c) for c in (0, 1, 2, 3) for _ in range(10)]
  first = {int(records[i]["instance_class"][0]) for i in range(8)}
  assert first == {0}
  _, _, bank = defect_crops.extract_crops((records[i] for i in spread_indices(40, 8)), 16, 4)
  assert set(bank.tolist()) == {0, 1, 2, 3}


def test_evaluate_limit_reads_images_of_every_class():
  """`fabgen evaluate --limit N` on a class-ordered split: N images spread over it, not the first
  N (which held no broken ends on FabricSim's test split)."""
  from fabgen.cli import evaluate  # pylint: disable=g-import-not-at-top
  source = [c for c in (0, 1, 2, 3) for _ in range(10)]  # a source only needs len() here
  picked = evaluate.select_indices(source, None, 8)
  assert {source[i] for i in picked} == {0, 1, 2, 3}
  assert evaluate.select_indices(source, None, None) == list(range(40))
