"""Stage 1 with ADA augmentation on: a real step runs, reports its probability, and G still gets
D's gradient through the augmentation (and the straight-through mask). An `e2e` test: compiling
the step with R1/R2 taken through the augmentation took 6 min on the (heavily shared) 2 cores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.stage1.task import Stage1Task

import stage1_fixtures as fx


@pytest.mark.e2e
def test_augmented_step_trains_and_g_gets_gradients():
  config = fx.config()
  config.augment.enabled = True
  config.augment.p_start = config.augment.p_end = 1.0
  task = Stage1Task(config)
  batch = fx.batch(fx.patch_set(task, 8), 4)
  state = task.init_state(jax.random.key(0))
  new, metrics = jax.jit(task.train_step)(state, batch, jax.random.key(1))
  metrics = jax.device_get(metrics)
  assert metrics["augment_p"] == 1.0 and metrics["r1"] > 0 and np.isfinite(metrics["d_loss"])
  assert metrics["grad_norm/g"] > 0
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new["g"], state["g"])
  assert max(jax.tree.leaves(moved)) > 0
