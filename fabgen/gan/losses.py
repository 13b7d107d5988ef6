"""Adversarial losses and zero-centred gradient penalties, as pure functions for any GAN task.

The loss is a *compile-time* switch (a Python string: each value traces a different program, so
an ablation costs no runtime branching); penalty weights are traced values (so a grid of gammas
can be `jax.vmap`-ed, see `fabgen.gan.grid_task`). Logits may have any shape (one per image, or a
patch map); optional `weights` of the same shape make every mean a weighted mean (stage 2 weights
the seam band).

  rpgan  D: f(D(fake) - D(real))    G: f(D(real) - D(fake)),  f = softplus   (R3GAN; pairs
         are formed elementwise, so real and fake batches must have the same shape)
  nsgan  D: softplus(-D(real)) + softplus(D(fake))   G: softplus(-D(fake))   (non-saturating)
  hinge  D: relu(1 - D(real)) + relu(1 + D(fake))     G: -D(fake)
  wgan   D: D(fake) - D(real)                         G: -D(fake)

R1 = E ||grad_x D(x_real)||^2 and R2 = E ||grad_x D(x_fake)||^2 (zero-centred; R3GAN needs
both for its convergence guarantee), weighted gamma / 2. `logits_and_input_grads` gets the
logits *and* the input gradients of one batch from a single VJP, so the penalties cost one extra
backward pass of D, not an extra forward.

Precision (`config.precision.compute_dtype=bfloat16`): D's forward, its input-gradient VJP and
the double backward of the penalty all run in bf16 (the policy casts D's weights and input);
the input gradients arrive in f32 (the transpose of the input cast) and the squared norm and
its batch mean are reduced in f32. Measured with `python -m benchmarks.penalty_precision` on the
tiny stage-1 D and fusion D_T at init: bf16 changes R1+R2 by 0.49 % / 0.07 % and its parameter
gradient by 0.88 % / 0.60 % (relative L2), the same order as bf16's error in the adversarial
loss's own gradient (0.80 % for the stage-1 D), so the penalty is kept in bf16: an f32 penalty
pass would forfeit bf16 for the whole D step, which shares one VJP with the adversarial loss.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

LOSSES = ("rpgan", "nsgan", "hinge", "wgan")


def _mean(values, weights=None):
  if weights is None:
    return jnp.mean(values)
  weights = jnp.broadcast_to(weights, values.shape)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def _check(kind):
  if kind not in LOSSES:
    raise ValueError(f"unknown adversarial loss {kind!r}; known: {', '.join(LOSSES)}")


def d_loss(kind: str, real_logits: jax.Array, fake_logits: jax.Array,
           weights: jax.Array | None = None) -> jax.Array:
  """The discriminator's loss (to minimise) for loss `kind`."""
  _check(kind)
  if kind == "rpgan":
    return _mean(jax.nn.softplus(fake_logits - real_logits), weights)
  if kind == "nsgan":
    return _mean(jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits), weights)
  if kind == "hinge":
    return _mean(jax.nn.relu(1.0 - real_logits) + jax.nn.relu(1.0 + fake_logits), weights)
  return _mean(fake_logits - real_logits, weights)


def g_loss(kind: str, real_logits: jax.Array, fake_logits: jax.Array,
           weights: jax.Array | None = None) -> jax.Array:
  """The generator's loss (to minimise); only `rpgan` reads the real logits."""
  _check(kind)
  if kind == "rpgan":
    return _mean(jax.nn.softplus(real_logits - fake_logits), weights)
  if kind == "nsgan":
    return _mean(jax.nn.softplus(-fake_logits), weights)
  return _mean(-fake_logits, weights)


def logits_and_input_grads(d_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                           weights: jax.Array | None = None):
  """(D(x), d sum(w * D(x)) / dx) from one forward and one VJP; differentiable in D's params."""
  logits, vjp = jax.vjp(d_fn, x)
  cot = jnp.ones_like(logits) if weights is None else jnp.broadcast_to(weights, logits.shape)
  (grads,) = vjp(cot.astype(logits.dtype))
  return logits, grads


def squared_grad_norm(grads: jax.Array) -> jax.Array:
  """E_batch ||g||^2: the zero-centred penalty from per-example input gradients [B, ...]."""
  grads = grads.astype(jnp.float32)  # reduced in f32 whatever D computed in (module docstring)
  return jnp.mean(jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=1))


def gradient_penalty(d_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                     weights: jax.Array | None = None) -> jax.Array:
  """R1 (x real) or R2 (x fake): E ||grad_x sum(w * D(x))||^2."""
  return squared_grad_norm(logits_and_input_grads(d_fn, x, weights)[1])


def d_objective(kind: str, d_fn: Callable[[jax.Array], jax.Array], real: jax.Array,
                fake: jax.Array, r1_gamma, r2_gamma, use_r1: bool = True, use_r2: bool = True,
                weights: jax.Array | None = None):
  """Full D loss: adversarial + gamma1/2 R1 + gamma2/2 R2, D run once on [real; fake].

  `use_r1` / `use_r2` are compile-time switches (off = no gradient pass traced at all); the
  gammas are traced (schedules, lazy scaling, vmapped grids). Returns (total, metrics).
  """
  x = jnp.concatenate([real, fake], 0)
  n = real.shape[0]
  w = None if weights is None else jnp.concatenate([weights, weights], 0)
  if use_r1 or use_r2:
    logits, grads = logits_and_input_grads(d_fn, x, w)
  else:
    logits, grads = d_fn(x), None
  real_logits, fake_logits = logits[:n], logits[n:]
  adv = d_loss(kind, real_logits, fake_logits, weights)
  zero = jnp.zeros((), adv.dtype)
  r1 = squared_grad_norm(grads[:n]) if use_r1 else zero
  r2 = squared_grad_norm(grads[n:]) if use_r2 else zero
  total = adv + 0.5 * r1_gamma * r1 + 0.5 * r2_gamma * r2
  metrics = {"d_loss": adv, "r1": r1, "r2": r2,
             "logits/real": jnp.mean(real_logits), "logits/fake": jnp.mean(fake_logits)}
  return total, metrics


def lazy_scale(step, interval: int):
  """Lazy regularisation: the penalty weight on steps where it is applied (interval x), else 0.

  Applying R1/R2 every `interval` steps with weight `interval * gamma` keeps its average strength
  (StyleGAN2's lazy regularisation). Multiplying by 0 still traces the penalty; callers that want
  to skip its cost wrap the D step in `lax.cond` on `is_penalty_step`.
  """
  if interval <= 1:
    return jnp.ones((), jnp.float32)
  return jnp.where(is_penalty_step(step, interval), float(interval), 0.0).astype(jnp.float32)


def is_penalty_step(step, interval: int):
  return jnp.asarray(step) % max(1, interval) == 0
