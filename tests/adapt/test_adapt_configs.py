"""The adapt/demo configs build valid training configs for every stage, and the backend's target.

These catch contract drift without training anything: a model config that renamed a key, a
generator whose length lives in a field the platform never reads, a fine-tune config the
detector task rejects, a config path that only resolves from the repository root.
"""

import os

import pytest

from fabgen.adapt import platform_backend
from fabgen.platform import config as config_lib

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def load(spec):
  return config_lib.load_config(os.path.join(ROOT, "configs", spec))


@pytest.mark.parametrize("variant", ["adapt.py:demo", "adapt.py:simple", "adapt.py:complex",
                                     "adapt.py:medium", "adapt.py:real", "adapt.py:linescan",
                                     "demo.py"])
def test_every_stage_config_validates(variant, monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)  # specs must resolve from any directory
  config = load(variant)
  backend = platform_backend.PlatformBackend(config)
  source = f"data.source={backend.source_spec('train')}"
  sections = [config.detector] + [config.generators[g] for g in ("stage1", "fusion", "inpainter")]
  built = {}
  for section in sections:
    cfg = config_lib.get(platform_backend.resolve_spec(section.spec),
                         list(section.overrides) + [source])
    assert cfg.data.source == f"fabricsim:{config.preset}:train:{config.seed}"
    built[cfg.task] = cfg
  assert sorted(built) == ["detector", "fusion", "inpainter", "stage1"]
  # The platform trains for total_steps: each generator's length is set explicitly (the stage-2
  # configs keep their own length in num_steps, which the trainer does not read).
  for gen, task in (("stage1", "stage1"), ("fusion", "fusion"), ("inpainter", "inpainter")):
    steps = [o for o in config.generators[gen].overrides if o.startswith("total_steps=")]
    assert steps, f"generators.{gen} does not set total_steps"
    assert built[task].total_steps == int(steps[-1].split("=")[1])
  # The fine-tune config is what the detector task accepts, at the same model size.
  from fabgen.detector import task as task_lib  # pylint: disable=g-import-not-at-top
  # With source replay (finetune.replay), the detector task accepts the mix as well.
  replay = config.finetune.replay
  assert 0.0 <= replay < 1.0
  ft = task_lib.finetune_config(built["detector"], "/nonexistent", source="/tmp/x",
                                total_steps=config.finetune.steps,
                                lr_factor=config.finetune.lr_factor,
                                mix_source=backend.source_spec("train") if replay else None,
                                mix_weight=replay)
  config_lib.validate(ft)
  assert task_lib.mix_settings(ft) == ((backend.source_spec("train"), replay) if replay
                                       else ("", 0.0))
  assert ft.model == built["detector"].model
  assert ft.optim.lr == pytest.approx(built["detector"].optim.lr * config.finetune.lr_factor)
  assert config.eval.overlap < built["detector"].image_size


def test_demo_is_the_adapt_demo_variant():
  assert load("demo.py").to_dict() == load("adapt.py:demo").to_dict()


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="unknown variant 'huge'"):
    load("adapt.py:huge")


def test_target_fabric_is_held_out_and_checked():
  config = load("adapt.py:demo")
  with config.unlocked():
    config.preset = "tiny"
    config.synth.num_backgrounds = 3
    config.eval.limit = 0
  backend = platform_backend.PlatformBackend(config, log=lambda _: None)
  target = backend.target()
  sim = backend.sim
  assert target["fabric_id"] in set(sim.fabric_ids("target_test").tolist())
  assert target["fabric_id"] not in set(sim.fabric_ids("train").tolist())
  assert target["num_good"] == len(target["good_indices"]) <= 3
  good = sim.record_specs("target_good")
  test = sim.record_specs("target_test")
  assert all(int(good[i, 0]) == target["fabric_id"] for i in target["good_indices"])
  assert all(int(test[i, 0]) == target["fabric_id"] for i in target["test_indices"])
  assert target["num_test"] == sum(int(f) == target["fabric_id"] for f in test[:, 0])
  config.target_fabric = 12345
  with pytest.raises(ValueError, match="target_fabric=12345 is not a held-out target fabric"):
    platform_backend.PlatformBackend(config).target()
