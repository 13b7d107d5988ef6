"""The `defectfill` row of the adaptation table: a latent inpainting model pre-trained on the
sources, one DefectFill fine-tune per defect class, one multi-class synthetic set, the row."""

import json
import os

import pytest

from fabgen.adapt import platform_backend
from fabgen.adapt import protocol
from fabgen.adapt import stage_inputs
from fabgen.platform import config as config_lib
from tests.adapt.test_adapt_end_to_end import ROOT, smallest_config

_SMALL_MODEL = ["model.unet.block_out_channels=(8, 16)", "model.unet.attention_heads=(2, 2)",
                "model.unet.cross_attention_dim=16", "model.unet.norm_num_groups=4",
                "model.vae.block_out_channels=(8, 16)", "model.vae.norm_num_groups=4",
                "model.text.hidden_size=16", "model.text.intermediate_size=32",
                "model.text.num_hidden_layers=1", "model.text.max_length=8",
                "data.image_size=16", "batch_size=8", "data.max_records=24",
                "checkpoint.asynchronous=False", "log_every_steps=1"]


def test_defectfill_stage_configs_build_and_depend_on_the_pretraining():
  config = config_lib.load_config(os.path.join(ROOT, "configs", "adapt.py:demo"))
  config.methods = ("defectfill",)
  protocol.validate(config)
  assert protocol.GENERATORS["defectfill"] == ("diffusion", "defectfill")
  keys, upstream = stage_inputs.dependencies(config, "defectfill")
  assert upstream == ("diffusion",) and "generators.defectfill" in keys
  # A retrained pre-training (its config changed) reaches the fine-tunes' and synthesis' inputs.
  before = stage_inputs.inputs_of(config, "synth_defectfill")
  config.generators.diffusion.overrides = list(config.generators.diffusion.overrides) + [
      "total_steps=41"]
  assert stage_inputs.inputs_of(config, "synth_defectfill") != before
  for name, extra in (("diffusion", []), ("defectfill", ["model.init_from=/somewhere",
                                                         "data.class_name=oil_stain"])):
    section = config.generators[name]
    cfg = config_lib.get(platform_backend.resolve_spec(section.spec),
                         list(section.overrides) + ["data.source=fabricsim:simple:train:0"]
                         + extra)
    config_lib.validate(cfg)
    assert cfg.task == name
  assert cfg.model.init_from == "/somewhere" and cfg.data.class_name == "oil_stain"


def test_unknown_defectfill_class_is_named(tmp_path):
  config = smallest_config()
  config.generators.defectfill.classes = ("knot", "hole_in_one")
  backend = platform_backend.PlatformBackend(config, log=lambda _: None)
  with pytest.raises(ValueError, match="hole_in_one"):
    backend.train_defectfill(str(tmp_path), {"diffusion": {"checkpoint": "/x"}})


@pytest.mark.e2e
def test_adapt_with_defectfill_produces_its_row(tmp_path):
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  trainer.use_compilation_cache(str(tmp_path / "jax_cache"))  # as `fabgen adapt` does
  config = smallest_config()
  config.methods = ("defectfill",)
  config.finetune.control = False
  config.generators.diffusion.overrides = _SMALL_MODEL + ["total_steps=2"]
  config.generators.defectfill.overrides = _SMALL_MODEL + [
      "total_steps=2", "sampling.steps=2", "sampling.candidates=2"]
  config.generators.defectfill.classes = ("knot", "color_spot")
  workdir = str(tmp_path / "adapt")
  lines = []
  result = protocol.run_protocol(config, workdir,
                                 platform_backend.PlatformBackend(config, log=lines.append),
                                 log=lines.append)
  gen = json.load(open(os.path.join(workdir, "defectfill", protocol.RESULT)))
  assert gen["classes"] == ["knot", "color_spot"]
  assert gen["checkpoint"].split(",") == [os.path.join(workdir, "defectfill", c)
                                         for c in ("knot", "color_spot")]
  ft = json.load(open(os.path.join(workdir, "defectfill", "knot", "config.json")))
  assert ft["model"]["init_from"] == os.path.join(workdir, "diffusion")
  synth = json.load(open(os.path.join(workdir, "synth_defectfill", protocol.RESULT)))
  assert sorted(synth["classes"]) == ["color_spot", "knot"]
  from fabgen.data.readers import open_source  # pylint: disable=g-import-not-at-top
  data = open_source(os.path.join(workdir, "synth_defectfill", "data"))
  assert len(data) == config.synth.num
  assert list(result["reports"]) == [protocol.NO_ADAPTATION, "defectfill"]
  assert "| defectfill |" in open(os.path.join(workdir, "table.md")).read()
