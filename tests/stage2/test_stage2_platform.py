"""Stage-2 tasks through the platform: `fabgen.platform.trainer.train` trains, checkpoints,
resumes to exactly the uninterrupted result, and synthesis restores the workdir it wrote.

The data come from `config.data.source` via `open_source`: a tiny COCO sample set written by
`fabgen.data.writer` (striped fabric with dark blobs), so the test exercises the real reader path
without FabricSim's render cost. One CPU device keeps the compile cheap.
"""

import jax
import numpy as np
import pytest

from configs import fusion as fusion_config
from configs import inpainter as inpainter_config
from fabgen.data import classes as classes_lib
from fabgen.data import labels
from fabgen.data import sample as sample_lib
from fabgen.data import writer
from fabgen.platform import config as config_lib
from fabgen.platform import faults
from fabgen.platform import trainer
from fabgen.synthesis import base
from fabgen.synthesis import inpainter


def _record(i, size=40, seed=0):
  rng = np.random.default_rng([seed, i])
  y, x = np.mgrid[:size, :size]
  img = 110 + 50 * np.sin(2 * np.pi * x / 5)[..., None] * np.array([1, .8, .6])
  img = np.clip(img + rng.normal(0, 4, (size, size, 3)), 0, 255)
  m = (y - 20) ** 2 / (9 + i) + (x - 18 - i % 5) ** 2 / 16 < 1
  img[m] *= 0.35
  mask = m.astype(np.int32)
  comp = labels.component_boxes_np(mask)
  cls = 1 + i % 2
  instance_class = np.full(sample_lib.MAX_INSTANCES, -1, np.int32)
  instance_class[0] = cls
  return {"image": img.astype(np.uint8), "instance_mask": mask, "instance_class": instance_class,
          "boxes": comp.boxes, "box_class": np.where(comp.box_instance > 0, cls, -1),
          "box_instance": comp.box_instance, "fabric_id": np.int32(0)}


CACHE = {}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA cache for the module: a resumed run recompiles the same step.

  Restores JAX's previous setting afterwards, so other test modules in this worker are unaffected.
  """
  from jax.experimental import compilation_cache  # pylint: disable=g-import-not-at-top
  cc = compilation_cache.compilation_cache
  previous = jax.config.jax_compilation_cache_dir
  CACHE["dir"] = str(tmp_path_factory.mktemp("stage2_xla_cache"))
  yield CACHE["dir"]
  jax.config.update("jax_compilation_cache_dir", previous)
  cc.reset_cache()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("stage2_source"))
  writer.write_sample_set((_record(i) for i in range(8)), out, classes_lib.CLASSES)
  return out


def _config(module, source, steps, objective=""):
  arg = f"tiny,steps={steps},source={source}" + (f",objective={objective}" if objective else "")
  c = module.get_config(arg)
  c.checkpoint.every_steps = 1
  c.checkpoint.asynchronous = False
  c.log_every_steps = 1
  c.compilation_cache_dir = CACHE["dir"]
  config_lib.validate(c)
  c.lock()
  return c


def _train(config, workdir, stop_after_first=False):
  stop = None
  if stop_after_first:
    stop = faults.StopSignal()
    stop.request()
  return trainer.train(config, workdir, devices=jax.devices()[:1], stop=stop)


def test_fusion_trains_resumes_exactly_and_restores_for_synthesis(source, tmp_path):
  config = _config(fusion_config, source, steps=2)
  full = str(tmp_path / "full")
  result = _train(config, full)
  assert result["step"] == 2 and np.isfinite(result["d_loss"])

  part = str(tmp_path / "part")
  assert _train(config, part, stop_after_first=True)["stopped_by"] == "request"
  resumed = _train(config, part)
  assert resumed["step"] == 2
  for key in ("d_loss", "g_loss", "l1_outside"):
    np.testing.assert_allclose(resumed[key], result[key], rtol=1e-5, atol=1e-6)

  task, state = base.restore_trained(full, expect="fusion")
  task_p, state_p = base.restore_trained(part, expect="fusion")
  assert int(state["step"]) == 2 and task.config.image_size == 32
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(state["t_ema"]), jax.device_get(state_p["t_ema"]))
  with pytest.raises(base.SynthesisError, match="holds a 'fusion' model"):
    base.restore_trained(full, expect="inpainter")


def test_inpainter_trains_and_restores_as_a_synthesizer(source, tmp_path):
  config = _config(inpainter_config, source, steps=2, objective="nsgan")  # rpgan: single-stage test
  workdir = str(tmp_path / "inpainter")
  result = _train(config, workdir)
  assert result["step"] == 2 and np.isfinite(result["g_loss"])
  synth = inpainter.InpainterSynthesizer.from_checkpoint(workdir)
  assert synth.class_ids == (1, 2) and synth.patch_size == 32
  bank = jax.device_get(synth.state["classes"])
  assert bank.shape == (config.model.mask_bank_size,) and sorted(set(bank[bank >= 0])) == [1, 2]


def test_bad_config_values_are_named():
  c = fusion_config.get_config("tiny")
  c.loss.objective = "lsgan"
  from fabgen.stage2 import fusion_task as task_lib  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="config.loss.objective='lsgan'"):
    task_lib.FusionTask(c)
  c = fusion_config.get_config("tiny")
  c.model.widths = (16,) * 7
  with pytest.raises(ValueError, match="config.model.widths"):
    task_lib.FusionTask(c)
  with pytest.raises(ValueError, match="unknown variant"):
    fusion_config.get_config("huge")
