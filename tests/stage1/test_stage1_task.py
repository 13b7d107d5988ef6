"""Stage1Task: patch data, each ablation switch, the vmapped gamma grid, sharded == unsharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fabgen.gan import grid_task
from fabgen.platform import registry
from fabgen.platform import trainer
from fabgen.stage1 import data as data_lib
from fabgen.stage1 import generate as generate_lib
from fabgen.stage1.task import Stage1Task

import stage1_fixtures as fx


def test_patches_are_centred_with_defect_free_conditions():
  records = fx.records(6)
  ps = data_lib.build_patches(records, 8)
  assert len(ps) == 6 and not ps.dropped
  assert ps.patches.shape == (6, 8, 8, 3) and ps.masks.shape == (6, 8, 8)
  for i, rec in enumerate(records):
    assert ps.masks[i].sum() == (rec["instance_mask"] == 1).sum()  # whole blob inside the patch
    assert ps.class_ids[i] == rec["instance_class"][0]
  # the condition crop is defect-free texture of the same image: same colour family
  assert np.all(np.abs(ps.clean.mean((1, 2)) - ps.patches.mean((1, 2))).max(-1) < 60)
  # a record without a defect-free window is dropped with a reason naming it
  full = dict(records[0], instance_mask=np.ones((24, 24), np.int32),
              fabric_id=np.int32(99))
  ps2 = data_lib.build_patches([full], 8, names=["img_full"])
  assert len(ps2) == 0 and ps2.dropped[0][0] == "img_full"
  with pytest.raises(ValueError, match="no defect patches"):
    data_lib.from_source(fx.ListSource([full]), 8, 10)


def test_dataset_batches_and_process_split():
  task = Stage1Task(fx.config())
  ps = task.train_set = fx.patch_set(task, 12)
  it = iter(task.dataset(0, 2, seed=0))
  b = next(it)
  assert b["patch"].shape == (2, 8, 8, 3) and b["cond"].shape == (2, task.conditioner.dim)
  assert b["class_id"].dtype == np.int32 and ps.cond.dtype == np.float32
  other = next(iter(task.dataset(1, 2, seed=0)))
  assert not np.array_equal(b["patch"], other["patch"])  # rows differ between processes


def _run(step, state, batch, gamma, steps=1):
  for i in range(steps):
    state, m = step(state, batch, jax.random.key(i), jnp.float32(gamma))
  return state, jax.device_get(m)


@pytest.fixture(scope="module")
def base():
  """(task, batch, initial state, jitted step_with, state and metrics after one default step)."""
  task = Stage1Task(fx.config())
  ps = fx.patch_set(task, 8)
  batch = fx.batch(ps, 4)
  state = task.init_state(jax.random.key(0))
  step = jax.jit(task.step_with)
  new, m = _run(step, state, batch, task.config.loss.gamma)
  return task, batch, state, step, new, m


def test_default_step_trains_and_reports(base):
  task, _, state, _, new, m = base
  assert int(new["step"]) == 1
  for k in ("d_loss", "g_loss", "r1", "r2", "gamma", "lr", "grad_norm/d", "grad_norm/g"):
    assert np.isfinite(m[k]), k
  assert m["r1"] > 0 and m["r2"] > 0
  np.testing.assert_allclose(m["lr"], task.config.optim.lr, rtol=1e-6)
  for net in ("d", "g"):
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state[net], new[net])
    assert any(jax.tree.leaves(changed)), net
  # EMA on (the default): the average lags behind the raw weights
  assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(new["g_ema"]),
                                                   jax.tree.leaves(new["g"])))


def _switched(**changes):
  cfg = fx.config()
  for key, value in changes.items():
    section, leaf = key.split("__")
    cfg[section][leaf] = value
  task = Stage1Task(cfg)
  return task, jax.jit(task.step_with)


def test_switches_r1_off_and_ema_off(base):
  _, batch, state, _, _, ref = base
  task, step = _switched(loss__r1=False, ema__enabled=False)
  new, m = _run(step, state, batch, task.config.loss.gamma)
  assert m["r1"] == 0 and m["r2"] == pytest.approx(ref["r2"], rel=1e-5)
  assert m["grad_norm/d"] != pytest.approx(ref["grad_norm/d"], rel=1e-4)
  for a, b in zip(jax.tree.leaves(new["g_ema"]), jax.tree.leaves(new["g"])):
    np.testing.assert_array_equal(a, b)


def test_switches_r2_off_and_lazy_interval(base):
  _, batch, state, _, _, ref = base
  task, step = _switched(loss__r2=False, loss__lazy_interval=2)
  new, m = _run(step, state, batch, task.config.loss.gamma)
  # step 0 is a penalty step (weight 2 gamma), R2 is off
  assert m["r2"] == 0 and m["r1"] == pytest.approx(ref["r1"], rel=1e-5)
  _, m2 = _run(step, new, batch, task.config.loss.gamma)  # step 1: no penalty at all
  assert m2["r1"] == 0 and m2["r2"] == 0


def _softplus(x):
  return np.logaddexp(0.0, x)


# Each kind's (D loss, G loss) written out by hand on float64 logits (r = D(real), f = D(fake)).
_FORMULAS = {
    "rpgan": (lambda r, f: _softplus(f - r).mean(), lambda r, f: _softplus(r - f).mean()),
    "nsgan": (lambda r, f: (_softplus(-r) + _softplus(f)).mean(),
              lambda r, f: _softplus(-f).mean()),
    "hinge": (lambda r, f: (np.maximum(0, 1 - r) + np.maximum(0, 1 + f)).mean(),
              lambda r, f: (-f).mean()),
    "wgan": (lambda r, f: (f - r).mean(), lambda r, f: (-f).mean()),
}


@pytest.mark.parametrize("kind", ["hinge", "nsgan", "wgan"])
def test_loss_switch(base, kind, monkeypatch):
  """The step's d_loss / g_loss are `kind`'s formulas on the logits its D really produced.

  The logits are captured from inside the compiled step (a debug callback at the loss), so a
  switch that were ignored (every kind trained as rpgan) or a formula slip fails here.
  """
  from fabgen.gan import losses  # pylint: disable=g-import-not-at-top
  seen = {}

  def spy(name, fn):
    def wrapped(k, real, fake, weights=None):
      assert weights is None
      jax.debug.callback(lambda r, f: seen.__setitem__(name, (k, np.asarray(r, np.float64),
                                                              np.asarray(f, np.float64))),
                         real, fake)
      return fn(k, real, fake, weights)
    return wrapped

  monkeypatch.setattr(losses, "d_loss", spy("d", losses.d_loss))
  monkeypatch.setattr(losses, "g_loss", spy("g", losses.g_loss))
  _, batch, state, _, _, ref = base
  task, step = _switched(loss__kind=kind)
  _, m = _run(step, state, batch, task.config.loss.gamma)
  for i, (name, metric) in enumerate((("d", "d_loss"), ("g", "g_loss"))):
    k, real, fake = seen[name]
    assert k == kind and real.shape == fake.shape and real.std() > 0, (k, real)
    np.testing.assert_allclose(m[metric], _FORMULAS[kind][i](real, fake), rtol=2e-5, atol=1e-6,
                               err_msg=f"{kind} {metric}")
  assert m["d_loss"] != pytest.approx(ref["d_loss"], rel=1e-3)  # not the default rpgan's value
  assert m["r1"] > 0


def test_gamma_grid_in_one_program_equals_separate_runs(base):
  """The registry's grid (config.grid) trains members in one vmapped program; each member is the
  single run with its gamma, from the trainer's init and step keys of its seed."""
  task, batch, _, single, _, _ = base
  config = fx.config()
  config.grid.gammas, config.grid.seeds = (0.5, 4.0), (3,)
  grid = registry.build_task(config)
  assert isinstance(grid, grid_task.GridTask)
  assert grid.labels == ["gamma=0.5/seed=3", "gamma=4/seed=3"]
  states = jax.jit(grid.init_state)(jax.random.key(0))
  step = jax.jit(grid.train_step)
  after_one, metrics = None, []
  for _ in range(2):
    states, gm = step(states, batch, jax.random.key(0))
    after_one = after_one or jax.tree.map(np.asarray, states)
    metrics.append(jax.device_get(gm))
  init_key, step_key = jax.random.split(jax.random.key(3))
  for i, (gamma, label) in enumerate(zip((0.5, 4.0), grid.labels)):
    st = jax.jit(task.init_state)(init_key)  # as the trainer makes it
    for s in range(2):
      st, m = single(st, batch, jax.random.fold_in(step_key, s), jnp.float32(gamma))
      if s == 0:  # states after one step agree (later, Adam's normalisation of near-zero
        # gradients amplifies float reassociation noise, so compare step-2 losses)
        for a, b in zip(jax.tree.leaves(grid_task.GridTask.member(after_one, i)),
                        jax.tree.leaves(st)):
          np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
      for k in ("d_loss", "g_loss", "r1", "r2", "gamma"):
        np.testing.assert_allclose(metrics[s][f"{k}/{label}"], m[k], rtol=1e-4, atol=1e-6)
  assert metrics[0]["gamma/gamma=0.5/seed=3"] != metrics[0]["gamma/gamma=4/seed=3"]


def test_sharded_step_equals_unsharded(base):
  # From the state after one step: at init every block's zero-initialised last conv makes the
  # other block weights' gradients exactly zero, and Adam (b1 = 0) turns the ~1e-9 float noise
  # of either reduction order into a +-lr step; after one step those gradients are real.
  # (Parameters are compared in opt-state order too: mu/nu of every leaf.)
  task, batch, _, single, state, _ = base
  devices = np.array(jax.devices()[:4])
  mesh = Mesh(devices, ("data",))
  rep = NamedSharding(mesh, P())
  data = NamedSharding(mesh, P("data"))
  sharded_batch = {k: jax.device_put(v, data) for k, v in batch.items()}
  sharded_state = jax.device_put(state, rep)
  step = jax.jit(task.train_step, in_shardings=(rep, data, rep), out_shardings=(rep, rep))
  s1, m1 = step(sharded_state, sharded_batch, jax.random.key(5))
  s0, m0 = single(state, batch, jax.random.key(5), jnp.float32(task.config.loss.gamma))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(s1), jax.tree.leaves(s0)):
    name = jax.tree_util.keystr(path)
    if name.startswith("['d']['net']['out']['bias']"):
      # Under RpGAN real and fake of row i share a condition, so this bias adds the same
      # b.proj(cond_i) to both logits and cancels in D(fake_i) - D(real_i): its gradient is
      # exactly zero, and Adam normalises the float noise. Only check it stays lr-small.
      assert float(jnp.max(jnp.abs(a - b))) <= 2.0 * task.config.optim.lr
      continue
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=name)
  np.testing.assert_allclose(m1["d_loss"], m0["d_loss"], rtol=1e-5)


def test_generator_api_on_task_state(base):
  task, batch, state, _, _, _ = base
  gen = generate_lib.Stage1Generator(task, state["g_ema"])
  bg = batch["clean"][:2]
  out = gen.generate(bg, np.array([0, 1], np.int32), jax.random.key(0))
  assert out["patch"].shape == (2, 8, 8, 3) and out["mask"].shape == (2, 8, 8)
  assert float(out["patch"].min()) >= 0 and float(out["patch"].max()) <= 1
  # float [0, 1] input gives the same result as uint8; larger crops are centre-cropped
  out_f = gen.generate(bg.astype(np.float32) / 255.0, np.array([0, 1]), jax.random.key(0))
  np.testing.assert_allclose(out_f["patch"], out["patch"], atol=1e-5)
  big = np.pad(bg, ((0, 0), (2, 2), (2, 2), (0, 0)))
  out_b = gen.generate(big, np.array([0, 1]), jax.random.key(0))
  np.testing.assert_allclose(out_b["patch"], out["patch"], atol=1e-5)
  # inside vmap, as the multistage synthesizer calls it
  keys = jax.random.split(jax.random.key(1), 2)
  vm = jax.jit(jax.vmap(lambda w, c, k: gen.generate(w[None], c[None], k)))(
      bg, jnp.array([0, 1]), keys)
  assert vm["patch"].shape == (2, 1, 8, 8, 3)
  with pytest.raises(ValueError, match="smaller than the 8px"):
    gen.generate(bg[:, :4, :4], np.array([0, 1]), jax.random.key(0))


def test_a_fresh_run_records_the_classes_it_trains_on():
  """`data.class_ids = ()` resolves, before a fresh run (`Task.resolve_config`, called by the
  trainer), to the classes the training patches hold (the fixture's blobs: 0 and 1 of the
  model's 6), so the saved config and the generator served from it claim only those; the task's
  own config is left as it was; an explicit list is kept as it is."""
  task = Stage1Task(fx.config())
  task.train_set = fx.patch_set(task, 8)
  assert task.class_ids() == tuple(range(6))  # before: a config that says nothing
  resolved_task, resolved = trainer.resolve_config(task, task.config)
  assert resolved.data.class_ids == (0, 1) and resolved_task.class_ids() == (0, 1)
  assert task.config.data.class_ids == () and task.class_ids() == tuple(range(6))
  assert resolved_task.train_set is task.train_set  # what the task built is kept
  assert generate_lib.Stage1Generator(resolved_task, {}).class_ids == (0, 1)
  explicit = Stage1Task(fx.config())
  explicit.config.data.class_ids = (1, 4)
  assert explicit.resolve_config() is explicit.config
  assert explicit.class_ids() == (1, 4)
