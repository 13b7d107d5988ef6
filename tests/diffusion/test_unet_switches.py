"""U-Net switch: gradient checkpointing (nnx.remat) changes memory and time, not results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fabgen.diffusion import layers as L
from fabgen.diffusion import unet as unet_lib

CFG = dict(block_out_channels=(8, 16), attention_heads=(2, 2), cross_attention=(True, False),
           layers_per_block=1, cross_attention_dim=8, norm_num_groups=4)


def _grads(remat: bool):
  model = unet_lib.UNet2DConditionModel(unet_lib.UNetConfig(**CFG, remat=remat),
                                        rngs=L.KeyGen(0))
  graphdef, params = nnx.split(model)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 9))
  ctx = jax.random.normal(jax.random.key(2), (2, 4, 8))

  @jax.jit
  def loss(params):
    m = nnx.merge(graphdef, params)
    out, amap = m(x, jnp.asarray([3, 700]), ctx,
                  jnp.asarray([1, 2]))
    return jnp.mean(jnp.square(out.astype(jnp.float32))) + jnp.mean(amap.astype(jnp.float32))

  return jax.value_and_grad(loss)(params)


@pytest.mark.e2e  # two eager inits + two gradient compiles: minutes on a loaded 2-core CPU
def test_remat_gives_the_same_loss_and_gradients():
  (l0, g0), (l1, g1) = _grads(False), _grads(True)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g0)
