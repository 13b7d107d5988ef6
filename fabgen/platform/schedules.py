"""Schedules as R3GAN uses them: cosine ramps for learning rate, Adam beta2 and penalty weights.

R3GAN anneals several hyperparameters with the same half-cosine from a start to an end value;
one helper serves them all, and `adam` takes schedules for both learning rate and beta2 through
`optax.inject_hyperparams`, so the schedule values also appear in the optimizer state (and thus
in checkpoints and metrics).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def cosine(start: float, end: float, steps: int) -> optax.Schedule:
  """Half-cosine from `start` at step 0 to `end` at `steps`, then constant `end`."""
  if steps <= 0:
    raise ValueError(f"cosine schedule needs steps > 0, got steps={steps}")

  def schedule(step):
    t = jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))

  return schedule


def adam(learning_rate, b1: float = 0.0, b2=0.99, eps: float = 1e-8,
         clip_norm: float | None = None) -> optax.GradientTransformation:
  """Adam whose learning rate and beta2 may be schedules (R3GAN: b1=0, b2 cosine 0.9 -> 0.99)."""
  opt = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
  if clip_norm is not None:
    opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
  return opt


def warmup_cosine(step, values):
  """optax.warmup_cosine_decay_schedule(0, peak, warmup, total, end), its numbers traced.

  `values` = {"peak", "end", "warmup", "total"} as arrays (e.g. held in the train state), so a
  run with other numbers (a fine-tune) compiles to the same program and hits the cache.
  """
  t = jnp.asarray(step, jnp.float32)
  peak, end, warmup, total = (values[k] for k in ("peak", "end", "warmup", "total"))
  frac = jnp.clip((t - warmup) / (total - warmup), 0.0, 1.0)
  return jnp.where(t < warmup, peak * t / warmup,
                   end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
