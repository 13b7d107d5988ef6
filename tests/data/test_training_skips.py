"""Training on a real-layout set with a broken file: it is skipped, counted and reported, or fatal.

The set is a fabgen sample set (COCO `annotations.json`, `images/`, `masks/`) of 9 small
records in which one image is zero bytes (indexing refuses it: a skip at open) and one is
truncated (its header reads, its pixels do not: only a full decode finds it). Before
`data.on_unreadable` and `fabgen.platform.input_report`, the trainer said nothing about either in
the run's metrics, and the up-front readers (stage 1, fusion, inpainter) died on the truncated
file at every start.
"""

import json
import logging
import os
import sys

import jax
import pytest

import numpy as np

from fabgen.data import pipeline
from fabgen.data.readers import ReadError, open_source, skips
from fabgen.platform import config as config_lib
from fabgen.platform import input_options
from fabgen.platform import input_report
from fabgen.platform import metrics as metrics_lib
from fabgen.platform import reference_task
from fabgen.platform import trainer
from fabgen.stage1 import data as stage1_data
from fabgen.stage2 import fusion_task
from fabgen.stage2 import inpainter_task
from configs import fusion as fusion_config
from configs import inpainter as inpainter_config
from configs import reference as reference_config
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "detector"))
from detector_fixtures import write_broken_set  # pylint: disable=g-import-not-at-top,wrong-import-position
from detector_fixtures import tiny_config as detector_tiny  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="module")
def broken_set(tmp_path_factory):
  """(root, zero-byte image path, truncated image path)."""
  return write_broken_set(str(tmp_path_factory.mktemp("broken") / "set"))


class FileClassifierTask(reference_task.ReferenceTask):
  """The platform's reference classifier fed from a file source: "has a defect" per image.

  The smallest real model that trains through `trainer.train` on files (compiles in seconds),
  for the trainer's reporting; the detector below is the real task, under `e2e`.
  """

  def __init__(self, config):
    super().__init__(config)
    self.source = None

  def dataset(self, process_index, process_count, seed):
    if self.source is None:
      self.source = open_source(self.config.data.source_spec)
    size = self.config.data.image_size
    ds = pipeline.make_dataset(self.source, self.config.batch_size // process_count, seed=seed,
                               transform=pipeline.make_transform("center", (size, size)),
                               process_index=process_index, process_count=process_count,
                               skip_broken=skips.skip_broken(self.config))
    return ds.map(_classify).to_iter_dataset(input_options.read_options(1))

  def evaluate(self, state, step, writer, workdir):
    return {}

  def input_report(self):
    return skips.report([self.source])


def _classify(batch):
  return {"image": batch["image"].astype(np.float32) / 127.5 - 1.0,
          "label": (batch["instance_class"] >= 0).any(axis=1).astype(np.int32)}


def _classifier_config(source, **overrides):
  c = reference_config.get_config("tiny,steps=2")
  with c.unlocked():
    c.data.source_spec = source
  c.batch_size, c.data.image_size = 8, 32
  c.checkpoint.every_steps = 2
  c.checkpoint.asynchronous = False
  config_lib.apply_overrides(c, [f"{k}={v}" for k, v in overrides.items()])
  config_lib.validate(c)
  return c


def _check_reported(workdir, zero, truncated, start_messages, trained_key):
  # At start: the file indexing refused, named in a warning and in a row before step 1.
  assert start_messages and zero in start_messages[0], start_messages
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert rows[0]["step"] == 0 and rows[0]["data/skipped_at_open"] == 1, rows[0]
  # In the run's metrics: every logged step counts both; the truncated file was read by step 1
  # (8 readable records, batch 8: the first batch holds every one of them).
  trained = [r for r in rows if trained_key in r]
  assert [r["step"] for r in trained] == [1, 2]
  assert all(r["data/skipped_at_open"] == 1 and r["data/unreadable"] == 1 for r in trained), rows
  with open(os.path.join(workdir, input_report.FILENAME), encoding="utf-8") as f:
    report = json.load(f)
  assert report["skipped_at_open"] == 1 and list(report["unreadable_files"]) == [truncated]
  assert [p for p, _ in report["files"]] == [zero, truncated]


def _start_messages(caplog):
  return [r.getMessage() for r in caplog.records if "files skipped when opened" in r.getMessage()]


def test_training_finishes_and_its_metrics_record_the_skips(broken_set, tmp_path, caplog,
                                                            monkeypatch):
  root, zero, truncated = broken_set
  monkeypatch.setattr(trainer.registry, "build_task", FileClassifierTask)
  workdir = str(tmp_path / "run")
  with caplog.at_level(logging.WARNING):
    result = trainer.train(_classifier_config(root), workdir, devices=jax.devices()[:1])
  assert result["step"] == 2
  _check_reported(workdir, zero, truncated, _start_messages(caplog), "train/loss")


def test_on_unreadable_error_stops_training_naming_the_file(broken_set, tmp_path, monkeypatch):
  root, _, truncated = broken_set
  monkeypatch.setattr(trainer.registry, "build_task", FileClassifierTask)
  config = _classifier_config(root, **{"data.on_unreadable": "error"})
  with pytest.raises(ReadError, match=f"{truncated}.*on_unreadable='error'"):
    trainer.train(config, str(tmp_path / "run"), devices=jax.devices()[:1])


def _detector_config(source, **overrides):
  c = detector_tiny(**{"data.source": source, "batch_size": 8, "total_steps": 2,
                       "log_every_steps": 1, "summary_every_steps": -1,
                       "checkpoint.every_steps": 2, "checkpoint.asynchronous": False,
                       **overrides})
  config_lib.validate(c)
  return c


@pytest.mark.e2e
def test_detector_training_skips_reports_or_stops(broken_set, tmp_path, caplog):
  """The real task: the detector trains 2 steps past both files, and 'error' stops it."""
  root, zero, truncated = broken_set
  workdir = str(tmp_path / "run")
  with caplog.at_level(logging.WARNING):
    result = trainer.train(_detector_config(root), workdir, devices=jax.devices()[:1])
  assert result["step"] == 2
  _check_reported(workdir, zero, truncated, _start_messages(caplog), "train/loss")
  config = _detector_config(root, **{"data.on_unreadable": "error"})
  with pytest.raises(ReadError, match=f"{truncated}.*on_unreadable='error'"):
    trainer.train(config, str(tmp_path / "strict"), devices=jax.devices()[:1])


def test_a_misspelt_policy_is_refused_naming_the_key(broken_set):
  config = _classifier_config(broken_set[0], **{"data.on_unreadable": "ignore"})
  with pytest.raises(ValueError, match=r"data\.on_unreadable='ignore'"):
    skips.policy(config)


@pytest.mark.parametrize("kind", ["inpainter", "fusion"])
def test_up_front_readers_leave_the_file_out_or_stop_naming_it(broken_set, kind):
  root, zero, truncated = broken_set
  module, cfg, build = {
      "inpainter": (inpainter_task.InpainterTask, inpainter_config, lambda t: t.get_crops()),
      "fusion": (fusion_task.FusionTask, fusion_config, lambda t: t.build_examples()),
  }[kind]
  config = cfg.get_config(f"tiny,source={root}")
  task = module(config)
  assert build(task) is not None  # before: ReadError on the truncated image, at every start
  report = task.input_report()
  assert report["skipped_at_open"] == 1 and list(report["unreadable_files"]) == [truncated]
  assert [p for p, _ in report["files"]] == [zero, truncated]
  with config.unlocked():
    config.data.on_unreadable = "error"
  with pytest.raises(ReadError, match=truncated):
    build(module(config))


def test_stage1_patches_name_the_records_they_came_from_after_a_skip(broken_set):
  root, _, truncated = broken_set
  src = open_source(root)
  patches = stage1_data.from_source(src, 16, 100, on_unreadable="skip")
  assert len(patches) > 0 and list(skips.failures(src)) == [truncated]
  # 8 records indexed, index 4 (images/00000005.png) unreadable: no name may point at it.
  with pytest.raises(ReadError, match=truncated):
    stage1_data.from_source(open_source(root), 16, 100, on_unreadable="error")


class _Reporting:
  """A task whose input found one more unreadable file after a resume."""

  def __init__(self, unreadable):
    self.unreadable = unreadable

  def input_report(self):
    return {"skipped_at_open": 0, "unreadable": len(self.unreadable), "files": [],
            "unreadable_files": dict(self.unreadable), "sources": ["x"]}


def test_a_resumed_run_keeps_counting_what_it_skipped_before(tmp_path):
  first = input_report.InputReport(_Reporting({"a.png": "truncated"}), str(tmp_path), False)
  first.save()
  resumed = input_report.InputReport(_Reporting({"b.png": "truncated"}), str(tmp_path), True)
  assert resumed.update()["data/unreadable"] == 2
  fresh = input_report.InputReport(_Reporting({"b.png": "truncated"}), str(tmp_path), False)
  assert fresh.update()["data/unreadable"] == 1


def test_cut_paste_builds_its_bank_past_an_unreadable_record_and_names_it(broken_set, caplog):
  from fabgen.synthesis import cutpaste  # pylint: disable=g-import-not-at-top
  root, _, truncated = broken_set
  with caplog.at_level(logging.WARNING):
    synth = cutpaste.CutPasteSynthesizer.from_checkpoint(root, patch_size=16)
  assert synth is not None  # before: ReadError on the truncated image
  assert any(truncated in r.getMessage() and "skipping unreadable" in r.getMessage()
             for r in caplog.records)


def test_a_synthesized_set_reports_what_its_sources_skipped(broken_set, tmp_path):
  """Cut-paste from the broken set onto its own images: the manifest names both broken files."""
  from fabgen import synthesis  # pylint: disable=g-import-not-at-top
  root, zero, truncated = broken_set
  backgrounds = np.full((2, 64, 64, 3), 128, np.uint8)
  manifest = synthesis.synthesize("cutpaste", root, backgrounds, num=2,
                                  out_dir=str(tmp_path / "syn"), batch_size=2, patch_size=16)
  report = manifest["input_report"]
  assert report["skipped_at_open"] >= 1 and report["unreadable"] >= 1  # crop bank's source
  named = {p for p, _ in report["files"]} | set(report["unreadable_files"])
  assert zero in named and truncated in named
  on_disk = json.load(open(tmp_path / "syn" / "manifest.json"))
  assert on_disk["input_report"]["unreadable"] == report["unreadable"]


def test_a_mixed_input_skips_or_stops_like_a_single_one(broken_set):
  """`make_mixed_dataset` (a fine-tune's source replay) read broken files strictly before."""
  root, _, truncated = broken_set
  center = pipeline.make_transform("center", (32, 32))

  def mixed(skip):
    a, b = open_source(root), open_source(root)
    ds = pipeline.make_mixed_dataset([a, b], [0.5, 0.5], 8, seed=0, num_epochs=1,
                                     transform=center, process_index=0, process_count=1,
                                     skip_broken=skip)
    return a, b, ds

  a, b, ds = mixed(True)
  assert [x["image"].shape for x in ds] == [(8, 32, 32, 3)] * 2  # 8 + 8 indexed, 4 + 4 a batch
  assert list(skips.failures(a)) == list(skips.failures(b)) == [truncated]
  with pytest.raises(ReadError, match=f"{truncated}.*on_unreadable='error'"):
    list(mixed(False)[2])
