"""Stage-1 evaluation metrics behave as they should on generators whose answer is known."""

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.stage1 import evaluate as ev
from fabgen.stage1.task import Stage1Task

import stage1_fixtures as fx


class _Oracle:
  """Quacks like Stage1Task for evaluation; G returns a chosen texture instead of learning one."""

  def __init__(self, task, mode):
    self.config, self.conditioner, self.mode = task.config, task.conditioner, mode
    self.ref = None

  def generate(self, params, z, cond, class_ids, texture):
    del params, z, cond, class_ids
    if self.mode == "copy":  # the condition's own texture: perfectly conditioned
      out = texture
    else:  # always the same fabric, whatever the condition
      out = jnp.broadcast_to(jnp.asarray(self.ref, jnp.float32) / 127.5 - 1.0, texture.shape)
    return out, jnp.zeros(texture.shape[:3])


def test_kid_separates_distributions():
  rng = np.random.default_rng(0)
  a, b = rng.normal(0, 1, (64, 8)), rng.normal(0, 1, (64, 8))
  c = rng.normal(1.5, 1, (64, 8))
  assert abs(ev.kid(a, b)) < 0.1 < ev.kid(a, c)
  assert np.isnan(ev.kid(a[:1], b))


def test_conditioning_check_and_gram_distance_on_known_generators():
  task = Stage1Task(fx.config())
  ps = fx.patch_set(task, 8)
  copy, const = _Oracle(task, "copy"), _Oracle(task, "const")
  const.ref = ps.clean[0]
  rng = jax.random.key(0)
  assert ev.conditioning_check(copy, None, ps, rng, 8) == 1.0
  assert ev.conditioning_check(const, None, ps, rng, 8) == 0.5  # right only for fabric 0
  ec = task.config.eval
  res = ev.evaluate_all(copy, None, ps, ec)
  assert res["gram_dist/fake"] < 1e-4 < res["gram_dist/real"]
  assert np.isfinite(res["kid"])
  p = task.config.patch_size
  scale = max(1, 64 // p)
  assert res["grid"].shape == (ec.num_fabrics * 2 * p * scale, (2 + ec.num_draws) * p * scale, 3)
  assert res["grid"].dtype == np.uint8
