"""`model.remat` recomputes R3GAN blocks in the backward pass and in its derivative.

The R1 penalty's double backward (the gradient of ||dD/dx||^2 with respect to D's parameters)
is the GAN step's memory peak. With remat it must equal the plain one to float rounding, and the
program must really recompute: every block's forward and VJP sit in checkpoints (their
optimization barriers are in the lowered HLO). XLA:CPU's memory analysis shows no saving from it
(README, Scale section: the CPU scheduler keeps the recomputed values live), so the memory claim
is the TPU topology compile's, not this test's.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fabgen.nn import r3gan


def _r1_grad_fn(remat):
  d = r3gan.Discriminator((16, 16, 16), blocks=2, in_channels=4, expansion=2, group_width=8,
                          impl="einsum", remat=remat, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(d)

  def r1_of_params(p, x):
    f = lambda x: jnp.sum(nnx.merge(graphdef, p)(x))  # noqa: E731
    return jnp.mean(jnp.sum(jax.grad(f)(x) ** 2, axis=(1, 2, 3)))

  return jax.jit(jax.grad(r1_of_params)), params


def test_remat_keeps_the_r1_gradient_and_cuts_temporaries():
  x = jax.random.normal(jax.random.key(1), (8, 16, 16, 4))
  plain_fn, params = _r1_grad_fn(False)
  remat_fn, params_r = _r1_grad_fn(True)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_r)):
    np.testing.assert_array_equal(a, b)  # same parameters, same paths
  plain, remat = plain_fn(params, x), remat_fn(params, x)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(plain)) > 0
  barriers = lambda fn: fn.lower(params, x).as_text().count("optimization_barrier")  # noqa: E731
  assert barriers(plain_fn) == 0 and barriers(remat_fn) >= 6  # 6 blocks, forward and VJP
