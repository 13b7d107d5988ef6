"""The one bridge between Flax NNX modules and the platform's pure-dict state.

The platform keeps every task's state as one pytree of arrays (orbax checkpoints it, `jit`
shards it, `vmap` stacks it for grids); NNX modules hold their weights as attributes. A
`PureModule` is built once per architecture (shapes from `nnx.eval_shape`, so it allocates
nothing) and converts both ways: `init(rng)` returns fresh weights as a pure dict, `bind(params)`
returns the module with those weights, `apply(params, *args)` calls it. All three are traceable
inside jit, grad and vmap. `jit_init=True` also keeps a jitted `init`, for architectures whose
Python trace costs seconds (the detector), so repeated inits reuse jit's trace cache.

`key_stream=True` builds with a `KeyStream` instead of `nnx.Rngs`: an Rngs counter is a
Variable whose every update under `eval_shape`/`jit` is traced, and for deep models that trace
dominates (`python -m benchmarks.bench_nnx_trace --variant sd2`: SD-2 U-Net `eval_shape` 32.9 s vs
7.8 s, traced init 35.8 s vs 3.4 s; tiny U-Net init 3.1 s vs 0.7 s). Modules built this way
call `rngs()` (or `rngs.params()`) for each key.
"""

from __future__ import annotations

from typing import Callable

import jax
from flax import nnx


class KeyStream:
  """A plain-Python key stream for parameter init: the n-th call returns fold_in(key, n).

  Deterministic like `nnx.Rngs` but its counter is a Python int, so it adds nothing to a trace.
  """

  def __init__(self, key):
    self.key = jax.random.key(key) if isinstance(key, int) else key
    self.count = 0

  def __call__(self) -> jax.Array:
    self.count += 1
    return jax.random.fold_in(self.key, self.count)

  params = __call__


class PureModule:
  """Pure-function view of an NNX module built by `build(rngs)` (see the module docstring)."""

  def __init__(self, build: Callable[[nnx.Rngs], nnx.Module], jit_init: bool = False,
               key_stream: bool = False):
    self.build = build
    self._rngs = KeyStream if key_stream else (lambda key: nnx.Rngs(params=key))
    shape_rngs = KeyStream if key_stream else nnx.Rngs
    self.graphdef, state = nnx.split(nnx.eval_shape(lambda: build(shape_rngs(0))))
    self.abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    self._init = jax.jit(self._fresh) if jit_init else self._fresh

  def _fresh(self, rng: jax.Array) -> dict:
    return nnx.to_pure_dict(nnx.state(self.build(self._rngs(rng))))

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
