"""`fabgen train` of the detector on 8 devices equals one-device steps; restore, predict and
fine-tune from that checkpoint. An `e2e` test (two detector compiles, one on 8 devices: ~3 min
alone, ~7 min beside another worker on 2 cores): `make test-e2e` and CI run it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detector_fixtures import synthetic_records
from detector_fixtures import tiny_config as _config
from fabgen.detector import task as task_lib


@pytest.mark.e2e
def test_sharded_training_equals_unsharded_then_restore_and_finetune(tmp_path):
  """`fabgen train` on 8 devices (batch sharded) == the same steps on one device; the restored
  checkpoint is that state; predict works on it; finetune_config starts from it."""
  from fabgen.platform import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  from fabgen.data import classes  # pylint: disable=g-import-not-at-top
  from fabgen.data import writer  # pylint: disable=g-import-not-at-top
  assert len(jax.devices()) == 8
  # A small set on disk (what a user's data is) rather than FabricSim, whose render compile
  # would dominate this test's time twice over (reference input and the trainer's input).
  data_dir = str(tmp_path / "data")
  writer.write_sample_set(synthetic_records(16, seed=3), data_dir, classes.CLASSES)
  config = _config(**{"batch_size": 8, "total_steps": 2, "checkpoint.every_steps": 1,
                      "checkpoint.asynchronous": False, "log_every_steps": 1,
                      "data.source": data_dir})
  # Unsharded reference: the platform's own step on a one-device mesh, same input and rngs.
  task = task_lib.DetectorTask(config)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  init_rng, step_rng, abstract = trainer.abstract_state(task, config)
  shardings = sharding_lib.state_shardings(abstract, mesh, config)
  state = jax.jit(task.init_state, out_shardings=shardings)(init_rng)
  data = iter(task.dataset(0, 1, config.seed))
  step = None
  for _ in range(2):
    batch = next(data)
    step = step or trainer.build_step(task, shardings, mesh,
                                      trainer.batch_shardings(task, mesh, batch))
    state, metrics = step(state, sharding_lib.global_batch(batch, mesh, task.batch_axes()),
                          step_rng)
  ref_params, ref_loss = jax.device_get(state["params"]), float(metrics["loss"])

  workdir = str(tmp_path / "det")
  result = trainer.train(config, workdir)                      # all 8 devices
  assert result["step"] == 2
  np.testing.assert_allclose(result["loss"], ref_loss, rtol=1e-4)
  task, restored = task_lib.DetectorTask.restore(workdir)
  assert task.class_ids == tuple(config.model.class_ids) and int(restored["step"]) == 2
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               jax.device_get(restored["params"]), ref_params)

  pred = jax.jit(task.predict)(restored, jnp.zeros((2, 64, 64, 3), jnp.uint8))
  assert pred["boxes"].shape == (2, 10, 4) and pred["seg_probs"].shape == (2, 64, 64, 7)
  ft = task_lib.finetune_config(config, workdir, total_steps=5)
  assert ft.optim.lr == pytest.approx(config.optim.lr * 0.1) and ft.total_steps == 5
  # The fine-tune's state: the trained weights, placed in the fresh state's own shardings.
  ft_task = task_lib.DetectorTask(ft)
  fresh = jax.jit(ft_task.init_state, out_shardings=shardings)(jax.random.key(5))
  fresh_shardings = jax.tree.map(lambda x: x.sharding, fresh)
  ft_state = ft_task.warm_start(fresh)
  assert jax.tree.map(lambda x: x.sharding, ft_state) == fresh_shardings
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(ft_state["params"]),
               jax.device_get(restored["params"]))
  bad = task_lib.DetectorTask(task_lib.finetune_config(_config(**{"model.dim": 16}), workdir))
  with pytest.raises(ValueError, match="another size"):
    bad.warm_start(jax.jit(bad.init_state)(jax.random.key(0)))
