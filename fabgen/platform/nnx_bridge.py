"""The one bridge between Flax NNX modules and the platform's pure-dict state.

The platform keeps every task's state as one pytree of arrays (orbax checkpoints it, `jit`
shards it, `vmap` stacks it for grids); NNX modules hold their weights as attributes. A
`PureModule` is built once per architecture (shapes from `nnx.eval_shape`, so it allocates
nothing) and converts both ways: `init(rng)` returns fresh weights as a pure dict, `bind(params)`
returns the module with those weights, `apply(params, *args)` calls it. All three are traceable
inside jit, grad and vmap. `jit_init=True` also keeps a jitted `init`, for architectures whose
Python trace costs seconds (the detector), so repeated inits reuse jit's trace cache.
"""

from __future__ import annotations

from typing import Callable

import jax
from flax import nnx


class PureModule:
  """Pure-function view of an NNX module built by `build(rngs)` (see the module docstring)."""

  def __init__(self, build: Callable[[nnx.Rngs], nnx.Module], jit_init: bool = False):
    self.build = build
    self.graphdef, state = nnx.split(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    self.abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    self._init = jax.jit(self._fresh) if jit_init else self._fresh

  def _fresh(self, rng: jax.Array) -> dict:
    return nnx.to_pure_dict(nnx.state(self.build(nnx.Rngs(params=rng))))

  def init(self, rng: jax.Array) -> dict:
    """Freshly initialised weights as a pure dict (nested dicts of arrays)."""
    return self._init(rng)

  def bind(self, params) -> nnx.Module:
    """The module carrying `params` (a pure dict as `init` returns)."""
    state = jax.tree.map(lambda x: x, self.abstract)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(self.graphdef, state)

  def apply(self, params, *args, **kwargs):
    return self.bind(params)(*args, **kwargs)
