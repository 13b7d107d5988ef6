"""The diffusion reader follows `data.on_unreadable` like every other reader, and reports it.

A fabgen sample set of 9 records (dark squares of class 0, color_spot) in which one image is zero
bytes (indexing refuses it: a skip at open) and one is truncated (only a full decode finds it).
Before this, `defect_crops` read `src[i]` directly: the truncated file killed the pre-training
and every DefectFill fine-tune at start, whatever the policy, and neither task had an
`input_report`, so a skipped file never reached the run's metrics.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

from fabgen.data.readers import ReadError, open_source
from fabgen.diffusion import data as data_lib
from fabgen.diffusion import defectfill_task
from fabgen.diffusion import pretrain_task
from fabgen.platform import config as config_lib
from fabgen.platform import input_report
from fabgen.platform import trainer
from tests.diffusion.conftest import shrink
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "detector"))
from detector_fixtures import write_broken_set  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="module")
def broken_set(tmp_path_factory):
  """(root, zero-byte image path, truncated image path)."""
  return write_broken_set(str(tmp_path_factory.mktemp("broken") / "set"))


def test_skip_leaves_the_broken_file_out_and_counts_it(broken_set):
  root, _, truncated = broken_set
  src = open_source(root)
  assert len(src) == 8  # the zero-byte image is refused when the set is opened
  images, masks, cls = data_lib.defect_crops(src, 16, 100, 100, class_ids=[0])
  # Every readable record has exactly one class-0 square: 7 crops, the truncated one left out.
  assert images.shape == (7, 16, 16, 3) and masks.shape == (7, 16, 16)
  assert (cls == 0).all() and (masks.sum((1, 2)) >= 4).all()
  assert list(src.read_failures) == [truncated]


def test_error_stops_naming_the_file_and_the_key(broken_set):
  root, _, truncated = broken_set
  with pytest.raises(ReadError, match=f"{truncated}.*on_unreadable='error'"):
    data_lib.defect_crops(root, 16, 100, 100, on_unreadable="error")
  with pytest.raises(ValueError, match="on_unreadable='ignore'"):
    data_lib.defect_crops(root, 16, 100, 100, on_unreadable="ignore")


def _pretrain_config(root, **data):
  c = shrink(config_lib.load_config("configs/diffusion.py:tiny,steps=1"), size=16)
  with c.unlocked():
    c.data.source = root
    c.data.max_records = 100
    c.checkpoint.asynchronous = False
    for k, v in data.items():
      c.data[k] = v
  return c


def test_both_tasks_report_the_skips_and_follow_the_config(broken_set):
  root, zero, truncated = broken_set
  pre = pretrain_task.DiffusionTask(_pretrain_config(root))
  assert len(pre.get_crops()[0]) == 7
  df_config = shrink(config_lib.load_config(
      "configs/defectfill.py:tiny,mode=lora,class_name=color_spot"))
  with df_config.unlocked():
    df_config.data.source = root
    df_config.data.max_records = 100
    df_config.data.num_refs = 3
  df = defectfill_task.DefectFillTask(df_config)
  assert len(df.get_crops()[0]) == 3  # num_refs; the reader still goes through every record
  report = pre.input_report()
  assert report["skipped_at_open"] == 1 and list(report["unreadable_files"]) == [truncated]
  assert [p for p, _ in report["files"]] == [zero, truncated]
  assert df.input_report()["skipped_at_open"] == 1 and df.input_report()["unreadable"] == 1

  strict = pretrain_task.DiffusionTask(_pretrain_config(root, on_unreadable="error"))
  with pytest.raises(ReadError, match=truncated):
    strict.get_crops()


@pytest.mark.e2e  # a real train step compile (minutes on the shared cores); the rest is default
def test_pretraining_runs_past_the_broken_file_and_its_report_names_it(broken_set, tmp_path):
  root, zero, truncated = broken_set
  workdir = str(tmp_path / "run")
  out = trainer.train(_pretrain_config(root), workdir, devices=jax.devices()[:1])
  assert out["step"] == 1 and np.isfinite(out["loss/diffusion"])
  with open(os.path.join(workdir, input_report.FILENAME), encoding="utf-8") as f:
    report = json.load(f)
  assert report["skipped_at_open"] == 1 and list(report["unreadable_files"]) == [truncated]
  assert [p for p, _ in report["files"]] == [zero, truncated]
