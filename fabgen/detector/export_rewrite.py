"""The detector's program in primitives every ONNX runtime reads, computing the same numbers.

Converters translate a JAX program primitive by primitive. A few primitives have an ONNX
counterpart that a runtime refuses in the form the converter writes (onnxruntime rejects the
MaxPool jax2onnx 0.17 emits for `reduce_window_max` with -inf SAME padding). Rather than keep a
second, export-only copy of the model, we re-trace the traced program and replace those
primitives by compositions of plain ones that give bit-identical results:

  reduce_window_max   pad with the reduction's identity, then an elementwise max over the
                      window's strided slices (max is exact, so the order does not matter).
  stack               expand_dims of each operand + concatenate (jax >= 0.9 has a `stack`
                      primitive; jax2onnx 0.13 has no plugin for it, and data movement is exact).

Nested calls (`jit`, `custom_jvp_call`, `custom_vjp_call`, remat) are inlined on the way, so the
converter sees one flat program; inference never differentiates, so custom derivative rules are
dropped, not changed. `primitives(jaxpr)` lists what a program uses, for naming unsupported ones.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jcore


def max_over_slices(x: jax.Array, window_dimensions: Sequence[int],
                    window_strides: Sequence[int], padding: Sequence[tuple[int, int]],
                    base_dilation: Sequence[int], window_dilation: Sequence[int]) -> jax.Array:
  """`lax.reduce_window(x, -inf, lax.max, ...)` as pad + max of strided slices (bit-identical)."""
  if any(d != 1 for d in base_dilation):
    raise NotImplementedError(f"reduce_window_max with base_dilation {tuple(base_dilation)}")
  if jnp.issubdtype(x.dtype, jnp.floating):
    lowest = jnp.array(-jnp.inf, x.dtype)
  else:
    lowest = jnp.array(jnp.iinfo(x.dtype).min, x.dtype)
  padded = lax.pad(x, lowest, [(lo, hi, 0) for lo, hi in padding])
  out_shape = [(n - ((w - 1) * d + 1)) // s + 1 for n, w, d, s in
               zip(padded.shape, window_dimensions, window_dilation, window_strides)]
  result = None
  for offset in itertools.product(*[range(w) for w in window_dimensions]):
    start = [o * d for o, d in zip(offset, window_dilation)]
    limit = [b + (m - 1) * s + 1 for b, m, s in zip(start, out_shape, window_strides)]
    part = lax.slice(padded, start, limit, window_strides)
    result = part if result is None else lax.max(result, part)
  return result


def stack_by_concatenate(*values: jax.Array, axis: int) -> jax.Array:
  """The `stack` primitive (jax >= 0.9) as expand_dims + concatenate (exact data movement)."""
  return lax.concatenate([lax.expand_dims(v, (axis,)) for v in values], axis)


REWRITES: dict[str, Callable[..., Any]] = {
    "stack": lambda *values, axis, **_: stack_by_concatenate(*values, axis=axis),
    "reduce_window_max": lambda x, **p: max_over_slices(
        x, p["window_dimensions"], p["window_strides"], p["padding"], p["base_dilation"],
        p["window_dilation"]),
}

# Call-like primitives whose body is inlined; the value is the parameter holding the body.
_INLINE = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr",
           "core_call": "call_jaxpr", "custom_jvp_call": "call_jaxpr",
           "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
           "remat": "jaxpr", "remat2": "jaxpr", "checkpoint": "jaxpr"}


def _eval(jaxpr, consts, args):
  env: dict[Any, Any] = {}

  def read(v):
    return v.val if isinstance(v, jcore.Literal) else env[v]

  for var, val in zip(jaxpr.constvars, consts):
    env[var] = val
  for var, val in zip(jaxpr.invars, args):
    env[var] = val
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name in REWRITES:
      outs = REWRITES[name](*invals, **eqn.params)
    elif name in _INLINE and _INLINE[name] in eqn.params:
      body = eqn.params[_INLINE[name]]
      if isinstance(body, jcore.ClosedJaxpr):
        outs = _eval(body.jaxpr, body.consts, invals)
      else:  # an open jaxpr (remat): its constants are among the inputs already
        outs = _eval(body, [], invals)
    else:
      outs = eqn.primitive.bind(*invals, **eqn.params)
    if not eqn.primitive.multiple_results and name not in _INLINE:
      outs = [outs]
    for var, val in zip(eqn.outvars, outs):
      if not isinstance(var, jcore.DropVar):
        env[var] = val
  return [read(v) for v in jaxpr.outvars]


def rewrite(closed: jcore.ClosedJaxpr, *specs: jax.ShapeDtypeStruct) -> jcore.ClosedJaxpr:
  """`closed` re-traced flat, with `REWRITES` applied; same inputs, same outputs."""
  return jax.make_jaxpr(lambda *args: tuple(_eval(closed.jaxpr, closed.consts, args)))(*specs)


def primitives(jaxpr) -> set[str]:
  """Names of all primitives in `jaxpr` (a Jaxpr or ClosedJaxpr), nested bodies included."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for sub in _params_jaxprs(eqn.params):
      names |= primitives(sub)
  return names


def _params_jaxprs(params):
  for value in params.values():
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
      if isinstance(v, (jcore.ClosedJaxpr, jcore.Jaxpr)):
        yield v
