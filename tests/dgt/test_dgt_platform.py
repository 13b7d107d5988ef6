"""DGT through the platform: exact resume, NaN stop, sharded == unsharded on 8 forced CPU
devices, ahead-of-time compile for a mesh, and synthesis from the trained workdir.

Tiny sizes (16x16 crops of FabricSim `tiny`, 2 steps) keep the compiles cheap; the persistent
XLA cache of tests/conftest.py lets the resumed run and the AOT compile reuse programs.
"""

import os

import jax
import numpy as np
import pytest

from configs import dgt as dgt_config
from fabgen.platform import aot
from fabgen.platform import config as config_lib
from fabgen.platform import faults
from fabgen.platform import metrics as metrics_lib
from fabgen.platform import trainer

KEYS = ("g_loss", "dis/seg_fake", "dfc/cls_real", "g/cls_real", "g/seg_real_fore")


def _config(steps=2, **overrides):
  c = dgt_config.get_config(f"tiny,steps={steps},classes=color_spot+knot+broken_end")
  c.image_size = 16
  c.model.g_widths, c.model.dis_widths, c.model.dfc_widths = (8, 8), (8, 8), (8, 8)
  c.model.dis_head_width = 8
  c.model.mask_bank_size = 8
  c.data.num_records = 24
  c.checkpoint.every_steps = 1
  c.checkpoint.asynchronous = False
  c.log_every_steps = 1
  c.summary_every_steps = -1
  # Every test shares one step program (the persistent XLA cache of tests/conftest.py serves the
  # later ones): the NaN hook is armed at state step 3, which only the NaN test reaches.
  c.loss.nan_at_step = 3
  config_lib.apply_overrides(c, [f"{k}={v}" for k, v in overrides.items()])
  config_lib.validate(c)
  return c


def _rows(workdir):
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: r for r in rows if "train/g_loss" in r}


def _close(a, b, rtol=1e-5, atol=1e-6):
  for step in a:
    for k in KEYS:
      np.testing.assert_allclose(a[step][f"train/{k}"], b[step][f"train/{k}"], rtol=rtol,
                                 atol=atol, err_msg=f"step {step} {k}")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("dgt_full"))
  result = trainer.train(_config(), workdir, devices=jax.devices()[:1])
  return workdir, result


def test_resume_equals_uninterrupted(full_run, tmp_path):
  full, result = full_run
  assert result["step"] == 2 and np.isfinite(result["g_loss"])
  part = str(tmp_path / "part")
  stop = faults.StopSignal()
  stop.request()
  out = trainer.train(_config(), part, devices=jax.devices()[:1], stop=stop)
  assert out["step"] == 1 and out["stopped_by"] == "request"
  trainer.train(_config(), part, devices=jax.devices()[:1])
  assert sorted(_rows(part)) == [1, 2]
  _close(_rows(part), _rows(full))


@pytest.mark.e2e  # compiles the same 8-device program the sharded test then reuses (cache)
def test_aot_compile_for_an_8_device_mesh():
  report = aot.aot_compile(_config(), {"data": 8})
  assert report["task"] == "dgt" and report["devices"] == 8
  assert report["memory"]["total_bytes_per_device"] > 0 and report["flops_per_device"] > 0


@pytest.mark.e2e  # the 8-device program is the costliest compile here (~1 CPU-minute)
def test_sharded_over_8_devices_equals_unsharded(full_run, tmp_path):
  full, _ = full_run
  assert len(jax.devices()) == 8
  eight = str(tmp_path / "eight")
  trainer.train(_config(), eight)  # mesh data=-1: the batch of 8 split over 8 devices
  _close(_rows(eight), _rows(full), rtol=1e-4, atol=1e-5)


def test_nan_stops_naming_the_step_and_the_metric(tmp_path):
  with pytest.raises(faults.NonFiniteError, match=r"step 4: metric 'g_loss'"):
    trainer.train(_config(steps=5), str(tmp_path), devices=jax.devices()[:1])


def test_bad_config_values_are_named():
  c = dgt_config.get_config("tiny")
  c.loss.weights.fore = -1.0
  from fabgen.dgt.task import DGTTask  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="config.loss.weights.fore=-1.0"):
    DGTTask(c)
  c = dgt_config.get_config("tiny,classes=knot+knot")
  with pytest.raises(ValueError, match="config.data.classes"):
    DGTTask(c)
  with pytest.raises(ValueError, match="DGT trains on paired"):
    from fabgen.dgt import data as data_lib  # pylint: disable=g-import-not-at-top
    data_lib.parse_source("/some/folder")


def test_synthesize_dgt_writes_a_labelled_set(full_run, tmp_path):
  from fabgen import synthesis  # pylint: disable=g-import-not-at-top
  from fabgen.synthesis import dgt as dgt_synth  # pylint: disable=g-import-not-at-top
  full, _ = full_run
  synth = synthesis.load("dgt", full)
  assert isinstance(synth, dgt_synth.DGTSynthesizer) and synth.patch_size == 16
  assert set(synth.class_ids) <= {0, 2, 3} and synth.class_ids  # color_spot, knot, broken_end
  rng = np.random.default_rng(0)
  backgrounds = [rng.integers(80, 170, (24, 24, 3), dtype=np.uint8) for _ in range(3)]
  out = str(tmp_path / "synth")
  manifest = synthesis.synthesize("dgt", full, backgrounds, num=4, out_dir=out, batch_size=8)
  assert manifest["images"] == 4
  assert set(manifest["per_class"]) <= {"color_spot", "knot", "broken_end"}
  assert os.path.exists(os.path.join(out, "annotations.json"))
  with pytest.raises(synthesis.SynthesisError, match="holds a 'dgt' model"):
    synthesis.load("inpainter", full)
