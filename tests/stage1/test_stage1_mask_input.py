"""D cannot tell real from fake by the mask channel's values alone (`model.mask_to_d="hard"`).

Real masks are exactly binary, G's are sigmoids. Given fake masks whose *shape* equals the real
ones (so only the values differ), a classifier on each sample's histogram of D's mask channel
separates them perfectly when D sees the soft mask (the old input, kept as the `"soft"`
ablation: the test can fail) and is at chance when D sees the thresholded, straight-through mask.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.stage1 import model as model_lib


def _masks(n=200, size=16, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  real = []
  for _ in range(n):
    cy, cx, r = rng.integers(3, size - 3), rng.integers(3, size - 3), rng.uniform(1.5, 4)
    real.append(((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32))
  real = np.stack(real)
  # G-like soft masks with exactly the real shapes: sigmoid of confident but noisy logits
  logits = (real * 2 - 1) * rng.uniform(2, 6, real.shape) + rng.normal(0, 0.5, real.shape)
  return real, np.asarray(jax.nn.sigmoid(logits), np.float32)


def _histograms(masks, mask_to_d):
  rgb = jnp.zeros(masks.shape + (3,))
  channel = np.asarray(model_lib.d_input(rgb, jnp.asarray(masks), mask_to_d)[..., 3])
  bins = np.linspace(-1.0, 1.0, 17)
  return np.stack([np.histogram(c, bins)[0] for c in channel]).astype(np.float64)


def _nearest_centroid_accuracy(real_h, fake_h):
  """Train on even samples, test on odd: the best a histogram-only classifier does here."""
  x = np.concatenate([real_h, fake_h])
  y = np.concatenate([np.zeros(len(real_h)), np.ones(len(fake_h))])
  train = np.arange(len(x)) % 2 == 0
  centroids = np.stack([x[train & (y == k)].mean(0) for k in (0, 1)])
  dist = ((x[~train, None] - centroids[None]) ** 2).sum(-1)
  return float(np.mean(dist.argmin(1) == y[~train]))


def test_mask_value_histogram_separates_soft_masks_but_not_hard_ones():
  real, fake = _masks()
  assert _nearest_centroid_accuracy(_histograms(real, "soft"), _histograms(fake, "soft")) > 0.95
  real_h, fake_h = _histograms(real, "hard"), _histograms(fake, "hard")
  np.testing.assert_array_equal(real_h, fake_h)  # the same values, sample by sample
  assert _nearest_centroid_accuracy(real_h, fake_h) <= 0.55


def test_hard_mask_input_passes_gradients_straight_through():
  _, fake = _masks(4)
  logits = jnp.log(fake / (1 - fake))
  w = jax.random.normal(jax.random.key(0), fake.shape)
  f = lambda l: jnp.sum(model_lib.d_input(jnp.zeros(fake.shape + (3,)), jax.nn.sigmoid(l),
                                          "hard")[..., 3] * w)
  g = jax.grad(f)(logits)
  s = jax.nn.sigmoid(logits)
  np.testing.assert_allclose(g, 2.0 * w * s * (1 - s), rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="mask_to_d='binary'"):
    model_lib.d_input(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 4)), "binary")
