"""R3GAN building blocks: the grouped-conv fast path equals XLA's (values, gradients, second
derivatives), resampling is R3GAN's [1,3,3,1] filter half-pixel centred, and blocks/trunks
have the published structure: biases only in the biased activations, fix-up and gain-1 inits."""


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


@pytest.mark.parametrize("impl", ["custom", "einsum", "matmul", "per_group", "auto"])
def test_grouped_conv_values_and_grads_match_xla(impl):
  x, w = _data(s=32 if impl == "per_group" else 6)  # per_group's dense path starts at 32 x 32
  g = 4
  ref = gc.xla_conv(x, w, g)
  out = gc.grouped_conv(x, w, g, impl)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(jax.random.key(3), ref.shape)
  f_ref = lambda x, w: jnp.sum(gc.xla_conv(x, w, g) * cot)
  f = lambda x, w: jnp.sum(gc.grouped_conv(x, w, g, impl) * cot)
  for a, b in zip(jax.grad(f, (0, 1))(x, w), jax.grad(f_ref, (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("conv", [gc.custom_conv, gc.matmul_conv, gc.per_group_conv],
                         ids=["custom", "matmul", "per_group"])
def test_grouped_conv_second_order_matches_xla(conv):
  """R1/R2 differentiate the input gradient w.r.t. the weights: that must match XLA too."""
  x, w = _data(seed=1)
  g = 4

  def penalty(conv, w):
    gx = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w, g))))(x)
    return jnp.sum(gx ** 2)

  ref = jax.grad(lambda w: penalty(gc.xla_conv, w))(w)
  got = jax.grad(lambda w: penalty(conv, w))(w)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(ref))))
  # and the input-gradient chain (grad of the penalty w.r.t. x)
  pen_x = lambda conv: jax.grad(lambda x: jnp.sum(jax.grad(
      lambda x: jnp.sum(jnp.tanh(conv(x, w, g))))(x) ** 2))(x)
  np.testing.assert_allclose(pen_x(conv), pen_x(gc.xla_conv), rtol=1e-4, atol=1e-4)


def test_grouped_conv_auto_picks_by_backend_and_allocator_and_rejects_bad_input(monkeypatch):
  monkeypatch.delenv("FABGEN_CPU_ALLOCATOR", raising=False)
  assert gc.default_impl("cpu") == "custom"
  assert gc.default_impl("gpu") == "xla" and gc.default_impl("tpu") == "xla"
  monkeypatch.setenv("FABGEN_CPU_ALLOCATOR", "/usr/lib/libtcmalloc_minimal.so.4")
  assert gc.default_impl("cpu") == "per_group"  # per-call mallocs are cheap under tcmalloc
  assert gc.default_impl("gpu") == "xla"
  x, w = _data()
  with pytest.raises(ValueError, match="groups=3"):
    gc.grouped_conv(x, w, 3)
  with pytest.raises(ValueError, match="impl='fast'"):
    gc.grouped_conv(x, w, 4, "fast")


def test_resample_is_r3gans_1331_filter_half_pixel_centred():
  xs = np.arange(8.0)
  ramp = jnp.asarray(xs).reshape(1, 8, 1, 1) * jnp.ones((1, 1, 2, 1))
  d = np.asarray(resample.downsample2x(ramp)[0, :, 0, 0])
  # interior: (x[2i-1] + 3x[2i] + 3x[2i+1] + x[2i+2]) / 8, which on a ramp is exactly the
  # half-pixel centre 2i + 1/2 (the old [1,2,1]-at-even filter gave 2i - 1/4 ... a shift)
  expect = [(xs[2 * i - 1] + 3 * xs[2 * i] + 3 * xs[2 * i + 1] + xs[2 * i + 2]) / 8
            for i in range(1, 3)]
  np.testing.assert_allclose(d[1:3], expect)
  np.testing.assert_allclose(d[1:3], [2.5, 4.5])
  # upsampling a ramp puts output pixel j at input coordinate (j - 1/2) / 2
  u = np.asarray(resample.upsample2x(jnp.arange(4.0).reshape(1, 4, 1, 1))[0, :, 0, 0])
  np.testing.assert_allclose(u[1:7], (np.arange(1, 7) - 0.5) / 2)
  # a constant stays constant at every scale (edge-replicated borders)
  c = jnp.ones((1, 8, 8, 2))
  np.testing.assert_allclose(resample.downsample2x(c), 1.0)
  np.testing.assert_allclose(resample.upsample2x(c), 1.0)
  assert resample.resize_to(c, 2).shape == (1, 2, 2, 2)
  with pytest.raises(ValueError, match="even"):
    resample.downsample2x(jnp.ones((1, 5, 4, 1)))


def test_resample_up_is_four_times_the_adjoint_of_down_in_the_interior():
  """upfirdn2d's relation: <down(x), y> = <x, up(y)> / 4 (borders excluded: x vanishes on a
  2-pixel frame, y on a 1-pixel one, where the edge replication would enter)."""
  kx, ky = jax.random.split(jax.random.key(0))
  x = jnp.pad(jax.random.normal(kx, (2, 12, 12, 3)), ((0, 0), (2, 2), (2, 2), (0, 0)))
  y = jnp.pad(jax.random.normal(ky, (2, 6, 6, 3)), ((0, 0), (1, 1), (1, 1), (0, 0)))
  lhs = jnp.sum(resample.downsample2x(x) * y)
  rhs = jnp.sum(x * resample.upsample2x(y)) / 4
  np.testing.assert_allclose(lhs, rhs, rtol=1e-5)
  # and the 2D kernel is the outer product of [1, 3, 3, 1] / 8: an impulse shows it
  impulse = jnp.zeros((1, 8, 8, 1)).at[0, 4, 4, 0].set(1.0)
  k1 = np.array([1, 3, 3, 1]) / 8
  response = np.asarray(resample.downsample2x(impulse))[0, :, :, 0]
  expect = np.zeros((4, 4))
  taps = {1: k1[3], 2: k1[1]}  # output 1 sees x[4] as its x[2i+2]; output 2 as its x[2i]
  for i, wi in taps.items():
    for j, wj in taps.items():
      expect[i, j] = wi * wj
  np.testing.assert_allclose(response, expect, atol=1e-7)


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
  # The matmul path has no convolution at all, grouped or not, to the second order.
  assert "feature_group_count = 4" in penalty_grad(gc.custom_conv)
  assert "convolution" not in penalty_grad(gc.matmul_conv)
  # per_group: convolutions, all dense, to the second order.
  per_group = penalty_grad(gc.per_group_conv)
  assert "convolution" in per_group and "feature_group_count = 4" not in per_group
  assert not grouped_weight_grads(per_group)
  # impl="per_group" is dense at every size.
  lowered = jax.jit(lambda x: gc.grouped_conv(x, w, g, "per_group")).lower(
      jnp.ones((1, 8, 8, 16))).as_text()
  assert "convolution" in lowered and "feature_group_count = 4" not in lowered


def test_r3gan_layers_match_the_published_structure():
  """Biases live only in the biased activations; stem, transitions, aggregation, bases and
  output layers are bias-free with gain 1 (std 1/sqrt(fan_in)); D's head has no activation
  around its depthwise basis (so D is linear in its last-stage features)."""
  g = nnx_bridge.PureModule(lambda rngs: r3gan.Generator(
      64, (256, 128), blocks=1, out_channels=3, group_width=16, cond_dim=32, embed_dim=64,
      rngs=rngs))
  d = nnx_bridge.PureModule(lambda rngs: r3gan.Discriminator(
      (128, 256), blocks=1, in_channels=3, group_width=16, cond_dim=32, embed_dim=64,
      rngs=rngs))
  pg, pd = g.init(jax.random.key(0)), d.init(jax.random.key(1))
  for params in (pg, pd):
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    biases = [p for p in paths if "bias" in p]
    assert biases and all("act1" in p or "act2" in p for p in biases), biases
  std = lambda a: float(np.std(np.asarray(a)))
  for kernel, fan_in, gain in ((pg["basis_scale"]["kernel"], 128, 1.0),
                               (pg["t1"]["kernel"], 256, 1.0),
                               (pg["head"]["kernel"], 128, 1.0),
                               (pg["embed"]["kernel"], 32, 1.0),
                               (pd["stem"]["kernel"], 3, 1.0),
                               (pd["t1"]["kernel"], 128, 1.0),
                               (pd["basis"][...] if hasattr(pd["basis"], "shape") else
                                pd["basis"], 16, 1.0),
                               (pd["out"]["kernel"], 256, 1.0),
                               (pd["project"]["kernel"], 32, 1 / 8.0)):
    np.testing.assert_allclose(std(kernel), gain / np.sqrt(fan_in), rtol=0.25)
  # blocks: He gain for leaky ReLU 0.2 times L^(-1/4), L = 2 blocks in the network
  np.testing.assert_allclose(std(pg["trunk"]["s0_b0"]["expand"]["kernel"]),
                             r3gan.HE_GAIN / np.sqrt(256) * 2 ** -0.25, rtol=0.1)
  # no activation in D's head: with the blocks at identity (zero `project`), D is linear in x
  # (stem, [1,3,3,1] resampling, transition, basis, output are all linear)
  x = jax.random.normal(jax.random.key(2), (2, 8, 8, 3))
  cond = jax.random.normal(jax.random.key(3), (2, 32))
  f = lambda x: d.apply(pd, x, cond)
  np.testing.assert_allclose(f(2.0 * x), 2.0 * f(x), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(f(-x), -f(x), rtol=1e-4, atol=1e-5)
