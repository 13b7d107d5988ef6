"""`FusionTask` ("fusion"): trains the defect-fusion network T against the seam-weighted D_T.

Per step (pure, jitted by the platform): D_T on real defect crops y vs T(x) with any objective
of `fabgen.gan.losses` (+ R1/R2 under RpGAN), seam-weighted, then T on the adversarial loss
plus `l1_weight` * L1(T(x), x) away from the window, i.e. outside `dilate(window, seam_radius)`.
The L1 term and T's reach (`model.reach_radius`) keep the defect where its mask says:
`out_of_mask` (the share of T's absolute change that lies outside the dilated window) is logged
every step, and `OUT_OF_MASK_BOUND` is the bound the tests hold T to.

Config (see configs/fusion.py): image_size, model.{widths, d_widths, blocks, expansion,
group_width, conv_impl, reach_radius}, loss.{objective, seam_radius, seam_weight, l1_weight, r1_gamma, r2_gamma}, optim.{lr_t, lr_d, b2}, ema_half_life,
data.{source, max_records, max_per_class, margin, donors}, batch_size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from fabgen.data import pipeline
from fabgen.gan import losses as gan_losses
from fabgen.nn import r3gan
from fabgen.gan import augment as augment_lib
from fabgen.gan import recipe as recipe_lib
from fabgen.platform import ema as ema_lib
from fabgen.platform import schedules
from fabgen.platform.task import Task
from fabgen.stage2 import config_checks
from fabgen.stage2 import data as data_lib
from fabgen.stage2 import fusion
from fabgen.stage2 import losses

# At most 5% of T's total absolute change may lie outside dilate(window, seam_radius). Why 5%:
# synthesis composites T's output only inside that dilated window, so whatever T changes outside
# is discarded; if that share were large the discarded change would leave a new seam at the
# dilated border (and the fused defect would differ from what T produced). 5% of the change,
# spread over the much larger outside area, is far below the label threshold (tau = 6 levels)
# per pixel, so clipping it is invisible. With the default `model.reach_radius = seam_radius`
# the network cannot act outside at all (measured share 0); with a larger reach (or 0) the L1
# term alone must hold it, which took longer than the tests' 30 tiny steps with the R3GAN blocks
# (measured 0.13-0.20 at step 30, reach 2x seam radius; see the stage-2 report).
OUT_OF_MASK_BOUND = 0.05


def to_signed(images: jax.Array) -> jax.Array:
  """uint8 -> float32 in [-1, 1] (the networks' range)."""
  return images.astype(jnp.float32) / 127.5 - 1.0


class FusionTask(Task):
  """The stage-2 GAN: T (FusionNet), D_T (PatchDiscriminator with the window as input)."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    config_checks.validate_fusion(config)
    m = config.model
    args = fusion.network_args(m)
    self.t_net = r3gan.Functional(lambda rngs: fusion.FusionNet(
        m.widths, m.blocks, **args, reach_radius=m.reach_radius, rngs=rngs))
    self.d_net = r3gan.Functional(lambda rngs: fusion.PatchDiscriminator(
        m.d_widths, extra_channels=1, blocks=m.blocks, **args, rngs=rngs))
    o = config.optim
    self.penalties = config.loss.objective == "rpgan"  # R3GAN's recipe: RpGAN + R1 + R2
    self.recipe = None
    if self.penalties:  # ... with R3GAN's schedules (lr, beta2, gamma, EMA half-life)
      self.recipe = recipe_lib.from_sections(o, config.loss, config.ema_half_life,
                                             config.get("ema_schedule", "r3gan"),
                                             config.total_steps, "lr_t")
      self.opt_t = self.recipe.adam()
      self.opt_d = self.recipe.adam(o.lr_d / o.lr_t)
    else:  # the paper's objectives: constant lr and beta2, StyleGAN's EMA ramp
      self.opt_t = schedules.adam(o.lr_t, b1=0.0, b2=o.b2)
      self.opt_d = schedules.adam(o.lr_d, b1=0.0, b2=o.b2)
    a = config.get("augment")
    self.augment = bool(a and a.enabled)
    if self.augment:  # colour only: D_T's logit map and seam weights are tied to the window
      self.aug_transforms = augment_lib.check_transforms(a.transforms)
      geometric = [t for t in self.aug_transforms if t in augment_lib.GEOMETRIC]
      if geometric:
        raise ValueError(f"config.augment.transforms={tuple(a.transforms)}: the fusion "
                         f"discriminator's logits are tied to window positions, so only colour "
                         f"transforms {augment_lib.COLOR} apply, not {geometric}")
      self.aug_p = augment_lib.probability_schedule(
          a.p_start, a.p_end, config.optim.get("schedule_steps", 0) or config.total_steps)
    self.examples = None  # built lazily from config.data, or set by a caller (tests, notebooks)

  # ---- networks --------------------------------------------------------------------------------

  def apply_t(self, params, x, window):
    """T on signed images [B,S,S,3] and window [B,S,S] -> signed fused images."""
    return self.t_net.apply(params, x, window)

  def apply_d(self, params, images, window):
    return self.d_net.apply(params, images, window[..., None])

  def augmented(self, images, key, step):
    """ADA colour augmentation of what D_T sees (identity when `augment.enabled` is off)."""
    if not self.augment:
      return images
    return augment_lib.augment(key, images, self.aug_p(step), self.aug_transforms)

  def init_state(self, rng):
    kt, kd = jax.random.split(rng)
    t, d = self.t_net.init(kt), self.d_net.init(kd)
    return {"step": jnp.zeros((), jnp.int32), "t": t, "d": d, "t_ema": jax.tree.map(jnp.copy, t),
            "opt_t": self.opt_t.init(t), "opt_d": self.opt_d.init(d)}

  # ---- step ------------------------------------------------------------------------------------

  def train_step(self, state, batch, rng):
    # deterministic given the batch; the rng only draws augmentations (when enabled)
    k_d, k_real, k_fake = jax.random.split(rng, 3)
    step = state["step"]
    c = self.config.loss
    x, y = to_signed(batch["x"]), to_signed(batch["y"])
    window = batch["window"].astype(jnp.float32)
    fake = jax.lax.stop_gradient(self.apply_t(state["t"], x, window))
    both_windows = jnp.concatenate([window, window], 0)
    gamma_shape = self.recipe.gamma_shape(state["step"]) if self.recipe else 1.0

    def d_objective(d_params):
      # D runs once on [real; fake]; R1/R2 come from the same VJP (fabgen.gan.losses).
      d_fn = lambda images: self.apply_d(d_params, self.augmented(images, k_d, step),
                                         both_windows)
      w = losses.seam_weights(window, (window.shape[0],) + self.logit_shape(), c.seam_radius,
                              c.seam_weight)
      return gan_losses.d_objective(c.objective, d_fn, y, fake, c.r1_gamma * gamma_shape,
                                    c.r2_gamma * gamma_shape, use_r1=self.penalties,
                                    use_r2=self.penalties, weights=w)

    (_, d_metrics), d_grads = jax.value_and_grad(d_objective, has_aux=True)(state["d"])
    d_updates, opt_d = self.opt_d.update(d_grads, state["opt_d"], state["d"])
    d_params = optax.apply_updates(state["d"], d_updates)

    def t_objective(t_params):
      out = self.apply_t(t_params, x, window)
      real_logits = self.apply_d(d_params, self.augmented(y, k_real, step), window)
      fake_logits = self.apply_d(d_params, self.augmented(out, k_fake, step), window)
      w = losses.seam_weights(window, fake_logits.shape, c.seam_radius, c.seam_weight)
      adv = gan_losses.g_loss(c.objective, jax.lax.stop_gradient(real_logits), fake_logits, w)
      l1 = losses.outside_l1(out, x, window, c.seam_radius)
      return adv + c.l1_weight * l1, {
          "g_loss": adv, "l1_outside": l1,
          "out_of_mask": losses.out_of_mask_share(out - x, window, c.seam_radius)}

    (_, t_metrics), t_grads = jax.value_and_grad(t_objective, has_aux=True)(state["t"])
    t_updates, opt_t = self.opt_t.update(t_grads, state["opt_t"], state["t"])
    t_params = optax.apply_updates(state["t"], t_updates)
    decay = (self.recipe.ema_decay(state["step"], self.config.batch_size) if self.recipe else
             ema_lib.ema_decay(state["step"], self.config.batch_size, self.config.ema_half_life))
    new_state = {"step": state["step"] + 1, "t": t_params, "d": d_params,
                 "t_ema": ema_lib.ema_update(state["t_ema"], t_params, decay),
                 "opt_t": opt_t, "opt_d": opt_d}
    metrics = {**d_metrics, **t_metrics, "grad_norm/d": optax.tree.norm(d_grads),
               "grad_norm/t": optax.tree.norm(t_grads)}
    return new_state, metrics

  def logit_shape(self) -> tuple[int, int]:
    """(h, w) of D_T's logit map for `image_size` inputs."""
    side = self.config.image_size // 2 ** (len(self.config.model.d_widths) - 1)
    return side, side

  # ---- input -----------------------------------------------------------------------------------

  def build_examples(self) -> data_lib.FusionExamples:
    """Real crops from config.data.source; donors: real crops, or stage-1 patches if configured."""
    from fabgen.data.readers import open_source, spread_indices  # pylint: disable=g-import-not-at-top
    d = self.config.data
    src = open_source(d.source)
    records = [src[i] for i in spread_indices(len(src), d.max_records)]
    real = data_lib.real_crops(records, self.config.image_size, d.max_per_class)
    if d.donors == "real":
      donors = real  # the same bank: each example draws a random donor of its class
    else:
      donors = data_lib.stage1_donors(d.donors, records, d.max_per_class, seed=self.config.seed)
    return data_lib.FusionExamples(real, donors, d.margin)

  def dataset(self, process_index, process_count, seed):
    if self.examples is None:
      self.examples = self.build_examples()
    per_process = self.config.batch_size // process_count
    return data_lib.fusion_dataset(self.examples, per_process, process_index, process_count, seed,
                                   pipeline.config_read_options(self.config))

  def param_count_tree(self, state):
    return {"t": state["t"], "d": state["d"]}
