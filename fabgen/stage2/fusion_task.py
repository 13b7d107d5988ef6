"""The fusion task, `FusionTask` ("fusion"): trains stage 2's defect-fusion network T against
the seam-weighted discriminator D_T.

Per step (pure, jitted by the platform; the update itself is `fabgen.gan.step.update`): D_T on
real defect crops y vs T(x) with any objective of `fabgen.gan.losses` (+ R1/R2 under RpGAN),
seam-weighted, then T, against the updated D_T, on the adversarial loss plus `l1_weight` *
L1(T(x), x) away from the window, i.e. outside `dilate(window, seam_radius)`; then T's EMA.
The L1 term and T's reach (`model.reach_radius`) keep the defect where its mask says:
`out_of_mask` (the share of T's absolute change that lies outside the dilated window) is logged
every step, and `OUT_OF_MASK_BOUND` is the bound the tests hold T to.

Config (see configs/fusion.py): image_size, model.{widths, d_widths, blocks, expansion,
group_width, conv_impl, reach_radius}, loss.{objective, seam_radius, seam_weight, l1_weight,
r1_gamma, r2_gamma}, optim.{lr_t, lr_d, b2}, ema_half_life, data.{source, max_records,
max_per_class, margin, donors}, batch_size, grid.{gammas, seeds}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fabgen.data import defect_crops
from fabgen.data.readers import open_source, skips, spread_indices
from fabgen.gan import augment as augment_lib
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
# (measured 0.13-0.20 at step 30, reach 2x seam radius).
OUT_OF_MASK_BOUND = 0.05


class FusionTask(grid_task.R1R2GridSteps, Task):
  """The stage-2 GAN: T (FusionNet), D_T (PatchDiscriminator with the window as input)."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    config_checks.validate_fusion(config)
    m = config.model
    self.t_net = nnx_bridge.PureModule(lambda rngs: fusion.FusionNet.from_config(m, rngs))
    self.d_net = nnx_bridge.PureModule(lambda rngs: fusion.PatchDiscriminator.from_config(m, rngs))
    self.policy = precision_lib.Policy.from_config(config.precision)
    self.penalties = self.penalised(config)  # R3GAN's recipe: RpGAN + R1 + R2 ...
    # ... with R3GAN's schedules; the paper's objectives with constant lr and beta2
    self.recipe, self.opt_t, self.opt_d = recipe_lib.optimizers(config, "lr_t")
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
    self.sources = []  # what build_examples read, for `input_report`

  # ---- networks --------------------------------------------------------------------------------

  def apply_t(self, params, x, window):
    """T on signed images [B,S,S,3] and window [B,S,S] -> signed fused images."""
    return self.policy.apply(self.t_net, params, x, window)

  def fusion_reach(self) -> int:
    """How far from a patch's mask `fuse` may change pixels: the region's margin plus T's seam."""
    return int(self.config.data.margin + self.config.loss.seam_radius)

  def fuse(self, t_params, background, patch, patch_mask, domain=None, keep_near_mask=False):
    """Fuses a defect patch into signed background windows, as synthesis needs it.

    background [B,S,S,3] and patch [B,S,S,3] signed, patch_mask [B,S,S] (zero where the patch
    is not). T's input is built as its training examples are (`fabgen.stage2.data`): the patch
    pasted over R = defect_region(mask, data.margin) (times `domain`, where the patch has data);
    of T's output only dilate(R, seam_radius) is kept (T's change outside it is bounded by
    `OUT_OF_MASK_BOUND` in training). `keep_near_mask` keeps only dilate(mask, seam_radius) within
    R instead: for patches scaled into a real box, R's margin band holds stretched stage-1
    background that T turns into fabric, and whatever it leaves there would be labelled a defect.
    """
    c = self.config
    region = mask_ops.defect_region(patch_mask, c.data.margin)
    if domain is not None:
      region = region * domain
    x = mask_ops.paste(background, patch, region)
    fused = self.apply_t(t_params, x, region)
    if keep_near_mask:
      kept = mask_ops.defect_region(patch_mask, c.loss.seam_radius) * region
    else:
      kept = mask_ops.dilate(region, c.loss.seam_radius)
    return mask_ops.paste(background, fused, kept)

  def apply_d(self, params, images, window):
    return self.policy.apply(self.d_net, params, images, window[..., None])

  def augmented(self, images, key, step):
    """ADA colour augmentation of what D_T sees (identity when `augment.enabled` is off)."""
    if not self.augment:
      return images
    return augment_lib.augment(key, images, self.aug_p(step), self.aug_transforms)

  def init_state(self, rng):
    kt, kd = jax.random.split(rng)
    return gan_step.init_state(self.t_net.init(kt), self.d_net.init(kd), self.opt_t, self.opt_d,
                               g="t")

  # ---- step ------------------------------------------------------------------------------------

  def _step(self, state, batch, rng, r1_gamma, r2_gamma):
    # deterministic given the batch; the rng only draws augmentations (when enabled)
    k_d, k_real, k_fake = jax.random.split(rng, 3)
    step = state["step"]
    c = self.config.loss
    x, y = mask_ops.to_signed(batch["x"]), mask_ops.to_signed(batch["y"])
    window = batch["window"].astype(jnp.float32)
    fake = jax.lax.stop_gradient(self.apply_t(state["t"], x, window))
    both_windows = jnp.concatenate([window, window], 0)
    gamma_shape = self.recipe.gamma_shape(step) if self.recipe else 1.0

    def d_objective(d_params):
      # D runs once on [real; fake]; R1/R2 come from the same VJP (fabgen.gan.losses).
      d_fn = lambda images: self.apply_d(d_params, self.augmented(images, k_d, step),
                                         both_windows)
      w = losses.seam_weights(window, (window.shape[0],) + self.logit_shape(), c.seam_radius,
                              c.seam_weight)
      return gan_losses.d_objective(c.objective, d_fn, y, fake, r1_gamma * gamma_shape,
                                    r2_gamma * gamma_shape, use_r1=self.penalties,
                                    use_r2=self.penalties, weights=w)

    def t_objective(t_params, d_params):
      out = self.apply_t(t_params, x, window)
      real_logits = self.apply_d(d_params, self.augmented(y, k_real, step), window)
      fake_logits = self.apply_d(d_params, self.augmented(out, k_fake, step), window)
      w = losses.seam_weights(window, fake_logits.shape, c.seam_radius, c.seam_weight)
      adv = gan_losses.g_loss(c.objective, jax.lax.stop_gradient(real_logits), fake_logits, w)
      l1 = losses.outside_l1(out, x, window, c.seam_radius)
      return adv + c.l1_weight * l1, {
          "g_loss": adv, "l1_outside": l1,
          "out_of_mask": losses.out_of_mask_share(out - x, window, c.seam_radius)}

    decay = recipe_lib.ema_decay_at(self.recipe, self.config, step)
    return gan_step.update(state, d_objective, t_objective, self.opt_d, self.opt_t, decay, g="t")

  def logit_shape(self) -> tuple[int, int]:
    """(h, w) of D_T's logit map for `image_size` inputs."""
    side = self.config.image_size // 2 ** (len(self.config.model.d_widths) - 1)
    return side, side

  # ---- input -----------------------------------------------------------------------------------

  def build_examples(self) -> data_lib.FusionExamples:
    """Real crops from config.data.source, and the donors pasted into them.

    Donors are stage-1 patches when `data.donors` names a stage-1 workdir: the paper's setup and
    what `fabgen adapt` passes (configs/adapt.py fusion_donors="stage1"), since T must learn to
    fuse what it is given at synthesis. "real" (real crops of other images) is the ablation and
    the standalone default when no stage-1 model exists yet.
    """
    d = self.config.data
    src = open_source(d.source)
    self.sources = [src]
    records = list(skips.read_records(src, spread_indices(len(src), d.max_records),
                                      skips.policy(self.config)))
    real = defect_crops.extract_crops(records, self.config.image_size, d.max_per_class)
    if d.donors == "real":
      donors = real  # the same bank: each example draws a random donor of its class
    else:
      donors = data_lib.stage1_donors(d.donors, records, d.max_per_class, seed=self.config.seed)
    return data_lib.FusionExamples(real, donors, d.margin)

  def abstract_batch(self):
    """The batch `dataset` yields (`fabgen.stage2.data.FusionExamples.example`), data-free."""
    b, s = self.config.batch_size, self.config.image_size
    return task_lib.batch_spec(x=((b, s, s, 3), np.uint8), y=((b, s, s, 3), np.uint8),
                               window=((b, s, s), np.float32), class_id=((b,), np.int32))

  def dataset(self, process_index, process_count, seed):
    if self.examples is None:
      self.examples = self.build_examples()
    per_process = self.config.batch_size // process_count
    return data_lib.fusion_dataset(self.examples, per_process, process_index, process_count, seed,
                                   input_options.config_read_options(self.config))

  def input_report(self):
    return skips.report(self.sources)

  def param_count_tree(self, state):
    return {"t": state["t"], "d": state["d"]}
