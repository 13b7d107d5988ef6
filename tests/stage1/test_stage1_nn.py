"""R3GAN building blocks: the grouped-conv fast path equals XLA's (values, gradients, second
derivatives), resampling is the [1,2,1] filter, and blocks/trunks have the fix-up properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.nn import grouped_conv as gc
from fabgen.nn import r3gan
from fabgen.nn import resample
from fabgen.platform import nnx_bridge

jax.config.update("jax_enable_x64", False)


def _data(groups=4, cin_g=4, cout_g=3, b=2, s=6, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(k1, (b, s, s, groups * cin_g))
  w = jax.random.normal(k2, (3, 3, cin_g, groups * cout_g))
  return x, w


@pytest.mark.parametrize("impl", ["custom", "einsum", "auto"])
def test_grouped_conv_values_and_grads_match_xla(impl):
  x, w = _data()
  g = 4
  ref = gc.xla_conv(x, w, g)
  out = gc.grouped_conv(x, w, g, impl)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(jax.random.key(3), ref.shape)
  f_ref = lambda x, w: jnp.sum(gc.xla_conv(x, w, g) * cot)
  f = lambda x, w: jnp.sum(gc.grouped_conv(x, w, g, impl) * cot)
  for a, b in zip(jax.grad(f, (0, 1))(x, w), jax.grad(f_ref, (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_grouped_conv_second_order_matches_xla():
  """R1/R2 differentiate the input gradient w.r.t. the weights: that must match XLA too."""
  x, w = _data(seed=1)
  g = 4

  def penalty(conv, w):
    gx = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w, g))))(x)
    return jnp.sum(gx ** 2)

  ref = jax.grad(lambda w: penalty(gc.xla_conv, w))(w)
  got = jax.grad(lambda w: penalty(gc.custom_conv, w))(w)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
  # and the input-gradient chain (grad of the penalty w.r.t. x)
  pen_x = lambda conv: jax.grad(lambda x: jnp.sum(jax.grad(
      lambda x: jnp.sum(jnp.tanh(conv(x, w, g))))(x) ** 2))(x)
  np.testing.assert_allclose(pen_x(gc.custom_conv), pen_x(gc.xla_conv), rtol=1e-4, atol=1e-4)


def test_grouped_conv_auto_picks_custom_on_cpu_and_rejects_bad_input():
  assert gc.default_impl("cpu") == "custom"
  assert gc.default_impl("gpu") == "xla" and gc.default_impl("tpu") == "xla"
  x, w = _data()
  with pytest.raises(ValueError, match="groups=3"):
    gc.grouped_conv(x, w, 3)
  with pytest.raises(ValueError, match="impl='fast'"):
    gc.grouped_conv(x, w, 4, "fast")


def test_resample_is_the_121_filter():
  x = jnp.arange(8.0).reshape(1, 8, 1, 1) * jnp.ones((1, 1, 2, 1))
  d = resample.downsample2x(x)[0, :, 0, 0]
  xs = np.arange(8.0)
  expect = [(xs[max(2 * i - 1, 0)] + 2 * xs[2 * i] + xs[2 * i + 1]) / 4 for i in range(4)]
  np.testing.assert_allclose(d, expect)
  u = resample.upsample2x(jnp.arange(4.0).reshape(1, 4, 1, 1))[0, :, 0, 0]
  np.testing.assert_allclose(u, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3])
  # a constant stays constant (no energy lost at borders)
  c = jnp.ones((1, 8, 8, 2))
  np.testing.assert_allclose(resample.downsample2x(c), 1.0)
  np.testing.assert_allclose(resample.upsample2x(c), 1.0)
  assert resample.resize_to(c, 2).shape == (1, 2, 2, 2)
  with pytest.raises(ValueError, match="even"):
    resample.downsample2x(jnp.ones((1, 5, 4, 1)))


def test_residual_block_starts_as_identity_and_learns():
  f = nnx_bridge.PureModule(lambda rngs: r3gan.ResidualBlock(8, 2, group_width=4, rngs=rngs))
  p = f.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (2, 4, 4, 8))
  np.testing.assert_allclose(f.apply(p, x), x)
  grads = jax.grad(lambda p: jnp.sum(f.apply(p, x) ** 2))(p)
  assert float(jnp.abs(grads["project"]["kernel"]).sum()) > 0  # zero-init conv still learns
  assert p["spatial"]["kernel"].shape == (3, 3, 4, 16)          # group width 4 -> 4 groups


def test_generator_and_discriminator_shapes_conditioning_and_extra_inputs():
  g = nnx_bridge.PureModule(lambda rngs: r3gan.Generator(
      8, (16, 16, 8), blocks=(1, 1, 2), out_channels=4, group_width=8, cond_dim=6,
      extra_channels=3, rngs=rngs))
  d = nnx_bridge.PureModule(lambda rngs: r3gan.Discriminator(
      (8, 16, 16), blocks=1, in_channels=3, group_width=8, cond_dim=6, extra_channels=1,
      rngs=rngs))
  pg, pd = g.init(jax.random.key(0)), d.init(jax.random.key(1))
  z = jax.random.normal(jax.random.key(2), (3, 8))
  cond = jax.random.normal(jax.random.key(3), (3, 6))
  extra = jax.random.uniform(jax.random.key(4), (3, 16, 16, 3))
  img = g.apply(pg, z, cond, extra)
  assert img.shape == (3, 16, 16, 4)
  logits = d.apply(pd, img[..., :3], cond, img[..., 3:])
  assert logits.shape == (3,)
  # the condition changes D's output (projection) and G's output (embedding)
  assert not np.allclose(d.apply(pd, img[..., :3], -cond, img[..., 3:]), logits)
  assert not np.allclose(g.apply(pg, z, -cond, extra), img)
  with pytest.raises(ValueError, match="needs a condition"):
    g.apply(pg, z)
  with pytest.raises(ValueError, match="16px"):
    d.apply(pd, img[:, :8, :8, :3], cond)


def test_fixup_init_makes_every_generator_block_start_as_identity():
  g = nnx_bridge.PureModule(lambda rngs: r3gan.Generator(
      8, (16, 16), blocks=3, group_width=8, rngs=rngs))
  p = g.init(jax.random.key(0))
  z = jax.random.normal(jax.random.key(1), (4, 8))
  out = g.apply(p, z)
  # scrambling every block's expand/spatial weights changes nothing while `project` is zero
  scrambled = jax.tree_util.tree_map_with_path(
      lambda path, a: a * 7.0 + 1.0 if "project" not in str(path) and "trunk" in str(path) else a,
      p)
  np.testing.assert_allclose(g.apply(scrambled, z), out, rtol=1e-6)
  # fix-up scale: block convs are He-initialised times L^(-1/4), L = 6 blocks here
  k = p["trunk"]["s0_b0"]["expand"]["kernel"]
  he = np.sqrt(2 / 1.04) / np.sqrt(16)
  np.testing.assert_allclose(np.std(k), he * 6 ** -0.25, rtol=0.15)


def test_fast_path_never_emits_xlas_grouped_weight_gradient():
  """XLA lowers a grouped conv's weight gradient as a conv with batch_group_count = groups,
  the op that is pathologically slow on XLA:CPU. The custom path (first and second order, as
  R1/R2 need) must not contain it; the reference path does, so the check can fail."""
  import re
  g = 4
  x, w = jnp.ones((2, 6, 6, 16)), jnp.ones((3, 3, 4, 16))

  def penalty_grad(conv):
    def f(w):
      gx = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w, g))))(x)
      return jnp.sum(gx ** 2)
    return jax.jit(jax.grad(f)).lower(w).as_text()

  def grouped_weight_grads(text):
    return [int(n) for n in re.findall(r"batch_group_count = (\d+)", text) if int(n) > 1]

  assert grouped_weight_grads(penalty_grad(gc.xla_conv))
  assert not grouped_weight_grads(penalty_grad(gc.custom_conv))
  first = jax.jit(jax.grad(lambda w: jnp.sum(gc.custom_conv(x, w, g) ** 2))).lower(w).as_text()
  assert not grouped_weight_grads(first)
