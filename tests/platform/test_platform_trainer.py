"""The generic trainer on the reference task: learns, resumes exactly, shards, restores, stops.

All in one process over the 8 forced CPU devices (tests/conftest.py); tiny model, few steps.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import reference
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import config as config_lib
from fabgen.platform import faults
from fabgen.platform import metrics as metrics_lib
from fabgen.platform import trainer


def _config(steps=12, **overrides):
  c = reference.get_config(f"tiny,steps={steps}")
  c.checkpoint.every_steps = 6
  c.checkpoint.asynchronous = False
  c.summary_every_steps = 0
  for key, value in overrides.items():
    node = c
    parts = key.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = value
  config_lib.validate(c)
  return c


def _losses(workdir):
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def _params(workdir):
  _, _, state = checkpoint_lib.restore(workdir)
  return jax.device_get(state["params"])


def _event_tags(workdir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tags = set()
  for name in os.listdir(workdir):
    if name.startswith("events.out.tfevents"):
      for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
        tags.update(v.tag for v in event.summary.value)
  return tags


def test_reference_task_learns_and_writes_summaries(tmp_path):
  config = _config(steps=60, **{"checkpoint.every_steps": 1000, "summary_every_steps": 30,
                                 "profile.num_steps": 2})
  (tmp_path / "PROFILE").touch()  # on-demand trace of the first steps
  result = trainer.train(config, str(tmp_path))
  assert not (tmp_path / "PROFILE").exists()
  assert list((tmp_path / "plugins" / "profile").glob("*/*.xplane.pb"))
  losses = _losses(str(tmp_path))
  assert result["step"] == 60 and sorted(losses) == list(range(1, 61))
  first, last = np.mean([losses[s] for s in range(1, 6)]), np.mean([losses[s] for s in range(56, 61)])
  # Margins (measured on 2 CPU cores): loss ratio 0.089 against the 0.6 bar (6.7x); EMA
  # accuracy at step 60 0.94 against the 0.5 bar (chance 0.25).
  assert last < 0.6 * first, (first, last)
  rows = metrics_lib.read_jsonl(os.path.join(str(tmp_path), "metrics.jsonl"))
  evals = {r["step"]: r["eval/accuracy_ema"] for r in rows if "eval/accuracy_ema" in r}
  assert sorted(evals) == [30, 60] and evals[60] > 0.5  # 4 classes: chance is 0.25
  assert any("steps_per_sec" in r for r in rows)  # clu ReportProgress
  tags = _event_tags(str(tmp_path))
  assert {"train/loss", "eval/accuracy_ema", "eval/inputs", "parameter_overview"} <= tags, tags


@pytest.mark.parametrize("every, want", [(0, [4]), (2, [2, 4]), (-1, [])])
def test_summary_every_steps_zero_means_at_the_end_and_minus_one_never(tmp_path, every, want):
  trainer.train(_config(steps=4, **{"summary_every_steps": every}), str(tmp_path))
  rows = metrics_lib.read_jsonl(os.path.join(str(tmp_path), "metrics.jsonl"))
  assert sorted(r["step"] for r in rows if "eval/accuracy_ema" in r) == want


def test_resume_equals_uninterrupted_and_restores_onto_other_meshes(tmp_path):
  full = str(tmp_path / "full")
  trainer.train(_config(steps=12, **{"mesh.fsdp": 2}), full)  # 8 devices: data=4, fsdp=2
  reference_losses, reference_params = _losses(full), _params(full)

  # Stopped by a (pre-requested) stop signal after step 1, then resumed on the same 8 devices.
  part = str(tmp_path / "part")
  stop = faults.StopSignal()
  stop.request()
  out = trainer.train(_config(steps=12), part, stop=stop)
  assert out["step"] == 1 and out["stopped_by"] == "request"
  trainer.train(_config(steps=12), part)
  np.testing.assert_allclose([_losses(part)[s] for s in range(1, 13)],
                             [reference_losses[s] for s in range(1, 13)], rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               _params(part), reference_params)

  # The step-6 checkpoint saved on 8 devices (data=4, fsdp=2) continues on 1 and on 4 devices.
  for n in (1, 4):
    workdir = str(tmp_path / f"mesh{n}")
    shutil.copytree(full, workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "12"))
    trainer.train(_config(steps=12), workdir, devices=jax.devices()[:n])
    np.testing.assert_allclose([_losses(workdir)[s] for s in range(7, 13)],
                               [reference_losses[s] for s in range(7, 13)], rtol=1e-4, atol=1e-5)


def test_sharded_equals_unsharded(tmp_path):
  one = trainer.train(_config(steps=5), str(tmp_path / "one"), devices=jax.devices()[:1])
  eight = trainer.train(_config(steps=5, **{"mesh.fsdp": 4, "fsdp_min_size": 64}),
                        str(tmp_path / "eight"))
  np.testing.assert_allclose([_losses(str(tmp_path / "one"))[s] for s in range(1, 6)],
                             [_losses(str(tmp_path / "eight"))[s] for s in range(1, 6)],
                             rtol=1e-5, atol=1e-6)
  assert one["step"] == eight["step"] == 5
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               _params(str(tmp_path / "one")), _params(str(tmp_path / "eight")))


def test_nan_stops_naming_step_and_metric_and_keeps_last_good_checkpoint(tmp_path):
  config = _config(steps=12, **{"loss.nan_at_step": 8})  # state step 8 -> the 9th step
  with pytest.raises(faults.NonFiniteError, match=r"step 9: metric 'grad_norm'.*step 6") as e:
    trainer.train(config, str(tmp_path))
  assert e.value.step == 9
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), 6, 3, asynchronous=False)
  assert ckpt.latest_step() == 6
  ckpt.close()
  _, _, state = checkpoint_lib.restore(str(tmp_path))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state["params"])))


def test_restore_without_checkpoint_names_the_workdir(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    checkpoint_lib.restore(str(tmp_path))


def test_compilation_cache_still_hits_after_its_directory_moves(tmp_path):
  """A copied or moved workdir keeps its compiled programs (the CPU key holds no cache path)."""
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  previous = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs,
              jax.config.jax_persistent_cache_enable_xla_caches)
  program = lambda x: jnp.tanh(x @ x.T) @ x * 3.0 + jnp.cumsum(x, axis=0)
  x = jnp.arange(35.0).reshape(5, 7)
  try:
    trainer.use_compilation_cache(str(tmp_path / "a"))
    jax.clear_caches()
    jax.jit(program)(x).block_until_ready()
    written = set(os.listdir(tmp_path / "a"))
    assert any(name.startswith("jit_") for name in written)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    trainer.use_compilation_cache(str(tmp_path / "b"))
    jax.clear_caches()
    jax.jit(program)(x).block_until_ready()
    assert set(os.listdir(tmp_path / "b")) == written  # a hit: nothing new was compiled
  finally:
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
    jax.config.update("jax_persistent_cache_enable_xla_caches", previous[2])
    compilation_cache.reset_cache()
