"""DGT's pieces in isolation: encodings, the L1 terms, the Weibull fit, OpenMax, paired data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from fabgen.dgt import encoding
from fabgen.dgt import losses
from fabgen.dgt import openmax
from fabgen.dgt import weibull


def _mask(b=3, s=16):
  m = np.zeros((b, s, s), np.float32)
  for i in range(b):
    m[i, 3 + i:9 + i, 4:10 + i] = 1
  return jnp.asarray(m)


def test_label_encodings_shapes_and_values():
  mask = _mask()
  ef, eb = encoding.label_encodings(mask, jnp.array([0, 2, 4]), 5)
  assert ef.shape == (3, 16, 16, 5) and eb.shape == (3, 16, 16, 1)
  np.testing.assert_array_equal(ef[1, ..., 2], mask[1])        # one-hot channel = the mask
  assert float(jnp.sum(ef[1])) == float(jnp.sum(mask[1]))      # every other channel zero
  np.testing.assert_array_equal(eb[..., 0], mask)              # E_back = ones * M
  x, efs, ebs = encoding.generator_input(
      jnp.zeros((3, 16, 16, 3)), mask, jnp.array([0, 2, 4]),
      jax.random.split(jax.random.key(0), 3), 5, encoding.Smoothing())
  assert x.shape == (3, 16, 16, 5 + 1 + 3) and efs.shape == ef.shape and ebs.shape == eb.shape


def test_smoothing_is_deterministic_per_key_and_independent_of_the_batch():
  sm = encoding.Smoothing(sigma_min=0.5, sigma_max=2.0, w_min=0.5, w_max=1.0)
  mask = _mask()
  ef, eb = encoding.label_encodings(mask, jnp.array([1, 1, 3]), 4)
  keys = jax.random.split(jax.random.key(7), 3)
  a = encoding.smooth_encodings(ef, eb, keys, sm)
  b = encoding.smooth_encodings(ef, eb, keys, sm)
  jax.tree.map(np.testing.assert_array_equal, a, b)             # same keys, same output
  alone = encoding.smooth_encodings(ef[1:2], eb[1:2], keys[1:2], sm)
  np.testing.assert_allclose(alone[0][0], a[0][1], atol=1e-6)   # sample 1 without its batch
  other = encoding.smooth_encodings(ef, eb, jax.random.split(jax.random.key(8), 3), sm)
  assert not np.allclose(other[0], a[0])                        # another key, another draw
  # Smoothing spreads the mask but keeps its mass (normalised kernel), scaled by w_d.
  p = encoding.draw(keys[0], sm)
  assert 0.5 <= float(p["w_d"]) <= 1.0 and 0.5 <= float(p["sigma_n"]) <= 2.0
  np.testing.assert_allclose(float(jnp.sum(a[0][0])), float(p["w_d"]) * float(jnp.sum(ef[0])),
                             rtol=1e-4)
  assert float(jnp.max(a[0][0])) <= 1.0 and float(jnp.sum(a[0][0] > 0)) > float(jnp.sum(ef[0] > 0))


@pytest.mark.parametrize("reading", losses.READINGS)
def test_each_l1_term_is_zero_at_its_target_and_not_elsewhere(reading):
  rng = np.random.default_rng(0)
  mask = _mask()
  defect = jnp.asarray(rng.uniform(size=(3, 16, 16, 3)), jnp.float32)
  clean = jnp.asarray(rng.uniform(size=(3, 16, 16, 3)), jnp.float32)
  ef, eb = encoding.label_encodings(mask, jnp.array([0, 1, 2]), 3)
  ef, eb = encoding.smooth_encodings(ef, eb, jax.random.split(jax.random.key(1), 3),
                                     encoding.Smoothing())
  a_d, a_n = losses.soft_masks(ef, eb)
  if reading == "masked":
    targets = {"fore": defect, "back": clean}
  else:
    targets = {"fore": defect * a_d, "back": clean * (1 - a_d)}
  targets["mix"] = losses.mix_target(defect, clean, a_d, a_n)
  for term, target in targets.items():
    out = losses.pixel_losses(target, defect, clean, ef, eb, reading)
    assert float(out[term]) < 1e-7, (term, out)
    assert all(float(v) > 1e-3 for k, v in out.items() if k != term), (term, out)
  with pytest.raises(ValueError, match="config.loss.reading='exact'"):
    losses.pixel_losses(defect, defect, clean, ef, eb, "exact")


def test_masked_reading_only_looks_inside_and_outside_the_defect():
  mask = _mask(1)
  ef, eb = encoding.label_encodings(mask, jnp.array([0]), 2)  # unsmoothed: A_d = M exactly
  defect, clean = jnp.ones((1, 16, 16, 3)), jnp.zeros((1, 16, 16, 3))
  composite = defect * mask[..., None] + clean * (1 - mask[..., None])
  out = losses.pixel_losses(composite, defect, clean, ef, eb, "masked")
  assert float(out["fore"]) == 0.0 and float(out["back"]) == 0.0


@pytest.mark.parametrize("shape, scale, n", [(0.8, 1.0, 20), (2.0, 3.0, 20), (6.0, 0.2, 50),
                                             (12.0, 40.0, 15)])
def test_weibull_fit_agrees_with_scipy_within_2_percent(shape, scale, n):
  x = scipy.stats.weibull_min.rvs(shape, scale=scale, size=n, random_state=int(shape * 10))
  ours = weibull.fit(x)
  c, loc, lam = scipy.stats.weibull_min.fit(x, floc=0)
  assert loc == 0
  assert abs(ours.shape - c) / c < 0.02 and abs(ours.scale - lam) / lam < 0.02, (ours, c, lam)
  # The fit is the likelihood maximum: nudging either parameter lowers it.
  ll = lambda k, s: np.sum(scipy.stats.weibull_min.logpdf(x, k, scale=s))  # noqa: E731
  best = ll(ours.shape, ours.scale)
  for k, s in ((ours.shape * 1.01, ours.scale), (ours.shape, ours.scale * 0.99)):
    assert ll(k, s) < best
  np.testing.assert_allclose(ours.cdf(x), scipy.stats.weibull_min.cdf(x, c, scale=lam),
                             atol=0.01)


def test_weibull_fit_rejects_bad_samples():
  with pytest.raises(ValueError, match="at least 2"):
    weibull.fit([1.0])
  with pytest.raises(ValueError, match="above loc=0"):
    weibull.fit([1.0, -2.0, 3.0])


def test_openmax_flags_far_samples_as_unknown_and_keeps_class_samples():
  rng = np.random.default_rng(0)
  centres = np.array([[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]])
  labels = np.repeat(np.arange(3), 40)
  train = centres[labels] + rng.normal(0, 0.7, (120, 3))
  om = openmax.OpenMax.fit(train, labels, tail_size=10, alpha=2, threshold=0.5)
  test_known = centres[[0, 1, 2]] + rng.normal(0, 0.3, (3, 3))
  pred, unknown = om.predict(test_known)
  np.testing.assert_array_equal(pred, [0, 1, 2])
  far = np.array([[3.0, 3.0, 0.0], [12.0, 0.0, 12.0]])  # between classes, and beyond two
  pred_far, unknown_far = om.predict(far)
  np.testing.assert_array_equal(pred_far, [openmax.UNKNOWN] * 2)
  assert unknown_far.min() > unknown.max()
  p = om.probabilities(far)
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-9)
  base_pred, _ = openmax.softmax_predict(np.array([[30.0, 0, 0]]), 0.5)
  assert base_pred[0] == 0
  with pytest.raises(ValueError, match="config.dfc.alpha=4"):
    openmax.OpenMax.fit(train, labels, tail_size=10, alpha=4, threshold=0.5)
