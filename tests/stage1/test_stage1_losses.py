"""GAN losses: hand-computed values, R1/R2 against finite differences, the compile-time switches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.gan import losses


def _softplus(t):
  return np.log1p(np.exp(t))


def test_rpgan_matches_hand_computed_value():
  real = jnp.array([1.0, -0.5, 2.0])
  fake = jnp.array([0.5, 0.5, -1.0])
  d = losses.d_loss("rpgan", real, fake)
  g = losses.g_loss("rpgan", real, fake)
  # D: mean softplus(fake - real) = mean(softplus(-0.5), softplus(1), softplus(-3))
  np.testing.assert_allclose(d, (0.474077 + 1.313262 + 0.048587) / 3, rtol=1e-5)
  np.testing.assert_allclose(g, (0.974077 + 0.313262 + 3.048587) / 3, rtol=1e-5)


@pytest.mark.parametrize("kind,d_ref,g_ref", [
    ("nsgan", lambda r, f: np.mean(_softplus(-r) + _softplus(f)),
     lambda r, f: np.mean(_softplus(-f))),
    ("hinge", lambda r, f: np.mean(np.maximum(0, 1 - r) + np.maximum(0, 1 + f)),
     lambda r, f: -np.mean(f)),
    ("wgan", lambda r, f: np.mean(f - r), lambda r, f: -np.mean(f)),
])
def test_other_losses_match_their_definitions(kind, d_ref, g_ref):
  r = np.array([1.5, -0.3, 0.2, -2.0], np.float32)
  f = np.array([-0.7, 0.4, 1.2, -0.1], np.float32)
  np.testing.assert_allclose(losses.d_loss(kind, r, f), d_ref(r, f), rtol=1e-5)
  np.testing.assert_allclose(losses.g_loss(kind, r, f), g_ref(r, f), rtol=1e-5)


def test_weighted_mean_and_unknown_loss():
  r, f = jnp.array([[0.0, 1.0]]), jnp.array([[1.0, 0.0]])
  w = jnp.array([[1.0, 3.0]])
  np.testing.assert_allclose(losses.d_loss("wgan", r, f, w), (1.0 * 1 + 3 * -1.0) / 4)
  with pytest.raises(ValueError, match="'lsgan'"):
    losses.d_loss("lsgan", r, f)


def _tiny_d(params, x):
  """A smooth nonlinear D: [B, 2, 2, 1] -> [B]."""
  h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"])
  return h @ params["w2"]


def test_r1_r2_match_finite_differences():
  params = {"w1": jax.random.normal(jax.random.key(0), (4, 3)),
            "w2": jax.random.normal(jax.random.key(1), (3,))}
  x = jax.random.normal(jax.random.key(2), (2, 2, 2, 1))
  pen = float(losses.gradient_penalty(lambda v: _tiny_d(params, v), x))
  # central finite differences of D w.r.t. every input pixel, in float64 numpy
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  d_np = lambda v: np.tanh(v.reshape(v.shape[0], -1) @ p64["w1"]) @ p64["w2"]
  xn = np.asarray(x, np.float64)
  eps = 1e-5
  grads = np.zeros_like(xn)
  for idx in np.ndindex(*xn.shape):
    e = np.zeros_like(xn)
    e[idx] = eps
    grads[idx] = (d_np(xn + e)[idx[0]] - d_np(xn - e)[idx[0]]) / (2 * eps)
  expect = np.mean(np.sum(grads.reshape(2, -1) ** 2, axis=1))
  np.testing.assert_allclose(pen, expect, rtol=1e-4)
  # the penalty's own parameter gradient matches finite differences too
  pg = jax.grad(lambda p: losses.gradient_penalty(lambda v: _tiny_d(p, v), x))(params)
  for name in ("w1", "w2"):
    flat = np.asarray(p64[name]).ravel()
    for k in range(flat.size):
      def pen_np(delta):
        q = {**p64, name: (flat + delta).reshape(p64[name].shape)}
        def d_q(v):
          return np.tanh(v.reshape(v.shape[0], -1) @ q["w1"]) @ q["w2"]
        g = np.zeros_like(xn)
        for idx in np.ndindex(*xn.shape):
          e = np.zeros_like(xn)
          e[idx] = eps
          g[idx] = (d_q(xn + e)[idx[0]] - d_q(xn - e)[idx[0]]) / (2 * eps)
        return np.mean(np.sum(g.reshape(2, -1) ** 2, axis=1))
      e_k = np.zeros_like(flat)
      e_k[k] = 1e-4
      fd = (pen_np(e_k) - pen_np(-e_k)) / 2e-4
      np.testing.assert_allclose(np.asarray(pg[name]).ravel()[k], fd, rtol=2e-3, atol=1e-4)


def test_d_objective_joint_vjp_equals_separate_terms_and_switches():
  params = {"w1": jax.random.normal(jax.random.key(0), (4, 3)),
            "w2": jax.random.normal(jax.random.key(1), (3,))}
  real = jax.random.normal(jax.random.key(2), (3, 2, 2, 1))
  fake = jax.random.normal(jax.random.key(3), (3, 2, 2, 1))
  d_fn = lambda v: _tiny_d(params, v)
  total, m = losses.d_objective("rpgan", d_fn, real, fake, 2.0, 4.0)
  r1 = losses.gradient_penalty(d_fn, real)
  r2 = losses.gradient_penalty(d_fn, fake)
  adv = losses.d_loss("rpgan", d_fn(real), d_fn(fake))
  np.testing.assert_allclose(m["r1"], r1, rtol=1e-6)
  np.testing.assert_allclose(m["r2"], r2, rtol=1e-6)
  np.testing.assert_allclose(total, adv + r1 + 2.0 * r2, rtol=1e-6)
  t_off, m_off = losses.d_objective("rpgan", d_fn, real, fake, 2.0, 4.0, use_r1=False,
                                    use_r2=False)
  np.testing.assert_allclose(t_off, adv, rtol=1e-6)
  assert float(m_off["r1"]) == 0.0
  t_r2, _ = losses.d_objective("rpgan", d_fn, real, fake, 2.0, 4.0, use_r1=False)
  np.testing.assert_allclose(t_r2, adv + 2.0 * r2, rtol=1e-6)


def test_lazy_scale():
  assert float(losses.lazy_scale(0, 4)) == 4.0
  assert float(losses.lazy_scale(3, 4)) == 0.0
  assert float(losses.lazy_scale(8, 4)) == 4.0
  assert float(losses.lazy_scale(5, 1)) == 1.0
