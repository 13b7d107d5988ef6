"""R3GAN's hyperparameter schedules, shared by every fabgen GAN whose objective is RpGAN.

R3GAN anneals everything with one half-cosine over a fixed number of images (20M for FFHQ-64):
learning rate 2e-4 -> 5e-5, Adam beta2 0.9 -> 0.99 (beta1 = 0), the R1/R2 weight gamma -> gamma/10,
augmentation probability 0 -> p, and the EMA half-life 0 -> its final value (in images). The last
differs from StyleGAN's ramp (half-life <= 5 % of the images seen, `fabgen.platform.ema`): the
R3GAN half-life grows on the same cosine as every other schedule, so early weights are forgotten
fast and the late average is long. `Recipe` computes all of them from plain numbers, and tasks
build it from their config sections (`from_sections`), so stage 1, the fusion network and the
single-stage inpainter train with the same schedules when their objective is RpGAN.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import optax

from fabgen.platform import ema as ema_lib
from fabgen.platform import schedules

EMA_SCHEDULES = ("r3gan", "ramp")


def ema_decay(step, batch_size: int, half_life_images: float, schedule: str, steps: int,
              ramp: float = 0.05):
  """Per-step EMA decay 0.5 ** (batch / half_life(step)).

  "r3gan": half_life(step) = cosine ramp 0 -> `half_life_images` over `steps` (R3GAN's
  ema_scheduler); "ramp": StyleGAN's min(half_life, ramp * images seen).
  """
  if schedule not in EMA_SCHEDULES:
    raise ValueError(f"EMA schedule {schedule!r} is not one of {EMA_SCHEDULES}")
  if schedule == "ramp":
    return ema_lib.ema_decay(step, batch_size, half_life_images, ramp)
  half_life = schedules.cosine(0.0, float(half_life_images), steps)(step)
  return 0.5 ** (batch_size / jnp.maximum(half_life, 1e-8))


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Schedules of one GAN run; every method takes the (traced) step."""

  lr: float
  end_lr: float
  b2_start: float
  b2_end: float
  gamma_end_ratio: float
  ema_half_life: float
  ema_schedule: str
  steps: int

  def __post_init__(self):
    if self.steps <= 0:
      raise ValueError(f"R3GAN schedules need steps > 0, got {self.steps}")
    if self.ema_schedule not in EMA_SCHEDULES:
      raise ValueError(f"EMA schedule {self.ema_schedule!r} is not one of {EMA_SCHEDULES}")

  def learning_rate(self, scale: float = 1.0) -> optax.Schedule:
    return schedules.cosine(self.lr * scale, self.end_lr * scale, self.steps)

  def beta2(self) -> optax.Schedule:
    return schedules.cosine(self.b2_start, self.b2_end, self.steps)

  def adam(self, scale: float = 1.0) -> optax.GradientTransformation:
    """R3GAN's Adam: beta1 = 0, scheduled lr and beta2 (`scale` multiplies the lr schedule)."""
    return schedules.adam(self.learning_rate(scale), b1=0.0, b2=self.beta2())

  def gamma_shape(self, step):
    """Multiplier of the base R1/R2 weight: 1 -> gamma_end_ratio."""
    return schedules.cosine(1.0, self.gamma_end_ratio, self.steps)(step)

  def ema_decay(self, step, batch_size: int):
    return ema_decay(step, batch_size, self.ema_half_life, self.ema_schedule, self.steps)


def optimizers(config, g_lr_key: str, d_lr_key: str = "lr_d"):
  """(recipe or None, G's optimizer, D's optimizer) of a stage-2 style GAN config.

  The rpgan objective trains with R3GAN's recipe (`from_sections`: scheduled lr and beta2, D's
  lr schedule scaled by optim.<d_lr_key> / optim.<g_lr_key>); the paper's objectives with
  constant lr and beta2 (recipe None: StyleGAN's EMA ramp, see `ema_decay_at`). Beta1 is 0.
  """
  o = config.optim
  if config.loss.objective == "rpgan":
    recipe = from_sections(o, config.loss, config.ema_half_life,
                           config.get("ema_schedule", "r3gan"), config.total_steps, g_lr_key)
    return recipe, recipe.adam(), recipe.adam(o[d_lr_key] / o[g_lr_key])
  return (None, schedules.adam(o[g_lr_key], b1=0.0, b2=o.b2),
          schedules.adam(o[d_lr_key], b1=0.0, b2=o.b2))


def ema_decay_at(recipe: "Recipe | None", config, step):
  """The step's EMA decay: the recipe's schedule, or StyleGAN's ramp when there is no recipe."""
  if recipe is not None:
    return recipe.ema_decay(step, config.batch_size)
  return ema_lib.ema_decay(step, config.batch_size, config.ema_half_life)


def from_sections(optim, loss, ema_half_life: float, ema_schedule: str, total_steps: int,
                  lr_key: str = "lr") -> Recipe:
  """A Recipe from a stage-2 style config: optim.{<lr_key>, end_lr_ratio, b2_start, b2,
  schedule_steps}, loss.gamma_end_ratio (missing keys: R3GAN's values)."""
  lr = float(optim[lr_key])
  return Recipe(lr=lr, end_lr=lr * float(optim.get("end_lr_ratio", 0.25)),
                b2_start=float(optim.get("b2_start", 0.9)), b2_end=float(optim.b2),
                gamma_end_ratio=float(loss.get("gamma_end_ratio", 0.1)),
                ema_half_life=float(ema_half_life), ema_schedule=ema_schedule,
                steps=int(optim.get("schedule_steps", 0) or total_steps))
