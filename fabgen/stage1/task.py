"""`Stage1Task` ("stage1"): the texture-conditioned R3GAN defect generator, as a platform Task.

State (one pytree, one checkpoint): G params, D params, G's EMA, both Adam states, step.
One step (pure; the platform jits it with shardings and donation):
  D: loss(kind) on (real patch+mask, G's patch+mask) under the same condition, + gamma/2 R1
     + gamma/2 R2 from one joint VJP over [real; fake] (or every `lazy_interval` steps with the
     weight scaled by the interval);
  G: loss(kind) with the updated D; EMA of G with a half-life counted in images, ramped as
     R3GAN ramps it (cosine 0 -> half_life, `ema.schedule="r3gan"`) or as StyleGAN ("ramp").
R3GAN's schedules: Adam beta1 = 0, beta2 cosine 0.9 -> 0.99, lr cosine 2e-4 -> 5e-5, gamma
cosine from its start to a tenth of it, all over `optim.schedule_steps` (0 = total_steps).

Augmentation (`augment.enabled`, `fabgen.gan.augment`): every (image, mask) D sees, real and
fake, in the D and the G step, is ADA-augmented with a probability on a cosine schedule (R3GAN at
64x64: 0 -> 0.3), inside the gradient path (R1/R2 are taken through it, as StyleGAN2-ADA does).

Ablations are config switches: loss.kind in {rpgan, nsgan, hinge, wgan}, loss.r1 / loss.r2 on
or off, loss.gamma, loss.lazy_interval, ema.enabled, augment.enabled, model.mask_to_d. The base
gamma and the step rng are *traced* arguments of `step_with`, which is what
`fabgen.gan.grid_task` vmaps over; the D-then-G update itself is `fabgen.gan.step.update`.
"""

from __future__ import annotations

import copy
import json
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fabgen.data.readers import open_source, skips
from fabgen.gan import augment as augment_lib
from fabgen.gan import losses
from fabgen.gan import recipe as recipe_lib
from fabgen.gan import step as gan_step
from fabgen.nn import masks as mask_ops
from fabgen.platform import input_options
from fabgen.platform import precision as precision_lib
from fabgen.platform import schedules
from fabgen.platform import task as task_lib
from fabgen.platform.task import Task
from fabgen.stage1 import condition as condition_lib
from fabgen.stage1 import data as data_lib
from fabgen.stage1 import evaluate as evaluate_lib
from fabgen.stage1 import model as model_lib


class Stage1Task(Task):
  """Conditional R3GAN on (defect patch, mask | Gram of defect-free texture, class)."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    if config.loss.kind not in losses.LOSSES:
      raise ValueError(f"config.loss.kind={config.loss.kind!r} is not one of {losses.LOSSES}")
    c = config.condition
    self.conditioner = condition_lib.GramFeatures(c.taps, c.pool, c.kind, c.weights or None,
                                                  c.seed, c.width_scale,
                                                  c.get("features_checkpoint", ""))
    self.g, self.d = model_lib.networks(config.model, self.conditioner.dim)
    self.policy = precision_lib.Policy.from_config(config.precision)
    o = config.optim
    steps = o.schedule_steps or config.total_steps
    self.schedule_steps = steps
    self.lr = schedules.cosine(o.lr, o.end_lr, steps)
    self.b2 = schedules.cosine(o.b2_start, o.b2_end, steps)
    self.gamma_shape = schedules.cosine(1.0, config.loss.gamma_end_ratio, steps)
    self.opt_g = schedules.adam(self.lr, b1=0.0, b2=self.b2)
    self.opt_d = schedules.adam(self.lr, b1=0.0, b2=self.b2)
    a = config.get("augment")
    self.augment = bool(a and a.enabled)
    if self.augment:
      self.aug_transforms = augment_lib.check_transforms(a.transforms)
      self.aug_p = augment_lib.probability_schedule(a.p_start, a.p_end, steps)
    self.train_set = None  # PatchSets, built on first use (or set by tests / notebooks)
    self.eval_set = None
    self.sources = []  # the sources read so far, for `input_report`

  # ---- networks --------------------------------------------------------------------------------

  def generate(self, g_params, z, cond, class_ids, texture=None):
    """(rgb signed [B,P,P,3], mask [B,P,P]) from noise, condition features and classes."""
    return self.policy.apply(self.g, g_params, z, cond, class_ids, texture)

  def discriminate(self, d_params, x4, cond, class_ids):
    """Logits [B] (f32) under the precision policy; R1/R2 differentiate this in x4."""
    return self.policy.apply(self.d, d_params, x4, cond, class_ids)

  def discriminate_augmented(self, d_params, x4, cond, class_ids, key, step):
    """D on ADA-augmented inputs (real and fake alike; identity when augmentation is off)."""
    if self.augment:
      x4 = augment_lib.augment(key, x4, self.aug_p(step), self.aug_transforms)
    return self.discriminate(d_params, x4, cond, class_ids)

  def init_state(self, rng):
    kg, kd = jax.random.split(rng)
    return gan_step.init_state(self.g.init(kg), self.d.init(kd), self.opt_g, self.opt_d)

  # ---- step ------------------------------------------------------------------------------------

  GRID_GAMMA_KEYS = ("loss.gamma",)  # what a grid's `gammas` set (`fabgen.gan.grid_task`)

  @staticmethod
  def penalised(config: ml_collections.ConfigDict) -> bool:
    """Whether gamma weighs anything in this config (R1 or R2 on)."""
    return bool(config.loss.r1 or config.loss.r2)

  def train_step(self, state, batch, rng):
    return self.step_with(state, batch, rng, jnp.float32(self.config.loss.gamma))

  def step_with(self, state, batch, rng, gamma):
    """One D step and one G step with base penalty weight `gamma` (traced)."""
    lc, m = self.config.loss, self.config.model
    step = state["step"]
    mask_to_d = m.get("mask_to_d", "hard")
    real = model_lib.d_input(mask_ops.to_signed(batch["patch"]),
                             batch["mask"].astype(jnp.float32) if model_lib.has_mask(m) else None,
                             mask_to_d)
    cond, cls = batch["cond"].astype(jnp.float32), batch["class_id"]
    texture = mask_ops.to_signed(batch["clean"])
    b = real.shape[0]
    k_d, k_g = jax.random.split(rng)
    k_aug_d, k_aug_g = jax.random.split(jax.random.fold_in(rng, 1))
    gamma_t = gamma * self.gamma_shape(step)
    cond2, cls2 = jnp.concatenate([cond, cond]), jnp.concatenate([cls, cls])

    rgb, mask = self.generate(state["g"], jax.random.normal(k_d, (b, m.noise_dim)), cond, cls,
                              texture)
    fake = jax.lax.stop_gradient(model_lib.d_input(rgb, mask, mask_to_d))

    def d_penalised(d_params, weight, with_penalty):
      d_fn = lambda x: self.discriminate_augmented(d_params, x, cond2, cls2, k_aug_d, step)
      return losses.d_objective(lc.kind, d_fn, real, fake, weight, weight,
                                use_r1=lc.r1 and with_penalty, use_r2=lc.r2 and with_penalty)

    interval = int(lc.lazy_interval)

    def d_objective(d_params):
      if (lc.r1 or lc.r2) and interval > 1:  # lazy: the penalty every `interval` steps, scaled
        return jax.lax.cond(losses.is_penalty_step(step, interval),
                            lambda: d_penalised(d_params, gamma_t * interval, True),
                            lambda: d_penalised(d_params, gamma_t, False))
      return d_penalised(d_params, gamma_t, True)

    z_g = jax.random.normal(k_g, (b, m.noise_dim))

    def g_objective(g_params, d_params):
      rgb, mask = self.generate(g_params, z_g, cond, cls, texture)
      logits = self.discriminate_augmented(
          d_params, jnp.concatenate([real, model_lib.d_input(rgb, mask, mask_to_d)]), cond2,
          cls2, k_aug_g, step)
      loss = losses.g_loss(lc.kind, jax.lax.stop_gradient(logits[:b]), logits[b:])
      metrics = {"g_loss": loss}
      if mask is not None:
        metrics["mask_mean"] = jnp.mean(mask)
      return loss, metrics

    e = self.config.ema
    decay = (recipe_lib.ema_decay(step, self.config.batch_size, e.half_life,
                                  e.get("schedule", "ramp"), self.schedule_steps, e.ramp)
             if e.enabled else None)
    new_state, metrics = gan_step.update(state, d_objective, g_objective, self.opt_d, self.opt_g,
                                         decay)
    if self.augment:
      metrics["augment_p"] = self.aug_p(step)
    return new_state, {**metrics, "gamma": gamma_t, "lr": self.lr(step), "b2": self.b2(step)}

  # ---- input -----------------------------------------------------------------------------------

  def build_patch_set(self, source: str) -> data_lib.PatchSet:
    """Examples of `source` with condition features computed by this task's conditioner."""
    d = self.config.data
    src = open_source(source) if isinstance(source, str) else source
    self.sources.append(src)
    patches = data_lib.from_source(src, self.config.patch_size, d.max_records,
                                   tuple(d.class_ids) or None, d.max_per_class or None,
                                   skips.policy(self.config))
    for where, why in patches.dropped[:5]:
      logging.warning("stage1 data: dropped %s: %s", where, why)
    patches.cond = self.conditioner.batched(patches.clean)
    return patches

  def abstract_batch(self):
    """The batch `dataset` yields (`fabgen.stage1.data.dataset`), from the config alone."""
    b, p = self.config.batch_size, self.config.patch_size
    return task_lib.batch_spec(patch=((b, p, p, 3), np.uint8), mask=((b, p, p), np.float32),
                               clean=((b, p, p, 3), np.uint8),
                               cond=((b, self.conditioner.dim), np.float32),
                               class_id=((b,), np.int32))

  def dataset(self, process_index, process_count, seed):
    if self.train_set is None:
      self.train_set = self.build_patch_set(self.config.data.source)
    return data_lib.dataset(self.train_set, self.config.batch_size, process_index,
                            process_count, seed, input_options.config_read_options(self.config))

  def input_report(self):
    return skips.report(self.sources)

  def resolve_config(self):
    """The config with `data.class_ids` resolved to the classes the training patches hold.

    `()` means "every class the source has"; the trainer resolves it before a fresh run writes
    the config into the workdir and every checkpoint, so that it tells synthesis which classes
    this generator can paint (a source without knots must not yield one that claims knots).
    """
    d = self.config.data
    if d.class_ids:
      return self.config
    if self.train_set is None:
      self.train_set = self.build_patch_set(d.source)
    config = copy.deepcopy(self.config)
    with config.unlocked():
      config.data.class_ids = tuple(sorted({int(c) for c in self.train_set.class_ids}))
    return config

  def class_ids(self) -> tuple[int, ...]:
    """Global class ids this model was trained to generate (all, for configs saved before
    `warm_start` recorded them)."""
    if self.config.data.class_ids:
      return tuple(int(c) for c in self.config.data.class_ids)
    return tuple(range(self.config.model.num_classes))

  # ---- evaluation ------------------------------------------------------------------------------

  def evaluate(self, state, step, writer, workdir):
    """KID, Gram distance, conditioning check, sample grid (see `fabgen.stage1.evaluate`)."""
    if self.eval_set is None:
      source = self.config.data.eval_source or self.config.data.source
      self.eval_set = (self.build_patch_set(source) if source != self.config.data.source
                       or self.train_set is None else self.train_set)
    params = jax.tree.map(jnp.asarray, jax.device_get(state["g_ema"]))
    result = evaluate_lib.evaluate_all(self, params, self.eval_set, self.config.eval,
                                       seed=self.config.seed)
    grid = result.pop("grid")
    if workdir:
      evaluate_lib.save_png(grid, os.path.join(workdir, "samples", f"grid_{step:07d}.png"))
      with open(os.path.join(workdir, "stage1_condition.json"), "w") as f:
        json.dump({"feature_network": self.conditioner.description,
                   "pretrained": self.conditioner.pretrained}, f)
    if writer is not None:
      writer.write_images(step, {"samples/grid": grid[None]})
    result["cond/pretrained_vgg"] = float(self.conditioner.pretrained)
    return {f"eval/{k}": v for k, v in result.items() if np.ndim(v) == 0}

  def param_count_tree(self, state):
    return {"g": state["g"], "d": state["d"]}
