"""Mixed input (pipeline.make_mixed_dataset, config.data.mix_*): proportions, resume, errors.

Fine-tuning on a synthesized set mixes in replay of the source training set; these tests pin
that every batch has the intended share, that the trainer's checkpointed iterator resumes a
mixed stream exactly, and that bad mix settings fail naming the key.
"""

import jax
import ml_collections
import numpy as np
import pytest

from fabgen.data import pipeline
from fabgen.data.readers import base
from fabgen.data.readers import records
from fabgen.detector import task as task_lib
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import config as config_lib
from fabgen.platform import trainer


class _Records(base.Source):
  """In-memory records; fabric_id = offset + index names the sample, `extra` adds a key."""

  def __init__(self, n, offset, size=(12, 16), extra=False, name="records"):
    entries = []
    for i in range(n):
      image = np.full(size + (3,), (offset + i) % 256, np.uint8)
      mask = np.zeros(size, np.int32)
      mask[2:5, 3:7] = 1
      sample = records.make_sample(image, mask, [i % 4], fabric_id=offset + i)[0]
      if extra:
        sample["note"] = np.int32(i)
      entries.append(sample)
    super().__init__(name, entries, tuple("abcdef"))

  def _load(self, entry):
    return dict(entry)

  def _path(self, entry):
    return f"{self.name}[{int(entry['fabric_id'])}]"


def _mixed(a, b, weights=(0.75, 0.25), batch=8, **kw):
  kw.setdefault("transform", pipeline.make_transform("crop", (8, 8)))
  return pipeline.make_mixed_dataset([a, b], weights, batch, seed=3, process_index=0,
                                     process_count=1, **kw)


def test_every_batch_has_the_weighted_share_and_each_source_cycles_on_its_own():
  a, b = _Records(40, 0), _Records(3, 1000, size=(20, 9), extra=True, name="small")
  it = iter(_mixed(a, b).to_iter_dataset())
  seen_a, seen_b = [], []
  for _ in range(6):
    ids = [int(i) for i in next(it)["fabric_id"]]
    from_b = [i for i in ids if i >= 1000]
    assert len(from_b) == 2, ids  # 0.25 of 8, in every batch
    seen_a += [i for i in ids if i < 1000]
    seen_b += from_b
  assert len(set(seen_a)) == len(seen_a) == 36  # the large source: no repeat within an epoch
  assert sorted(seen_b[:3]) == [1000, 1001, 1002] and len(seen_b) == 12  # small one cycles
  batch = _mixed(a, b)[0]
  assert "note" not in batch and batch["image"].shape == (8, 8, 8, 3)  # common keys, cropped


def test_zero_weight_drops_a_source_and_bad_weights_name_the_value():
  a, b = _Records(8, 0), _Records(8, 100)
  ids = [int(i) for i in _mixed(a, b, weights=(1.0, 0.0))[0]["fabric_id"]]
  assert all(i < 100 for i in ids)
  for weights in [(1.0, -0.5), (0.0, 0.0), (1.0, float("nan"))]:
    with pytest.raises(ValueError, match=r"weights=\("):
      _mixed(a, b, weights=weights)
  with pytest.raises(ValueError, match="2 sources but 3 weights"):
    _mixed(a, b, weights=(1, 1, 1))


def _detector_config(**data):
  config = config_lib.get("configs/detector.py:tiny", [])
  with config.unlocked():
    config.batch_size = 4
    config.data.transform = "crop"
    config.image_size = 8
    config.data_prefetch = 2
    with config.data.ignore_type():  # let a wrong type reach the task's own check
      for k, v in data.items():
        config.data[k] = v
  return config


def _task(config):
  task = task_lib.DetectorTask(config)
  task.source = _Records(10, 0, size=(12, 16))
  task.mix_source = _Records(5, 500, size=(20, 9), extra=True)
  return task


def test_detector_task_mixes_and_the_trainer_checkpoint_resumes_the_mixed_stream(tmp_path):
  config = _detector_config(mix_source="unused-in-test", mix_weight=0.5)
  full = [b for _, b in zip(range(7), iter(trainer.input_pipeline(_task(config), config)))]
  # the step's keys only (no fabric_id): the image value names the sample (mix source >= 244)
  assert all(sum(int(v) >= 244 for v in b["image"][:, 0, 0, 0]) == 2 for b in full)
  it = iter(trainer.input_pipeline(_task(config), config))
  for _ in range(4):
    next(it)
  state = {"step": np.int32(4)}
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), every_steps=1, keep=2, asynchronous=False)
  ckpt.save(4, state, it, config)
  ckpt.close()
  fresh = iter(trainer.input_pipeline(_task(config), config))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), every_steps=1, keep=2, asynchronous=False)
  _, fresh = ckpt.restore(jax.tree.map(np.asarray, state), fresh, 4)
  ckpt.close()
  for want in full[4:]:
    got = next(fresh)
    assert sorted(got) == sorted(want)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("data, match", [
    ({"mix_source": "x", "mix_weight": 0.0}, r"config.data.mix_weight=0.0: must be in \(0, 1\)"),
    ({"mix_source": "x", "mix_weight": 1.0}, r"config.data.mix_weight=1.0: must be in \(0, 1\)"),
    ({"mix_source": "", "mix_weight": 0.3}, "config.data.mix_source is empty"),
    ({"mix_source": "x", "mix_weight": "half"}, "config.data.mix_weight='half'"),
])
def test_bad_mix_settings_fail_naming_the_key(data, match):
  with pytest.raises(ValueError, match=match):
    task_lib.DetectorTask(_detector_config(**data))


def test_a_mistyped_mix_override_fails_naming_the_key():
  with pytest.raises(config_lib.ConfigError, match="config.data.mix_weight"):
    config_lib.get("configs/detector.py:tiny", ["--config.data.mix_weight=half"])


def test_finetune_config_sets_the_replay_mix_and_off_by_default():
  base_config = _detector_config()
  tuned = task_lib.finetune_config(base_config, "/nowhere", source="/synthetic", total_steps=10,
                                   mix_source="fabricsim:simple:train:0", mix_weight=0.5)
  assert (tuned.data.source, tuned.data.mix_source, tuned.data.mix_weight) == (
      "/synthetic", "fabricsim:simple:train:0", 0.5)
  plain = task_lib.finetune_config(base_config, "/nowhere", source="/synthetic", total_steps=10)
  assert task_lib.mix_settings(plain) == ("", 0.0)
  assert task_lib.mix_settings(ml_collections.ConfigDict({"data": {}})) == ("", 0.0)
  with pytest.raises(ValueError, match="config.data.mix_weight=2.0"):
    task_lib.finetune_config(base_config, "/nowhere", mix_source="s", mix_weight=2.0)
