"""A stage-1 grid (config.grid.gammas / seeds) trained by `fabgen train`'s trainer: each member
equals its own single run, resume equals uninterrupted, bad grid values name their key."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from fabgen.gan import grid_task
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import config as config_lib
from fabgen.platform import mesh as mesh_lib
from fabgen.platform import registry
from fabgen.platform import trainer
from fabgen.stage1.task import Stage1Task

import stage1_fixtures as fx

GAMMAS = (0.5, 2.0)
STEPS = 3
# configs/stage1.py:tiny shrunk like stage1_fixtures.config (8px patches, 2-stage nets, 2 taps);
# schedules fixed to 3 steps so that a run stopped early and resumed has the same schedule.
SMALL = ["patch_size=8", "batch_size=4", "model.g_widths=(16,8)", "model.d_widths=(8,16)",
         "model.noise_dim=8", "model.embed_dim=16", "model.gram_dim=16", "model.cond_hidden=32",
         "condition.taps=('relu1_1','relu2_1')", "condition.features_checkpoint=",
         "eval.kid_samples=8", "eval.batch=8",
         "eval.num_fabrics=2", "eval.num_draws=2", f"optim.schedule_steps={STEPS}",
         "checkpoint.every_steps=1", "checkpoint.asynchronous=False", "log_every_steps=1",
         "data_prefetch=0", "data.max_records=12"]


def _write_generic_set(folder: str) -> str:
  """stage1_fixtures' blob records as a generic-layout folder (reads in ms, unlike FabricSim)."""
  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
  for i, rec in enumerate(fx.records(12)):
    cls = int(rec["instance_class"][0])
    Image.fromarray(rec["image"]).save(os.path.join(folder, "images", f"r{i:02d}.png"))
    mask = (rec["instance_mask"] == 1).astype(np.uint8) * (cls + 1)
    Image.fromarray(mask).save(os.path.join(folder, "masks", f"r{i:02d}.png"))
  with open(os.path.join(folder, "classes.json"), "w") as f:
    json.dump(["color_spot", "oil_stain"], f)
  return folder


def _config(data, arg="", steps=STEPS, extra=()):
  return config_lib.get(f"configs/stage1.py:tiny{arg}",
                        SMALL + [f"data.source={data}", f"total_steps={steps}", *extra])


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if any(k.startswith("train/") for k in r)]


def _state(workdir, step):
  """The state saved at `step` (a grid's or a single run's: the registry builds the task)."""
  return jax.device_get(checkpoint_lib.restore(workdir, step)[2])


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
  """(data folder, grid config, workdir) of an uninterrupted 2-member gamma grid on one device."""
  root = tmp_path_factory.mktemp("grid")
  data = _write_generic_set(str(root / "data"))
  config = _config(data, ",gammas=0.5;2")
  workdir = str(root / "grid")
  result = trainer.train(config, workdir, devices=jax.devices()[:1])
  assert result["step"] == STEPS
  return data, config, workdir


@pytest.mark.slow  # ~45 s with a warm XLA cache (3 trainer runs), ~100 s cold, on 2 CPU cores
def test_grid_members_equal_separate_single_runs(grid_run, tmp_path, monkeypatch):
  data, config, workdir = grid_run
  monkeypatch.setattr(Stage1Task, "evaluate", lambda *a: {})  # the grid run's evals suffice
  rows = _metrics(workdir)
  assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
  for gamma in GAMMAS:
    label = f"gamma={gamma:g}"
    single_dir = str(tmp_path / label)
    single_config = _config(data, f",gamma={gamma}")
    trainer.train(single_config, single_dir, devices=jax.devices()[:1])
    single_rows = _metrics(single_dir)
    # zip() below stops at the shorter list: both runs must have logged every step.
    assert [r["step"] for r in single_rows] == [r["step"] for r in rows], label
    for grid_row, single_row in zip(rows, single_rows):
      for k in ("d_loss", "g_loss", "r1", "r2", "gamma", "grad_norm/d", "grad_norm/g"):
        np.testing.assert_allclose(grid_row[f"train/{k}/{label}"], single_row[f"train/{k}"],
                                   rtol=1e-4, atol=1e-6, err_msg=f"{k} {label}")
    # After one step the member's whole state (G, D, EMA, Adam) is its single run's. (Later,
    # Adam's normalisation of near-zero gradients amplifies float reassociation noise between
    # the vmapped and the plain program, so later steps are compared through their losses.)
    member = grid_task.GridTask.member(_state(workdir, 1), GAMMAS.index(gamma))
    single = _state(single_dir, 1)
    jax.tree_util.tree_map_with_path(
        lambda p, a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(p)),
        member, single)
    # each member is evaluated: its own scalars and its own sample grid
    assert os.path.getsize(os.path.join(workdir, "members", label, "samples",
                                        f"grid_{STEPS:07d}.png")) > 0
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    evals = [r for r in map(json.loads, f) if "eval/kid/gamma=0.5" in r]
  assert evals and "eval/cond_check/gamma=2" in evals[-1]


@pytest.mark.slow
def test_grid_resume_equals_uninterrupted(grid_run, tmp_path, monkeypatch):
  """From the uninterrupted run's step-1 checkpoint (what a run stopped there leaves behind)."""
  _, config, workdir = grid_run
  monkeypatch.setattr(grid_task.GridTask, "evaluate", lambda *a: {})
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  for step in range(2, STEPS + 1):
    shutil.rmtree(os.path.join(resumed, "checkpoints", str(step)))
  rows = _metrics(workdir)
  with open(os.path.join(resumed, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows[:1])
  assert trainer.train(config, resumed, devices=jax.devices()[:1])["step"] == STEPS
  np.testing.assert_equal(_state(resumed, STEPS), _state(workdir, STEPS))
  assert _metrics(resumed) == rows


def test_grid_spellings_and_bad_values_name_the_key(tmp_path):
  c = config_lib.get("configs/stage1.py:tiny,gammas=0.5;2", ["grid.seeds=(3,4)"])
  assert c.grid.gammas == (0.5, 2.0) and c.grid.seeds == (3, 4)
  assert grid_task.grid_members(c) == [(0.5, 3), (0.5, 4), (2.0, 3), (2.0, 4)]
  assert grid_task.member_labels(c)[1] == "gamma=0.5/seed=4"
  seeds_only = config_lib.get("configs/stage1.py:tiny", ["grid.seeds=(1,2)"])
  assert grid_task.member_labels(seeds_only) == ["seed=1", "seed=2"]
  assert grid_task.grid_members(seeds_only) == [(1.0, 1), (1.0, 2)]  # tiny's loss.gamma
  no_grid = config_lib.get("configs/stage1.py:tiny")
  assert type(registry.build_task(no_grid)) is Stage1Task
  with pytest.raises(ValueError, match="gammas=.*'x' is not a number"):
    config_lib.get("configs/stage1.py:tiny,gammas=0.5;x")
  with pytest.raises(ValueError, match="seeds=.*'1.5' is not an int"):
    config_lib.get("configs/stage1.py:tiny,seeds=1;1.5")
  bad = {"grid.gammas=(0.5,-1.0)": r"config.grid.gammas: -1.0 is not a finite number >= 0",
         "grid.gammas=(1.0,1.0)": r"config.grid.gammas=\(1.0, 1.0\) has duplicates",
         "grid.seeds=(0,2.5)": r"config.grid.seeds: 2.5 is not an int",
         "grid.gammas=('a',)": r"config.grid.gammas: 'a' is not a finite number"}
  for override, message in bad.items():
    with pytest.raises(ValueError, match=message):
      registry.build_task(config_lib.get("configs/stage1.py:tiny", [override]))
  with pytest.raises(ValueError, match="config.grid.gammas=.*applies no R1/R2 penalty"):
    registry.build_task(config_lib.get("configs/stage1.py:tiny,gammas=1;2,r1=False,r2=False"))


def test_grid_state_puts_members_on_the_data_axis_when_it_divides():
  config = fx.config()
  config.grid.gammas = (0.5, 1.0, 2.0, 4.0)
  task = registry.build_task(config)
  abstract = jax.eval_shape(task.init_state, jax.random.key(0))
  leaves = jax.tree.leaves(abstract["members"])
  assert all(x.shape[0] == 4 for x in leaves)
  for data, lead in ((4, "data"), (2, "data"), (8, None)):
    mesh = mesh_lib.make_mesh({"data": data, "fsdp": 8 // data}, jax.devices()[:8])
    shardings = task.state_shardings(abstract, mesh)
    specs = {s.spec[0] if len(s.spec) else None for s in jax.tree.leaves(shardings["members"])}
    assert specs == {lead}, (data, specs)
