"""Full DefectFill fine-tune (not LoRA) warm-started from an SD-style diffusers folder: the
folder's weights load into the state, a step trains them, and a run stopped after its first
step and resumed from its checkpoint equals the uninterrupted run."""

import os

import jax
import numpy as np
import pytest

from fabgen.diffusion import lora as lora_lib
from fabgen.diffusion import model as model_lib
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import config as config_lib
from fabgen.platform import faults
from fabgen.platform import trainer

pytestmark = pytest.mark.e2e  # three short trainings (one compile each) of the fixture model

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _config():
  c = config_lib.load_config(f"configs/defectfill.py:tiny,mode=full,pretrained={FIXTURES},"
                             "class_name=knot,steps=3")
  with c.unlocked():
    c.data.image_size = 16      # fixture VAE f=2, U-Net 3 levels: latents 8x8
    c.data.max_records = 24
    c.batch_size = 2
    c.checkpoint.asynchronous = False
  return c


def test_full_finetune_from_a_diffusers_folder_loads_trains_and_resumes_exactly(tmp_path):
  config = _config()
  one = jax.devices()[:1]
  loaded = lora_lib.strip(model_lib.LatentDiffusion(config.model).load_pretrained())

  # Warm start: every U-Net and text weight is the folder's and is trainable; the VAE is the
  # folder's and frozen.
  from fabgen.platform import registry  # pylint: disable=g-import-not-at-top
  task = registry.build_task(_config())
  s0 = task.warm_start(task.init_state(jax.random.key(0)))
  for part in ("unet", "text"):
    jax.tree.map(np.testing.assert_array_equal, s0["train"][part], loaded[part])
  jax.tree.map(np.testing.assert_array_equal, s0["frozen"]["vae"], loaded["vae"])
  assert set(s0["frozen"]) == {"vae"}

  full = str(tmp_path / "full")
  out = trainer.train(_config(), full, devices=one)
  assert all(np.isfinite(out[k]) for k in ("loss/def", "loss/obj", "loss/attn"))
  part = str(tmp_path / "part")
  stop = faults.StopSignal()
  stop.request()
  assert trainer.train(_config(), part, stop=stop, devices=one)["step"] == 1
  trainer.train(_config(), part, devices=one)

  s_full = checkpoint_lib.restore(full)[2]
  s_part = checkpoint_lib.restore(part)[2]
  assert int(s_full["step"]) == int(s_part["step"]) == 3
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               (s_full["train"], s_full["opt"]), (s_part["train"], s_part["opt"]))
  # Full fine-tuning moved the loaded U-Net itself (not only LoRA pairs), and the VAE stayed.
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()),
                       s_full["train"]["unet"], loaded["unet"])
  assert max(jax.tree.leaves(moved)) > 0
  jax.tree.map(np.testing.assert_array_equal, s_full["frozen"]["vae"], loaded["vae"])
