"""`GridTask`: a grid of GAN runs (gammas x seeds) trained as one platform Task, one program.

An ablation sweep over the R1/R2 weight gamma, or over seeds, normally costs one compilation and
one process per point. With `config.grid.gammas` and/or `config.grid.seeds` set, the registry
(`fabgen.platform.registry.build_task`) builds this wrapper around the config's task, so the
ordinary platform trains the whole grid:
`fabgen train --config configs/stage1.py:tiny,gammas=0.5;1;2 --workdir DIR`, or
`--config.grid.gammas='(0.5,2.0)'` with configs/fusion.py / configs/inpainter.py.

Any GAN task works that has `step_with(state, batch, rng, gamma)` with `gamma` traced, a class
attribute `GRID_GAMMA_KEYS` (the config keys gamma stands for: stage 1's `loss.gamma`, the
fusion network's and the inpainter's `loss.r1_gamma` and `loss.r2_gamma`) and a static
`penalised(config)` (whether gamma weighs anything). Members are the cross product gammas x
seeds (an empty list means the config's single value: the first gamma key, `seed`). Member
(g, s) is exactly the single run with every gamma key = g and `seed=s`: its
init key and per-step rngs are derived from `s` as the trainer derives them for one run, and
it sees the same batches (the input order follows `config.seed`, shared by every member, so the
differences between members come from the hyperparameter, not the data).

State: `{"step": scalar, "members": member states stacked on a leading axis}`, so checkpoints,
resume, NaN stops and sharding go through the trainer unchanged. One step is
`vmap(task.step_with)` over (state, rng, gamma) with the batch shared. Metrics are
reported per member, named `<metric>/<label>` (`g_loss/gamma=0.5`, `d_loss/gamma=1/seed=2`).
The task's evaluation (stage 1: KID, Gram distance, conditioning check, sample grid) runs for
every member, with scalars `eval/<metric>/<label>` and grids in `samples/<label>/`.

Sharding: the member axis goes on the mesh's "data" axis when the member count divides it (each
device trains its own members and sees the whole batch), otherwise members stay replicated and
the batch is data-parallel inside each member. `state_shardings` gives that layout; inside the
step it is imposed with sharding constraints, because the trainer lays the state out from
`config.sharding_rules`, which cannot name "the leading axis of every leaf".

Cost (configs/stage1.py:tiny, batch 8, one CPU device, jit(train_step), mean of 5 steps):
one compile for the whole grid (17 s for 4 members vs 13 s per separate run), but on XLA:CPU the
vmapped step is ~1.3x slower per member than separate steps (238 ms for 4 members vs 4 x 46 ms).
With `loss.lazy_interval > 1` the penalty `cond` sees a per-member step, so under vmap both
branches run every step: lazy regularisation saves nothing inside a grid.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from fabgen.platform import registry
from fabgen.platform import sharding as sharding_lib
from fabgen.platform.task import Task

MEMBER_AXIS = "data"  # the mesh axis members are spread over when their count divides it


def _is_number(x) -> bool:
  return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def grid_members(config: ml_collections.ConfigDict) -> list[tuple[float, int]]:
  """(gamma, seed) per member: the cross product of `grid.gammas` and `grid.seeds`.

  Errors name the config key and the bad value, so a sweep fails before anything compiles.
  """
  g = config.grid
  gammas, seeds = g.get("gammas") or (), g.get("seeds") or ()
  for key, values in (("gammas", gammas), ("seeds", seeds)):
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)):
      raise ValueError(f"config.grid.{key}={values!r}: expected a tuple of numbers, e.g. "
                       f"--config.grid.{key}='(0.5,1.0)'")
    if len(set(values)) != len(values):
      raise ValueError(f"config.grid.{key}={tuple(values)!r} has duplicates (identical members)")
  for v in gammas:
    if not _is_number(v) or not math.isfinite(v) or v < 0:
      raise ValueError(f"config.grid.gammas: {v!r} is not a finite number >= 0 "
                       f"(in {tuple(gammas)!r})")
  for v in seeds:
    if not _is_number(v) or float(v) != int(v) or v < 0:
      raise ValueError(f"config.grid.seeds: {v!r} is not an int >= 0 (in {tuple(seeds)!r})")
  task_cls = registry.get_task_class(config.task)
  if not hasattr(task_cls, "GRID_GAMMA_KEYS"):
    raise ValueError(f"config.grid: task {config.task!r} has no step_with(state, batch, rng, "
                     f"gamma) / GRID_GAMMA_KEYS, so it cannot be trained as a grid")
  if gammas and not task_cls.penalised(config):
    raise ValueError(f"config.grid.gammas={tuple(gammas)!r} sweeps the R1/R2 weight "
                     f"({', '.join(task_cls.GRID_GAMMA_KEYS)}), but this config applies no R1/R2 "
                     f"penalty: every member would be the same run")
  gammas = [float(v) for v in gammas] or [float(_get(config, task_cls.GRID_GAMMA_KEYS[0]))]
  seeds = [int(v) for v in seeds] or [int(config.seed)]
  return [(gm, s) for gm in gammas for s in seeds]


def member_labels(config: ml_collections.ConfigDict) -> list[str]:
  """`gamma=0.5`, `seed=3` or `gamma=0.5/seed=3`: what the grid varies, per member."""
  g = config.grid
  out = []
  for gamma, seed in grid_members(config):
    parts = ([f"gamma={gamma:g}"] if g.get("gammas") else []) + (
        [f"seed={seed}"] if g.get("seeds") else [])
    out.append("/".join(parts))
  return out


def _get(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


def member_config(config: ml_collections.ConfigDict, gamma: float | None = None,
                  seed: int | None = None) -> ml_collections.ConfigDict:
  """`config` without the grid (optionally with one member's gamma and seed): a single run's."""
  c = copy.deepcopy(config)
  keys = registry.get_task_class(config.task).GRID_GAMMA_KEYS if gamma is not None else ()
  with c.unlocked(), c.ignore_type():
    c.grid.gammas, c.grid.seeds = (), ()
    for key in keys:
      *parents, leaf = key.split(".")
      section = _get(c, ".".join(parents)) if parents else c
      section[leaf] = float(gamma)
    if seed is not None:
      c.seed = int(seed)
  return c


class R1R2GridSteps:
  """`train_step` / `step_with` / grid keys of a GAN task whose grid gamma sets R1 and R2 both.

  The fusion and inpainter tasks mix this in and write only `_step(state, batch, rng, r1_gamma,
  r2_gamma)`; R1/R2 apply with the rpgan objective (R3GAN's recipe) only.
  """

  GRID_GAMMA_KEYS = ("loss.r1_gamma", "loss.r2_gamma")  # a grid's gamma sets both

  @staticmethod
  def penalised(config: ml_collections.ConfigDict) -> bool:
    return config.loss.objective == "rpgan"

  def train_step(self, state, batch, rng):
    c = self.config.loss
    return self._step(state, batch, rng, jnp.float32(c.r1_gamma), jnp.float32(c.r2_gamma))

  def step_with(self, state, batch, rng, gamma):
    """`train_step` with R1 and R2 weights both `gamma` (traced): a grid member's step."""
    return self._step(state, batch, rng, gamma, gamma)

  def _step(self, state, batch, rng, r1_gamma, r2_gamma):
    raise NotImplementedError


class GridTask(Task):
  """Stacked members of `task_cls` advanced by one vmapped step (see module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict, task_cls):
    super().__init__(config)
    self.members = grid_members(config)
    self.labels = member_labels(config)
    self.inner = task_cls(member_config(config))

  def resolve_config(self):
    """The inner task's resolved values, with this grid kept."""
    resolved = self.inner.resolve_config()
    if resolved is self.inner.config:
      return self.config
    c = copy.deepcopy(resolved)
    with c.unlocked():
      c.grid = copy.deepcopy(self.config.grid)
    return c

  def with_config(self, config):
    task = super().with_config(config)
    task.inner = self.inner.with_config(member_config(config))
    return task

  @property
  def size(self) -> int:
    return len(self.members)

  def _seed_keys(self):
    """(init keys [N], step base keys [N]): `split(key(seed))` as the trainer does for one run."""
    pairs = [jax.random.split(jax.random.key(s)) for _, s in self.members]
    return jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])

  def _constrain(self, members):
    """Members on the "data" mesh axis when it divides their count (no-op outside a mesh)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.shape.get(MEMBER_AXIS, 1) <= 1 or self.size % mesh.shape[MEMBER_AXIS]:
      return members
    return jax.tree.map(
        lambda x: jax.lax.with_sharding_constraint(x, P(MEMBER_AXIS, *([None] * (x.ndim - 1)))),
        members)

  # ---- Task contract ---------------------------------------------------------------------------

  def init_state(self, rng):
    """Member i from its own seed's init key (the platform's `rng` is that of `config.seed`).

    `lax.map`, not vmap: the init program is compiled once as a loop body (vmapping the
    initialisers doubled the tiny config's init compile, 6 s -> 14 s), and each member's
    weights are bit-identical to its single run's.
    """
    del rng
    init_keys, _ = self._seed_keys()
    members = jax.lax.map(self.inner.init_state, init_keys)
    return {"step": jnp.zeros((), jnp.int32), "members": members}

  def train_step(self, state, batch, rng):
    """vmap(step_with) over (member state, member rng, member gamma); the batch is shared."""
    del rng  # each member's rng is fold_in(its seed's step key, step), as in its single run
    _, step_keys = self._seed_keys()
    rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(step_keys, state["step"])
    gammas = jnp.asarray([g for g, _ in self.members], jnp.float32)
    members = self._constrain(state["members"])
    members, metrics = jax.vmap(self.inner.step_with, in_axes=(0, None, 0, 0))(
        members, batch, rngs, gammas)
    flat = {f"{k}/{label}": v[i] for k, v in metrics.items()
            for i, label in enumerate(self.labels)}
    return {"step": state["step"] + 1, "members": self._constrain(members)}, flat

  def warm_start(self, state):
    """The inner task's `warm_start` applied to every member (e.g. the inpainter's mask bank),
    restacked in the members' own shardings; nothing to do for tasks without one."""
    if type(self.inner).warm_start is Task.warm_start:
      return state
    members = [self.inner.warm_start(self.member(state, i)) for i in range(self.size)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
    shardings = jax.tree.map(lambda x: x.sharding, state["members"])
    return {**state, "members": jax.device_put(stacked, shardings)}

  def dataset(self, process_index, process_count, seed):
    return self.inner.dataset(process_index, process_count, seed)

  def abstract_batch(self):
    return self.inner.abstract_batch()

  def batch_axes(self):
    return self.inner.batch_axes()

  def input_report(self):
    return self.inner.input_report()  # one input feeds every member

  def param_count_tree(self, state):
    """One member's parameters (the grid holds `size` copies of them)."""
    return self.inner.param_count_tree(self.member(state, 0))

  def evaluate(self, state, step, writer, workdir):
    """Every member's evaluation; scalars `eval/<metric>/<label>`, grids per member."""
    host = sharding_lib.to_host(state)
    out = {}
    for i, label in enumerate(self.labels):
      member_dir = os.path.join(workdir, "members", label.replace("/", "_")) if workdir else ""
      scalars = self.inner.evaluate(self.member(host, i), step, _Prefixed(writer, label),
                                    member_dir)
      out.update({f"{k}/{label}": v for k, v in scalars.items()})
    return out

  # ---- grid helpers ----------------------------------------------------------------------------

  @staticmethod
  def member(state, i: int):
    """Member i's single-run state (what its own run would checkpoint) out of the grid state."""
    return jax.tree.map(lambda a: a[i], state["members"])

  def state_shardings(self, abstract_state, mesh: jax.sharding.Mesh, config=None) -> Any:
    """The grid's layout: member axis on "data" when it divides, the rest by the member's rules.

    The trainer does not call this yet (it lays out every task's state from config rules); a
    `Task.state_shardings` hook there would make this the stored layout, so that each device
    holds only its members' parameters and optimizer states.
    """
    config = config or self.config
    member_abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                                   abstract_state["members"])
    inner = sharding_lib.state_specs(member_abstract, mesh, config.get("sharding_rules", ()),
                                     config.get("logical_axis_rules", ()),
                                     config.get("fsdp_min_size", 2 ** 14))
    lead = MEMBER_AXIS if mesh.shape[MEMBER_AXIS] > 1 and self.size % mesh.shape[
        MEMBER_AXIS] == 0 else None
    def spec(s):
      rest = tuple(None if a == lead else a for a in s) if lead else tuple(s)
      return NamedSharding(mesh, P(lead, *rest))
    members = jax.tree.map(spec, inner, is_leaf=lambda x: isinstance(x, P))
    return {"step": NamedSharding(mesh, P()), "members": members}


class _Prefixed:
  """A metric writer whose image keys carry the member label (one sample grid per member)."""

  def __init__(self, writer, label: str):
    self.writer, self.label = writer, label

  def write_images(self, step, images):
    if self.writer is not None:
      self.writer.write_images(step, {f"{k}/{self.label}": v for k, v in images.items()})

  def __getattr__(self, name):
    return getattr(self.writer, name)
