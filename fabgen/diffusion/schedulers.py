"""Noise schedules: DDPM training targets and DDIM sampling, as diffusers defines them for SD-2.

Kept apart from the model (the model predicts; the schedule says what and how to step). All
functions are pure jnp on arrays of timesteps, so they jit and vmap.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Schedule:
  num_train_timesteps: int = 1000
  beta_start: float = 0.00085
  beta_end: float = 0.012
  beta_schedule: str = "scaled_linear"
  prediction_type: str = "epsilon"   # or "v_prediction"
  steps_offset: int = 1
  set_alpha_to_one: bool = False

  def __post_init__(self):
    if self.prediction_type not in ("epsilon", "v_prediction"):
      raise ValueError(f"schedule: prediction_type {self.prediction_type!r} "
                       f"(epsilon, v_prediction)")
    if self.beta_schedule not in ("scaled_linear", "linear"):
      raise ValueError(f"schedule: beta_schedule {self.beta_schedule!r} (scaled_linear, linear)")

  @classmethod
  def from_dict(cls, d) -> "Schedule":
    keys = set(cls.__dataclass_fields__)
    return cls(**{k: v for k, v in dict(d).items() if k in keys})

  @property
  def alphas_cumprod(self) -> np.ndarray:
    """float64 host constants (diffusers computes them in float32 torch; the cast is below)."""
    t = self.num_train_timesteps
    if self.beta_schedule == "scaled_linear":
      betas = np.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, t, dtype=np.float32) ** 2
    else:
      betas = np.linspace(self.beta_start, self.beta_end, t, dtype=np.float32)
    return np.cumprod(1.0 - betas.astype(np.float32), dtype=np.float32)


def add_noise(s: Schedule, x0, noise, t):
  """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps (t int [B])."""
  a = jnp.asarray(s.alphas_cumprod)[t].reshape((-1,) + (1,) * (x0.ndim - 1))
  return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def velocity(s: Schedule, x0, noise, t):
  """v = sqrt(a_t) eps - sqrt(1 - a_t) x0."""
  a = jnp.asarray(s.alphas_cumprod)[t].reshape((-1,) + (1,) * (x0.ndim - 1))
  return jnp.sqrt(a) * noise - jnp.sqrt(1.0 - a) * x0


def training_target(s: Schedule, x0, noise, t):
  """What the model is trained to output: eps or v."""
  return noise if s.prediction_type == "epsilon" else velocity(s, x0, noise, t)


def ddim_timesteps(s: Schedule, num_steps: int) -> np.ndarray:
  """diffusers' "leading" spacing: (0, r, 2r, ...)[::-1] + steps_offset, r = T // steps."""
  ratio = s.num_train_timesteps // num_steps
  return (np.arange(num_steps) * ratio).round()[::-1].astype(np.int64) + s.steps_offset


def ddim_step(s: Schedule, model_output, t, x, num_steps: int):
  """One deterministic DDIM step (eta 0) from timestep t to t - T // num_steps."""
  ac = jnp.asarray(s.alphas_cumprod)
  prev = t - s.num_train_timesteps // num_steps
  a = ac[t]
  final = 1.0 if s.set_alpha_to_one else ac[0]
  a_prev = jnp.where(prev >= 0, ac[jnp.maximum(prev, 0)], final)
  if s.prediction_type == "epsilon":
    x0 = (x - jnp.sqrt(1.0 - a) * model_output) / jnp.sqrt(a)
    eps = model_output
  else:
    x0 = jnp.sqrt(a) * x - jnp.sqrt(1.0 - a) * model_output
    eps = jnp.sqrt(a) * model_output + jnp.sqrt(1.0 - a) * x
  return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1.0 - a_prev) * eps


def guided(eps_uncond, eps_cond, scale: float):
  """Classifier-free guidance: uncond + scale (cond - uncond)."""
  return eps_uncond + scale * (eps_cond - eps_uncond)


def paste_back(generated, original, mask):
  """Keep the original outside the mask (1 = inpaint)."""
  return mask * generated + (1.0 - mask) * original
