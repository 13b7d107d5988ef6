"""Shared training utilities: cosine schedules, scheduled Adam, EMA half-life in images."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fabgen.platform import ema as ema_lib
from fabgen.platform import schedules


def test_cosine_endpoints_midpoint_and_hold():
  s = schedules.cosine(1.0, 0.1, 100)
  np.testing.assert_allclose([s(0), s(50), s(100), s(1000)], [1.0, 0.55, 0.1, 0.1], atol=1e-6)
  assert float(s(25)) > float(s(75))


def test_adam_applies_scheduled_b2_and_matches_optax_adam_for_constants():
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([0.1, 0.2, -0.3])}
  ours = schedules.adam(1e-2, b1=0.5, b2=0.9)
  ref = optax.adam(1e-2, b1=0.5, b2=0.9)
  s1, s2 = ours.init(params), ref.init(params)
  for _ in range(3):
    u1, s1 = ours.update(grads, s1, params)
    u2, s2 = ref.update(grads, s2, params)
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6)
  sched = schedules.adam(1e-2, b2=schedules.cosine(0.9, 0.99, 10))
  state = sched.init(params)
  _, state = sched.update(grads, state, params)
  np.testing.assert_allclose(state.hyperparams["b2"], 0.9, atol=1e-6)


def test_ema_half_life_is_counted_in_images():
  # Without the ramp: after half_life images the old weights count one half, whatever the batch.
  for batch in (4, 32):
    decay = ema_lib.ema_decay(10_000, batch, half_life_images=256, ramp=None)
    np.testing.assert_allclose(float(decay) ** (256 / batch), 0.5, rtol=1e-5)
  # The ramp caps the half-life at ramp * images seen: early on the average follows quickly.
  early = ema_lib.ema_decay(0, 8, half_life_images=10_000, ramp=0.05)
  np.testing.assert_allclose(float(early), 0.5 ** (8 / (0.05 * 8)), rtol=1e-5)
  ema = {"w": jnp.zeros(3), "n": jnp.array(1, jnp.int32)}
  new = ema_lib.ema_update(ema, {"w": jnp.ones(3), "n": jnp.array(7, jnp.int32)}, 0.75)
  np.testing.assert_allclose(new["w"], 0.25)
  assert int(new["n"]) == 7
  assert jax.tree.structure(new) == jax.tree.structure(ema)
