"""Hyperparameter grids trained side by side in one compiled program, with `jax.vmap`.

An ablation sweep over the R1/R2 weight gamma (or over seeds) normally costs one compilation
and one process per point. Here the member states are stacked along a leading axis and one
jitted step advances all of them: `vmap(task.step_with)(states, batch, rngs, gammas)`. Every
member sees the same batch (so differences come from the hyperparameter, not the data), its own
init key and its own step rng. A task opts in by exposing
`step_with(state, batch, rng, gamma) -> (state, metrics)` with `gamma` traced (see
`fabgen.stage1.task.Stage1Task`).

On one device the members run as one batched program; on several, shard the leading axis of
the stacked state over a mesh axis (each device trains its own members).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def init(task, seeds: Sequence[int]):
  """Stacked initial states, member i initialised from `jax.random.key(seeds[i])`."""
  keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in seeds])
  return jax.vmap(lambda k: task.init_state(jax.random.wrap_key_data(k)))(keys)


def step_fn(task):
  """jit(vmap(step_with)): (states, batch, rngs [N], gammas [N]) -> (states, metrics [N])."""
  def step(states, batch, rngs, gammas):
    return jax.vmap(task.step_with, in_axes=(0, None, 0, 0))(states, batch, rngs, gammas)
  return jax.jit(step, donate_argnums=0)


def member_rngs(base_rngs: jax.Array, step) -> jax.Array:
  """Per-member step rngs, `fold_in(base_i, step)` as the platform derives them for one run."""
  return jax.vmap(lambda k: jax.random.fold_in(k, step))(base_rngs)


def member(states, i: int):
  """Member i's state out of the stacked states (e.g. to checkpoint or evaluate it alone)."""
  return jax.tree.map(lambda a: a[i], states)
