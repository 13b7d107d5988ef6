"""Ahead-of-time compile from abstract shapes only (issue 19, section 2).

`fabgen compile` must not read data: every production task describes its batch from its config
(`Task.abstract_batch`), and the compile takes the state from `jax.eval_shape(init_state)`.
Checked here: the compile never calls `dataset`; each production task's abstract batch equals
the shapes and dtypes of its real first batch (e2e: it builds six tiny training sets); and the
CPU memory-check compile options (LLVM -O0) leave XLA's memory and cost analysis unchanged.
"""

import jax
import numpy as np
import pytest

from fabgen.platform import aot
from fabgen.platform import config as config_lib
from fabgen.platform import registry
from fabgen.platform import task as task_lib


def _reference_config():
  return config_lib.get("configs/reference.py:tiny", [])


def test_compile_reads_no_data():
  config = _reference_config()
  task = registry.build_task(config)

  def no_data(*args):
    raise AssertionError("aot_compile read the training data")

  task.dataset = no_data
  report = aot.aot_compile(config, {"data": 2, "fsdp": 2}, task=task, devices=jax.devices()[:4])
  assert report["global_batch"] == config.batch_size
  assert report["memory"]["argument_size_in_bytes"] > 0
  assert report["flops_per_device"] > 0 and report["bytes_accessed_per_device"] > 0


def test_memory_check_options_keep_memory_and_cost():
  """-O0 code generation changes neither the buffer assignment nor XLA's FLOP/byte counts."""
  config = _reference_config()
  devices = jax.devices()[:2]
  full = aot.aot_compile(config, {"data": 2}, devices=devices)
  fast = aot.aot_compile(config, {"data": 2}, devices=devices,
                         compiler_options=aot.MEMORY_CHECK_OPTIONS)
  assert fast["memory"] == full["memory"]
  assert fast["flops_per_device"] == full["flops_per_device"]
  assert fast["bytes_accessed_per_device"] == full["bytes_accessed_per_device"]


def test_abstract_batch_default_reads_one_batch():
  """The base class's fallback (for tasks without an override) is the real batch's shapes."""
  task = registry.build_task(_reference_config())
  assert task_lib.Task.abstract_batch(task) == task.abstract_batch()


PRODUCTION_TINY = ["stage1.py:tiny", "fusion.py:tiny", "inpainter.py:tiny", "detector.py:tiny",
                   "diffusion.py:tiny", "dgt.py:tiny"]


@pytest.mark.e2e
@pytest.mark.parametrize("spec", PRODUCTION_TINY)
def test_abstract_batch_matches_the_real_batch(spec):
  config = config_lib.get(f"configs/{spec}", [])
  task = registry.build_task(config)
  abstract = task.abstract_batch()
  assert type(task).abstract_batch is not task_lib.Task.abstract_batch, f"{spec}: no override"
  real = next(iter(task.dataset(0, 1, config.seed)))
  assert sorted(abstract) == sorted(real), spec
  for key, value in real.items():
    value = np.asarray(value)
    assert abstract[key].shape == value.shape, (spec, key)
    assert abstract[key].dtype == value.dtype, (spec, key)
