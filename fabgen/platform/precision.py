"""Mixed precision: compute in bf16, keep parameters and optimizer state in f32.

Tasks take a `Policy` (built from `config.precision`) and cast at the boundary of the forward
pass: parameters and inputs down to `compute_dtype` for the matmuls and convolutions, the loss
back up to f32. Gradients flow back through the cast, so they, the optimizer moments and the
parameter update stay in `param_dtype`; no loss scaling is needed for bf16.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class Policy:
  """Which dtype parameters live in and which one the forward pass computes in."""
  compute_dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  output_dtype: Any = jnp.float32

  @classmethod
  def from_config(cls, precision) -> "Policy":
    """From `config.precision` (`compute_dtype`, `param_dtype` names); errors name the key."""
    def dtype(key):
      name = precision.get(key, "float32")
      if name not in _DTYPES:
        raise ValueError(f"config.precision.{key}={name!r}: use one of {sorted(_DTYPES)}")
      return _DTYPES[name]
    return cls(compute_dtype=dtype("compute_dtype"), param_dtype=dtype("param_dtype"))

  def cast_to_compute(self, tree):
    """Floating leaves -> compute dtype (params and activations entering the network)."""
    return _cast(tree, self.compute_dtype)

  def cast_to_param(self, tree):
    """Floating leaves -> param dtype (fresh parameters, optimizer state)."""
    return _cast(tree, self.param_dtype)

  def cast_to_output(self, tree):
    """Floating leaves -> output dtype (losses and metrics are reduced in f32)."""
    return _cast(tree, self.output_dtype)

  @property
  def is_mixed(self) -> bool:
    """Whether the forward pass computes in a narrower dtype than the parameters live in."""
    return self.compute_dtype != self.param_dtype

  def bind(self, module, params):
    """`module` (a `nnx_bridge.PureModule`) with `params` as a callable under this policy.

    Parameters and floating arguments are cast to `compute_dtype` on the way in (so every
    convolution and matmul inside runs in it), floating outputs to `output_dtype` on the way
    out (so the loss and its reductions are f32). Gradients flow back through both casts, so
    they arrive in the parameters' own dtype. Under an all-f32 policy every cast is a no-op.
    """
    net = module.bind(self.cast_to_compute(params))

    def call(*args, **kwargs):
      args, kwargs = self.cast_to_compute((args, kwargs))
      return self.cast_to_output(net(*args, **kwargs))
    return call

  def apply(self, module, params, *args, **kwargs):
    """`module.apply(params, *args)` under this policy (see `bind`)."""
    return self.bind(module, params)(*args, **kwargs)


def _cast(tree, dtype):
  def cast(x):
    if isinstance(x, jax.Array) or hasattr(x, "dtype"):
      if jnp.issubdtype(x.dtype, jnp.floating):
        return x.astype(dtype)
    return x
  return jax.tree.map(cast, tree)
