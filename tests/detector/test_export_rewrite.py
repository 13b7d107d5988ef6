"""export_rewrite: the program ONNX export converts computes exactly what the model computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.extend import core as jcore

from fabgen.detector import export_rewrite


@pytest.mark.parametrize("shape,window,strides,padding", [
    ((2, 17, 16, 4), (3, 3), (2, 2), "SAME"),   # the backbone stem's pooling, odd height
    ((1, 9, 12, 3), (2, 2), (2, 2), "VALID"),
    ((1, 8, 8, 2), (3, 2), (1, 3), ((1, 1), (0, 1))),
])
def test_max_over_slices_is_bit_identical_to_max_pool(shape, window, strides, padding):
  x = jax.random.normal(jax.random.key(0), shape)
  x = x.at[0, 0, 0, 0].set(-jnp.inf)  # the padding value itself inside a window
  want = nnx.max_pool(x, window, strides=strides, padding=padding)
  closed = jax.make_jaxpr(lambda v: nnx.max_pool(v, window, strides=strides, padding=padding))(x)
  assert "reduce_window_max" in export_rewrite.primitives(closed)
  new = export_rewrite.rewrite(closed, jax.ShapeDtypeStruct(shape, x.dtype))
  assert "reduce_window_max" not in export_rewrite.primitives(new)
  got = jcore.jaxpr_as_fun(new)(x)[0]
  assert got.shape == want.shape
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_max_over_slices_on_integers():
  x = jax.random.randint(jax.random.key(1), (1, 7, 7, 1), -100, 100, jnp.int32)
  want = jax.lax.reduce_window(x, jnp.iinfo(jnp.int32).min, jax.lax.max, (1, 3, 3, 1),
                               (1, 2, 2, 1), "SAME")
  got = export_rewrite.max_over_slices(x, (1, 3, 3, 1), (1, 2, 2, 1),
                                       ((0, 0), (1, 1), (1, 1), (0, 0)), (1,) * 4, (1,) * 4)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_rewrite_inlines_calls_and_keeps_the_numbers():
  @jax.jit
  def inner(v):
    return jax.nn.relu(v) + nnx.max_pool(v, (3, 3), strides=(2, 2), padding="SAME").mean()

  def fn(v):
    return jax.checkpoint(lambda u: inner(u) * 2.0)(v), jnp.stack([v.sum(), v.max()])

  x = jax.random.normal(jax.random.key(2), (1, 6, 6, 2))
  spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
  new = export_rewrite.rewrite(jax.make_jaxpr(fn)(x), spec)
  prims = export_rewrite.primitives(new)
  assert not prims & {"pjit", "jit", "custom_jvp_call", "checkpoint", "remat", "remat2",
                      "reduce_window_max", "stack"}
  for got, want in zip(jcore.jaxpr_as_fun(new)(x), fn(x)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_unrewritable_form_is_named():
  with pytest.raises(NotImplementedError, match="base_dilation"):
    export_rewrite.max_over_slices(jnp.zeros((4, 4)), (2, 2), (1, 1), ((0, 0), (0, 0)),
                                   (2, 1), (1, 1))
