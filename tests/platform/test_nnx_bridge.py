"""The one NNX bridge: pure-dict init/bind/apply with nnx.Rngs or the plain key stream."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fabgen.platform import nnx_bridge


class _Net(nnx.Module):
  """Two layers drawing keys the way the diffusion layers do (`rngs()` per key)."""

  def __init__(self, rngs):
    self.w1 = nnx.Param(jax.random.normal(rngs(), (3, 4)))
    self.w2 = nnx.Param(jax.random.normal(rngs.params(), (4, 2)))

  def __call__(self, x):
    return jnp.tanh(x @ self.w1[...]) @ self.w2[...]


def test_key_stream_init_is_deterministic_traceable_and_draws_distinct_keys():
  net = nnx_bridge.PureModule(_Net, key_stream=True)
  eager = net.init(jax.random.key(1))
  traced = jax.jit(net.init)(jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, eager, traced)
  other = net.init(jax.random.key(2))
  assert not np.allclose(eager["w1"], other["w1"])
  # fold_in(key, 1) and fold_in(key, 2): the two layers get different keys.
  np.testing.assert_array_equal(
      eager["w1"], jax.random.normal(jax.random.fold_in(jax.random.key(1), 1), (3, 4)))
  np.testing.assert_array_equal(
      eager["w2"], jax.random.normal(jax.random.fold_in(jax.random.key(1), 2), (4, 2)))
  assert jax.tree.map(lambda a: (a.shape, a.dtype), net.abstract) == jax.tree.map(
      lambda a: (a.shape, a.dtype), eager)


def test_apply_runs_the_module_with_the_given_weights_under_grad():
  net = nnx_bridge.PureModule(_Net, key_stream=True)
  params = net.init(jax.random.key(0))
  x = jnp.ones((5, 3))
  want = jnp.tanh(x @ params["w1"]) @ params["w2"]
  np.testing.assert_allclose(net.apply(params, x), want, rtol=1e-6)
  g = jax.grad(lambda p: jnp.sum(net.apply(p, x)))(params)
  assert float(jnp.abs(g["w2"]).sum()) > 0


def test_rngs_bridge_is_unchanged():
  net = nnx_bridge.PureModule(lambda rngs: nnx.Linear(3, 2, rngs=rngs))
  a = net.init(jax.random.key(3))
  want = nnx.state(nnx.Linear(3, 2, rngs=nnx.Rngs(params=jax.random.key(3))))
  jax.tree.map(np.testing.assert_array_equal, a, nnx.to_pure_dict(want))
