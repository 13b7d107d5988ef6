"""benchmarks/diffusion_memory_estimate: the traced per-device memory behaves like memory.

Activations (saved residuals) grow with the per-device batch, the state does not, and on a
one-device mesh the per-device state is the whole state.
"""

from benchmarks import diffusion_memory_estimate as est


def test_residuals_scale_with_the_batch_and_state_does_not():
  one = est.estimate("diffusion", "tiny", "data=1", 1)
  two = est.estimate("diffusion", "tiny", "data=1", 2)
  assert one["state_gib_per_device"] == one["state_gib_all_devices"] > 0
  assert two["state_gib_per_device"] == one["state_gib_per_device"]
  assert two["grads_gib_per_device"] == one["grads_gib_per_device"] > 0
  # Every activation carries the batch axis; the margin allows for batch-free residuals.
  ratio = two["residuals_gib_per_device"] / one["residuals_gib_per_device"]
  assert 1.8 < ratio <= 2.0, ratio
  assert one["estimate_gib_per_device"] > one["state_gib_per_device"] + one["grads_gib_per_device"]
