"""R3GAN's schedules (`fabgen.gan.recipe`): the EMA half-life ramps on the cosine from 0, and the
fusion network and the single-stage inpainter take lr / beta2 / gamma / EMA schedules exactly
when their objective is RpGAN (the paper's nsgan keeps constants)."""

import numpy as np
import pytest

from fabgen.gan import recipe as recipe_lib
from fabgen.platform import config as config_lib
from fabgen.platform import ema as ema_lib
from fabgen.stage2.inpainter_task import InpainterTask
from fabgen.stage2.fusion_task import FusionTask


def test_r3gan_ema_half_life_ramps_on_the_cosine():
  b, h, steps = 32, 64_000.0, 1000
  decay = lambda s: float(recipe_lib.ema_decay(s, b, h, "r3gan", steps))
  assert decay(0) == 0.0                                    # half-life 0: EMA = current weights
  np.testing.assert_allclose(decay(500), 0.5 ** (b / (h / 2)), rtol=1e-5)   # halfway: h / 2
  np.testing.assert_allclose(decay(1000), 0.5 ** (b / h), rtol=1e-5)
  np.testing.assert_allclose(decay(3000), 0.5 ** (b / h), rtol=1e-5)       # then constant
  np.testing.assert_allclose(decay(250), 0.5 ** (b / (h * (1 - np.cos(np.pi / 4)) / 2)),
                             rtol=1e-5)
  # "ramp" is StyleGAN's (platform) rule, unchanged
  np.testing.assert_allclose(recipe_lib.ema_decay(10, b, h, "ramp", steps),
                             ema_lib.ema_decay(10, b, h, 0.05))
  with pytest.raises(ValueError, match="EMA schedule 'linear'"):
    recipe_lib.ema_decay(0, b, h, "linear", steps)


@pytest.mark.parametrize("task_cls,spec,lr_key", [
    (FusionTask, "configs/fusion.py:tiny", "lr_t"),
    (InpainterTask, "configs/inpainter.py:tiny", "lr_g")])
def test_stage2_tasks_use_r3gans_schedules_exactly_when_the_objective_is_rpgan(task_cls, spec,
                                                                                lr_key):
  rp = task_cls(config_lib.get(spec, ["loss.objective=rpgan", "total_steps=400"]))
  r = rp.recipe
  lr = rp.config.optim[lr_key]
  np.testing.assert_allclose([r.learning_rate()(0), r.learning_rate()(400)], [lr, lr / 4],
                             rtol=1e-6)
  np.testing.assert_allclose([r.beta2()(0), r.beta2()(400)], [0.9, 0.99], rtol=1e-6)
  np.testing.assert_allclose([r.gamma_shape(0), r.gamma_shape(200), r.gamma_shape(400)],
                             [1.0, 0.55, 0.1], rtol=1e-6)
  assert r.ema_schedule == "r3gan" and float(r.ema_decay(0, 8)) == 0.0
  # D's lr keeps its ratio to the generator's
  ratio = rp.config.optim.lr_d / lr
  state = rp.opt_d.init({"w": np.zeros(2, np.float32)})
  np.testing.assert_allclose(state.hyperparams["learning_rate"], lr * ratio, rtol=1e-6)
  ns = task_cls(config_lib.get(spec, ["loss.objective=nsgan"]))
  assert ns.recipe is None
