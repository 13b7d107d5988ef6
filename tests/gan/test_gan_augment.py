"""ADA-style augmentation (`fabgen.gan.augment`): identity at p = 0, the probability schedule,
gradients through it (to G's parameters, and second order for R1/R2), determinism per key, the
share of transformed samples following p, and masks moved with the image but never recoloured."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.gan import augment as aug


def _images(b=8, s=16, c=4, seed=0):
  return jax.random.uniform(jax.random.key(seed), (b, s, s, c), minval=-1.0, maxval=1.0)


def test_p_zero_is_the_exact_identity_and_p_one_changes_every_sample():
  x = _images()
  np.testing.assert_array_equal(aug.augment(jax.random.key(1), x, 0.0), x)
  y = aug.augment(jax.random.key(1), x, 1.0)
  assert y.shape == x.shape
  changed = np.abs(np.asarray(y - x)).reshape(len(x), -1).max(1) > 1e-3
  assert changed.all()
  with pytest.raises(ValueError, match="unknown augmentation"):
    aug.augment(jax.random.key(1), x, 0.5, ("xflip", "hue"))


def test_probability_follows_the_cosine_schedule():
  p = aug.probability_schedule(0.0, 0.3, 1000)
  np.testing.assert_allclose([p(0), p(500), p(1000), p(5000)], [0.0, 0.15, 0.3, 0.3], atol=1e-6)
  values = np.array([p(s) for s in range(0, 1001, 50)])
  assert np.all(np.diff(values) >= 0)
  np.testing.assert_allclose(p(250), 0.15 * (1 - np.cos(np.pi / 4)), atol=1e-6)
  with pytest.raises(ValueError, match="steps > 0"):
    aug.probability_schedule(0.0, 0.3, 0)


def test_gradients_flow_through_to_the_generator_and_to_second_order():
  """d loss / d theta for x = G_theta: analytic (autodiff through the augmentation) equals a
  central finite difference; the R1-style input-gradient norm is differentiable again."""
  base = _images(4, 16, 4, seed=2)
  w_d = jax.random.normal(jax.random.key(3), (16, 16, 4))
  key = jax.random.key(4)

  def loss(theta):
    x = jnp.tanh(theta * base)  # a one-parameter "generator"
    return jnp.sum(jnp.tanh(jnp.einsum("bhwc,hwc->b", aug.augment(key, x, 0.7), w_d)))

  g = jax.jit(jax.grad(loss))(1.3)
  eps = 1e-3
  loss = jax.jit(loss)
  fd = (loss(1.3 + eps) - loss(1.3 - eps)) / (2 * eps)
  assert abs(float(g)) > 1e-3
  np.testing.assert_allclose(g, fd, rtol=2e-2)

  def r1(theta):
    d = lambda x: jnp.sum(jnp.tanh(theta * jnp.einsum("bhwc,hwc->b", aug.augment(key, x, 0.7),
                                                      w_d)))
    return jnp.sum(jax.grad(d)(base) ** 2)

  g2 = jax.jit(jax.grad(r1))(0.5)
  r1 = jax.jit(r1)
  fd2 = (r1(0.5 + eps) - r1(0.5 - eps)) / (2 * eps)
  np.testing.assert_allclose(g2, fd2, rtol=2e-2)


def test_one_key_one_augmentation():
  x = _images()
  run = jax.jit(aug.augment, static_argnums=(3,))
  a = run(jax.random.key(7), x, 0.5, aug.DEFAULT)
  np.testing.assert_array_equal(a, run(jax.random.key(7), x, 0.5, aug.DEFAULT))
  assert not np.allclose(a, run(jax.random.key(8), x, 0.5, aug.DEFAULT))


@pytest.mark.parametrize("transform", ["xflip", "brightness"])
def test_share_of_transformed_samples_is_p(transform):
  x = _images(1, 8, 3, seed=5)
  x = jnp.repeat(x, 2000, axis=0)
  run = jax.jit(aug.augment, static_argnums=(3,))
  for p in (0.1, 0.3):
    y = run(jax.random.key(11), x, p, (transform,))
    changed = np.abs(np.asarray(y - x)).reshape(len(x), -1).max(1) > 1e-6
    # binomial(2000, p): 4 standard deviations are below 0.041
    assert abs(changed.mean() - p) < 0.041, (transform, p, changed.mean())


def test_masks_move_with_the_image_and_are_never_recoloured():
  x = _images(64, 8, 4, seed=6)
  flipped = aug.augment(jax.random.key(2), x, 1.0, ("xflip",))
  np.testing.assert_allclose(flipped, x[:, :, ::-1], atol=1e-6)  # every channel, exactly
  rotated = aug.augment(jax.random.key(3), x, 1.0, ("rotate90",))
  for i in range(4):  # each sample is one of the three non-trivial quarter turns, exactly
    ok = [np.allclose(rotated[i], np.rot90(x[i], k, axes=(0, 1)), atol=1e-5) for k in (1, 2, 3)]
    assert any(ok), i
  recoloured = aug.augment(jax.random.key(4), x, 1.0, aug.COLOR)
  np.testing.assert_array_equal(recoloured[..., 3], x[..., 3])
  assert not np.allclose(recoloured[..., :3], x[..., :3])
