"""Resuming a workdir compares the checkpoint's config with the current one (config_guard)."""

import json
import os

import jax
import ml_collections
import pytest

from configs import reference
from fabgen.platform import config_guard
from fabgen.platform import trainer


def _config(steps, **changes):
  c = reference.get_config(f"tiny,steps={steps}")
  c.checkpoint.every_steps = 2
  c.checkpoint.asynchronous = False
  c.summary_every_steps = -1
  for key, value in changes.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def test_differences_name_keys_and_execution_keys_pass():
  saved = json.loads(_config(4).to_json())  # what the checkpoint holds (lists, not tuples)
  same = _config(4, **{"mesh.data": 1, "log_every_steps": 1, "checkpoint.keep": 9})
  assert config_guard.check_resume(saved, same, "ckpt") == [
      "checkpoint.keep: 3 -> 9", "mesh.data: -1 -> 1"]  # log_every_steps is 1 already
  with pytest.raises(config_guard.ConfigMismatchError) as e:
    config_guard.check_resume(saved, _config(4, **{"model.widths": (8, 32), "seed": 3}), "ckpt 4")
  msg = str(e.value)
  assert "ckpt 4" in msg and "model.widths: (8, 16) -> (8, 32)" in msg and "seed: 0 -> 3" in msg
  assert "--config.resume_allow_changes=model.widths,seed" in msg
  allowed = _config(6, resume_allow_changes="total_steps")
  assert config_guard.check_resume(saved, allowed, "ckpt") == ["total_steps: 4 -> 6"]
  with pytest.raises(config_guard.ConfigMismatchError, match="model.num_classes"):
    config_guard.check_resume(saved, _config(4, **{"model.num_classes": 5,
                                                   "resume_allow_changes": "optim."}), "c")


def test_classes_resolved_by_a_fresh_run_are_adopted_not_refused():
  current = ml_collections.ConfigDict({"data": {"class_ids": ()}, "total_steps": 2})
  saved = {"data": {"class_ids": [0, 3]}, "total_steps": 2}
  assert config_guard.check_resume(saved, current, "c") == []
  assert tuple(current.data.class_ids) == (0, 3)
  reordered = ml_collections.ConfigDict({"data": {"class_ids": (3, 0)}, "total_steps": 2})
  with pytest.raises(config_guard.ConfigMismatchError, match=r"data.class_ids: \(0, 3\) -> \(3, 0\)"):
    config_guard.check_resume(saved, reordered, "c")


def test_trainer_refuses_a_changed_model_and_allows_a_longer_schedule(tmp_path):
  workdir = str(tmp_path)
  devices = jax.devices()[:1]
  trainer.train(_config(2), workdir, devices=devices)
  with pytest.raises(config_guard.ConfigMismatchError, match="model.widths"):
    trainer.train(_config(4, **{"model.widths": (8, 32)}), workdir, devices=devices)
  with pytest.raises(config_guard.ConfigMismatchError, match="total_steps: 2 -> 4"):
    trainer.train(_config(4), workdir, devices=devices)
  result = trainer.train(_config(4, resume_allow_changes="total_steps"), workdir, devices=devices)
  assert result["step"] == 4
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    assert json.load(f)["total_steps"] == 4  # config.json follows the run, never stale
