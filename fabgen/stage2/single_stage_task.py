"""`SingleStageTask` ("r3gan_inpaint"): trains G(z, background, mask, class) with RpGAN + R1 + R2.

The state also carries the *mask bank* (real defect masks and their classes from the source
data), because synthesis samples defect shapes from it: one checkpoint is then everything the
`r3gan` synthesis method needs.

Config (configs/r3gan_inpaint.py): image_size, model.{widths, d_widths, blocks, expansion,
group_width, conv_impl, noise_channels, mask_bank_size},
loss.{objective, margin, seam_radius, seam_weight, r1_gamma, r2_gamma}, optim.{lr_g, lr_d, b2},
ema_half_life, data.{source, max_records, max_per_class}, batch_size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from fabgen.data import classes as classes_lib
from fabgen.data import pipeline
from fabgen.gan import losses as gan_losses
from fabgen.nn import r3gan
from fabgen.gan import recipe as recipe_lib
from fabgen.platform import ema as ema_lib
from fabgen.platform import schedules
from fabgen.platform.task import Task
from fabgen.stage2 import config_checks
from fabgen.stage2 import data as data_lib
from fabgen.stage2 import fusion
from fabgen.stage2 import losses
from fabgen.stage2 import single_stage
from fabgen.stage2.task import to_signed


class SingleStageTask(Task):
  """Single-stage inpainting GAN; G and D are built from the shared R3GAN blocks in `fusion`."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    config_checks.validate_inpaint(config)
    m = config.model
    args = fusion.network_args(m)
    self.g_net = r3gan.Functional(lambda rngs: single_stage.InpaintGenerator(
        classes_lib.NUM_CLASSES, m.widths, m.blocks, m.noise_channels, **args, rngs=rngs))
    self.d_net = r3gan.Functional(lambda rngs: fusion.PatchDiscriminator(
        m.d_widths, extra_channels=1, blocks=m.blocks, num_classes=classes_lib.NUM_CLASSES,
        **args, rngs=rngs))
    o = config.optim
    self.penalties = config.loss.objective == "rpgan"  # R3GAN's recipe: RpGAN + R1 + R2
    self.recipe = None
    if self.penalties:  # ... with R3GAN's schedules (lr, beta2, gamma, EMA half-life)
      self.recipe = recipe_lib.from_sections(o, config.loss, config.ema_half_life,
                                             config.get("ema_schedule", "r3gan"),
                                             config.total_steps, "lr_g")
      self.opt_g = self.recipe.adam()
      self.opt_d = self.recipe.adam(o.lr_d / o.lr_g)
    else:  # the paper's objectives: constant lr and beta2, StyleGAN's EMA ramp
      self.opt_g = schedules.adam(o.lr_g, b1=0.0, b2=o.b2)
      self.opt_d = schedules.adam(o.lr_d, b1=0.0, b2=o.b2)
    self.crops = None  # (images, masks, classes), built from config.data or set by a caller

  def g_fn(self, params):
    return self.g_net.bind(params)

  def d_fn(self, params):
    net = self.d_net.bind(params)
    return lambda images, mask, class_ids: net(images, mask[..., None], class_ids)

  def get_crops(self):
    if self.crops is None:
      from fabgen.data.readers import open_source, spread_indices  # pylint: disable=g-import-not-at-top
      d = self.config.data
      src = open_source(d.source)
      records = [src[i] for i in spread_indices(len(src), d.max_records)]
      self.crops = data_lib.real_crops(records, self.config.image_size, d.max_per_class)
    return self.crops

  def init_state(self, rng):
    kg, kd = jax.random.split(rng)
    g, d = self.g_net.init(kg), self.d_net.init(kd)
    return {"step": jnp.zeros((), jnp.int32), "g": g, "d": d, "g_ema": jax.tree.map(jnp.copy, g),
            "opt_g": self.opt_g.init(g), "opt_d": self.opt_d.init(d),
            "mask_bank": single_stage.mask_bank(self.get_crops(), self.config.model.mask_bank_size)}

  def generate(self, g_params, background, mask, class_ids, key):
    """Signed composite for signed backgrounds (used by training and by synthesis)."""
    m = self.config
    return single_stage.inpaint(self.g_fn(g_params), background, mask, class_ids, key,
                                m.loss.margin, m.model.noise_channels)

  def train_step(self, state, batch, rng):
    c = self.config.loss
    y = to_signed(batch["y"])
    mask = batch["mask"].astype(jnp.float32)
    cls = batch["class_id"]
    fake = jax.lax.stop_gradient(self.generate(state["g"], y, mask, cls, rng))
    w = losses.seam_weights(single_stage.region(mask, c.margin), (mask.shape[0],) +
                            self.logit_shape(), c.seam_radius, c.seam_weight)
    both_masks, both_cls = jnp.concatenate([mask, mask], 0), jnp.concatenate([cls, cls], 0)
    gamma_shape = self.recipe.gamma_shape(state["step"]) if self.recipe else 1.0

    def d_objective(d_params):
      # D runs once on [real; fake]; R1/R2 come from the same VJP (fabgen.gan.losses).
      d = self.d_fn(d_params)
      return gan_losses.d_objective(c.objective, lambda im: d(im, both_masks, both_cls), y, fake,
                                    c.r1_gamma * gamma_shape, c.r2_gamma * gamma_shape,
                                    use_r1=self.penalties, use_r2=self.penalties, weights=w)

    (_, d_metrics), d_grads = jax.value_and_grad(d_objective, has_aux=True)(state["d"])
    d_updates, opt_d = self.opt_d.update(d_grads, state["opt_d"], state["d"])
    d_params = optax.apply_updates(state["d"], d_updates)

    def g_objective(g_params):
      d = self.d_fn(d_params)
      out = self.generate(g_params, y, mask, cls, rng)
      real_logits, fake_logits = d(y, mask, cls), d(out, mask, cls)
      return gan_losses.g_loss(c.objective, jax.lax.stop_gradient(real_logits), fake_logits, w)

    g_loss, g_grads = jax.value_and_grad(g_objective)(state["g"])
    g_updates, opt_g = self.opt_g.update(g_grads, state["opt_g"], state["g"])
    g_params = optax.apply_updates(state["g"], g_updates)
    decay = (self.recipe.ema_decay(state["step"], self.config.batch_size) if self.recipe else
             ema_lib.ema_decay(state["step"], self.config.batch_size, self.config.ema_half_life))
    new_state = {**state, "step": state["step"] + 1, "g": g_params, "d": d_params,
                 "g_ema": ema_lib.ema_update(state["g_ema"], g_params, decay),
                 "opt_g": opt_g, "opt_d": opt_d}
    return new_state, {**d_metrics, "g_loss": g_loss, "grad_norm/d": optax.tree.norm(d_grads),
                       "grad_norm/g": optax.tree.norm(g_grads)}

  def logit_shape(self) -> tuple[int, int]:
    """(h, w) of D's logit map for `image_size` inputs."""
    side = self.config.image_size // 2 ** (len(self.config.model.d_widths) - 1)
    return side, side

  def dataset(self, process_index, process_count, seed):
    return single_stage.crop_dataset(self.get_crops(), self.config.batch_size // process_count,
                                     process_index, process_count, seed,
                                     pipeline.config_read_options(self.config))

  def param_count_tree(self, state):
    return {"g": state["g"], "d": state["d"]}
