"""`InpainterTask` ("inpainter"): trains G(z, background, mask, class) with RpGAN + R1 + R2.

The state also carries the *mask bank* (real defect masks and their classes from the source
data), because synthesis samples defect shapes from it: one checkpoint is then everything the
`inpainter` synthesis method needs. `init_state` allocates the bank empty (data-free, so a
checkpoint restores without reading the data); `warm_start` fills it on a fresh run. The
adversarial update is `fabgen.gan.step.update`.

Config (configs/inpainter.py): image_size, model.{widths, d_widths, blocks, expansion,
group_width, conv_impl, noise_channels, mask_bank_size},
loss.{objective, margin, seam_radius, seam_weight, r1_gamma, r2_gamma}, optim.{lr_g, lr_d, b2},
ema_half_life, data.{source, max_records, max_per_class}, batch_size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fabgen.data import classes as classes_lib
from fabgen.data import defect_crops
from fabgen.data.readers import open_source, skips, spread_indices
from fabgen.gan import grid_task
from fabgen.gan import losses as gan_losses
from fabgen.gan import recipe as recipe_lib
from fabgen.gan import step as gan_step
from fabgen.nn import masks as mask_ops
from fabgen.platform import input_options
from fabgen.platform import nnx_bridge
from fabgen.platform import precision as precision_lib
from fabgen.platform import task as task_lib
from fabgen.platform.task import Task
from fabgen.stage2 import config_checks
from fabgen.stage2 import fusion
from fabgen.stage2 import inpainter
from fabgen.stage2 import losses


class InpainterTask(grid_task.R1R2GridSteps, Task):
  """Single-stage inpainting GAN; G and D are built from the shared R3GAN blocks in `fusion`."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    config_checks.validate_inpainter(config)
    m = config.model
    k = classes_lib.NUM_CLASSES
    self.g_net = nnx_bridge.PureModule(lambda rngs: inpainter.Inpainter.from_config(m, k, rngs))
    self.d_net = nnx_bridge.PureModule(
        lambda rngs: fusion.PatchDiscriminator.from_config(m, rngs, num_classes=k))
    self.policy = precision_lib.Policy.from_config(config.precision)
    self.penalties = self.penalised(config)  # R3GAN's recipe: RpGAN + R1 + R2 ...
    # ... with R3GAN's schedules; the paper's objectives with constant lr and beta2
    self.recipe, self.opt_g, self.opt_d = recipe_lib.optimizers(config, "lr_g")
    self.crops = None  # (images, masks, classes), built from config.data or set by a caller
    self.sources = []  # what get_crops read, for `input_report`

  def g_fn(self, params):
    return self.policy.bind(self.g_net, params)

  def d_fn(self, params):
    net = self.policy.bind(self.d_net, params)
    return lambda images, mask, class_ids: net(images, mask[..., None], class_ids)

  def get_crops(self):
    if self.crops is None:
      d = self.config.data
      src = open_source(d.source)
      self.sources = [src]
      records = list(skips.read_records(src, spread_indices(len(src), d.max_records),
                                        skips.policy(self.config)))
      self.crops = defect_crops.extract_crops(records, self.config.image_size, d.max_per_class)
    return self.crops

  def init_state(self, rng):
    """G, D, EMA, optimizers and an empty mask bank (data-free; `warm_start` fills the bank)."""
    kg, kd = jax.random.split(rng)
    size, s = self.config.model.mask_bank_size, self.config.image_size
    bank = {"masks": jnp.zeros((size, s, s), jnp.float32),
            "classes": jnp.full((size,), -1, jnp.int32)}
    return gan_step.init_state(self.g_net.init(kg), self.d_net.init(kd), self.opt_g, self.opt_d,
                               mask_bank=bank)

  def warm_start(self, state):
    """Fills the mask bank with real defect shapes of the training data (a fresh run only)."""
    bank = inpainter.mask_bank(self.get_crops(), self.config.model.mask_bank_size)
    filled = {k: jax.device_put(v, state["mask_bank"][k].sharding) for k, v in bank.items()}
    return {**state, "mask_bank": filled}

  def generate(self, g_params, background, mask, class_ids, key):
    """Signed composite for signed backgrounds (used by training and by synthesis)."""
    m = self.config
    return inpainter.inpaint(self.g_fn(g_params), background, mask, class_ids, key,
                             m.loss.margin, m.model.noise_channels)

  def _step(self, state, batch, rng, r1_gamma, r2_gamma):
    c = self.config.loss
    y = mask_ops.to_signed(batch["y"])
    mask = batch["mask"].astype(jnp.float32)
    cls = batch["class_id"]
    fake = jax.lax.stop_gradient(self.generate(state["g"], y, mask, cls, rng))
    w = losses.seam_weights(mask_ops.defect_region(mask, c.margin), (mask.shape[0],) +
                            self.logit_shape(), c.seam_radius, c.seam_weight)
    both_masks, both_cls = jnp.concatenate([mask, mask], 0), jnp.concatenate([cls, cls], 0)
    gamma_shape = self.recipe.gamma_shape(state["step"]) if self.recipe else 1.0

    def d_objective(d_params):
      # D runs once on [real; fake]; R1/R2 come from the same VJP (fabgen.gan.losses).
      d = self.d_fn(d_params)
      return gan_losses.d_objective(c.objective, lambda im: d(im, both_masks, both_cls), y, fake,
                                    r1_gamma * gamma_shape, r2_gamma * gamma_shape,
                                    use_r1=self.penalties, use_r2=self.penalties, weights=w)

    def g_objective(g_params, d_params):
      d = self.d_fn(d_params)
      out = self.generate(g_params, y, mask, cls, rng)
      real_logits, fake_logits = d(y, mask, cls), d(out, mask, cls)
      loss = gan_losses.g_loss(c.objective, jax.lax.stop_gradient(real_logits), fake_logits, w)
      return loss, {"g_loss": loss}

    decay = recipe_lib.ema_decay_at(self.recipe, self.config, state["step"])
    return gan_step.update(state, d_objective, g_objective, self.opt_d, self.opt_g, decay)

  def logit_shape(self) -> tuple[int, int]:
    """(h, w) of D's logit map for `image_size` inputs."""
    side = self.config.image_size // 2 ** (len(self.config.model.d_widths) - 1)
    return side, side

  def abstract_batch(self):
    """The batch `dataset` yields (`fabgen.stage2.inpainter.crop_dataset`), data-free."""
    b, s = self.config.batch_size, self.config.image_size
    return task_lib.batch_spec(y=((b, s, s, 3), np.uint8), mask=((b, s, s), np.float32),
                               class_id=((b,), np.int32))

  def dataset(self, process_index, process_count, seed):
    return inpainter.crop_dataset(self.get_crops(), self.config.batch_size // process_count,
                                     process_index, process_count, seed,
                                     input_options.config_read_options(self.config))

  def input_report(self):
    return skips.report(self.sources)

  def param_count_tree(self, state):
    return {"g": state["g"], "d": state["d"]}
