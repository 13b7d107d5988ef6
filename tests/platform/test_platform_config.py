"""Config loading: variants, typed overrides, locked keys, validation errors that name the key."""

import pytest

from fabgen.cli import overrides as overrides_lib
from fabgen.platform import config as config_lib
from fabgen.platform import mesh as mesh_lib

REF = "configs/reference.py"


def test_variant_and_overrides_are_typed():
  config = config_lib.get(f"{REF}:tiny,steps=7", ["optim.lr=0.5", "mesh.fsdp=2",
                                                   "model.widths=(4, 8)",
                                                   "checkpoint.asynchronous=false"])
  assert config.total_steps == 7 and config.data.image_size == 16
  assert config.optim.lr == 0.5 and isinstance(config.optim.lr, float)
  assert config.mesh.fsdp == 2 and config.model.widths == (4, 8)
  assert config.checkpoint.asynchronous is False


def test_misspelt_override_names_the_key():
  with pytest.raises(config_lib.ConfigError, match=r"'lrr'.*lr"):
    config_lib.get(f"{REF}:tiny", ["optim.lrr=0.1"])
  with pytest.raises(config_lib.ConfigError, match="'optm'"):
    config_lib.get(f"{REF}:tiny", ["optm.lr=0.1"])


def test_locked_config_rejects_new_keys():
  config = config_lib.get(f"{REF}:tiny")
  with pytest.raises(AttributeError, match="totl_steps"):
    config.totl_steps = 3


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", r"optim.lr: expected a float, got 'fast'"),
    ("total_steps=2.5", r"total_steps: expected an int"),
    ("total_steps=0", r"config.total_steps=0 must be a positive int"),
    ("mesh.data=0", r"config.mesh.data=0"),
    ("task=nope", r"config.task='nope' is not a known task"),
    ("precision.compute_dtype=fp8", r"config.precision.compute_dtype='fp8'"),
    ("checkpoint.asynchronous=maybe", r"checkpoint.asynchronous: expected a bool"),
])
def test_bad_values_name_key_and_value(override, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.get(f"{REF}:tiny", [override])


def test_bad_variant_and_missing_file():
  with pytest.raises(config_lib.ConfigError, match="'colour'"):
    config_lib.get(f"{REF}:tiny,colour=red")
  with pytest.raises(config_lib.ConfigError, match="nofile.py"):
    config_lib.get("configs/nofile.py:tiny")


def test_parse_arg():
  a = config_lib.parse_arg("B/16,runlocal,size=3", variant="B/32", runlocal=False, size=1)
  assert (a.variant, a.runlocal, a.size) == ("B/16", True, 3)
  assert config_lib.parse_arg(None, variant="x").variant == "x"


def test_cli_splits_both_override_forms():
  rest, overrides = overrides_lib.split_overrides(
      ["--config", "c.py:tiny", "--config.a.b=1", "--workdir", "w", "--config.c", "2"])
  assert rest == ["--config", "c.py:tiny", "--workdir", "w"]
  assert overrides == ["a.b=1", "c=2"]


def test_mesh_shape_resolves_rest_and_names_bad_sizes():
  assert mesh_lib.mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
  with pytest.raises(ValueError, match="needs 6 devices"):
    mesh_lib.mesh_shape({"data": 3, "fsdp": 2, "tensor": 1}, 8)
