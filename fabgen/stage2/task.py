"""`FusionTask` ("fusion"): trains the defect-fusion network T against the seam-weighted D_T.

Per step (pure, jitted by the platform): D_T on real defect crops y vs T(x) (+ R1/R2 under
RpGAN), then T on the adversarial loss plus `l1_weight` * L1(T(x), x) away from the window, i.e.
outside `dilate(window, seam_radius)`. The L1 term is what keeps the defect where its mask says:
`out_of_mask` (the share of T's absolute change that lies outside the dilated window) is logged
every step, and `OUT_OF_MASK_BOUND` is the bound the tests hold T to.

Config (see configs/fusion.py): image_size, model.{widths, d_widths, blocks}, loss.{objective,
seam_radius, seam_weight, l1_weight, r1_gamma, r2_gamma}, optim.{lr_t, lr_d, b2}, ema_half_life,
data.{source, max_records, max_per_class, margin, donors}, batch_size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from fabgen.platform import ema as ema_lib
from fabgen.platform import schedules
from fabgen.platform.task import Task
from fabgen.stage2 import config_checks
from fabgen.stage2 import data as data_lib
from fabgen.stage2 import fusion
from fabgen.stage2 import losses
from fabgen.synthesis import compose

# At most 5% of T's total absolute change may lie outside dilate(window, seam_radius). Why 5%:
# synthesis composites T's output only inside that dilated window, so whatever T changes outside
# is discarded; if that share were large the discarded change would leave a new seam at the
# dilated border (and the fused defect would differ from what T produced). 5% of the change,
# spread over the much larger outside area, is far below the label threshold (tau = 6 levels)
# per pixel, so clipping it is invisible. The tiny-config test checks it after training.
OUT_OF_MASK_BOUND = 0.05


def to_signed(images: jax.Array) -> jax.Array:
  """uint8 -> float32 in [-1, 1] (the networks' range)."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def out_of_mask_share(change: jax.Array, window: jax.Array, radius: int) -> jax.Array:
  """Share of sum|change| (change [B,H,W,C]) outside dilate(window, radius)."""
  outside = 1.0 - compose.dilate((window > 0.5).astype(jnp.float32), radius)
  total = jnp.sum(jnp.abs(change))
  return jnp.sum(jnp.abs(change) * outside[..., None]) / jnp.maximum(total, 1e-8)


class FusionTask(Task):
  """The stage-2 GAN: T (FusionNet), D_T (PatchDiscriminator with the window as input)."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    config_checks.validate_fusion(config)
    m = config.model
    abstract_t = nnx.eval_shape(lambda: fusion.FusionNet(m.widths, m.blocks, rngs=nnx.Rngs(0)))
    abstract_d = nnx.eval_shape(lambda: fusion.PatchDiscriminator(
        m.d_widths, extra_channels=1, blocks=m.blocks, rngs=nnx.Rngs(0)))
    self.t_def, self.t_abs, _ = fusion.split_params(abstract_t)
    self.d_def, self.d_abs, _ = fusion.split_params(abstract_d)
    o = config.optim
    self.opt_t = schedules.adam(o.lr_t, b1=0.0, b2=o.b2)
    self.opt_d = schedules.adam(o.lr_d, b1=0.0, b2=o.b2)
    self.examples = None  # built lazily from config.data, or set by a caller (tests, notebooks)

  # ---- networks --------------------------------------------------------------------------------

  def apply_t(self, params, x, window):
    """T on signed images [B,S,S,3] and window [B,S,S] -> signed fused images."""
    return fusion.bind(self.t_def, self.t_abs, params)(x, window)

  def apply_d(self, params, images, window):
    return fusion.bind(self.d_def, self.d_abs, params)(images, window[..., None])

  def init_state(self, rng):
    m = self.config.model
    kt, kd = jax.random.split(rng)
    t = nnx.to_pure_dict(nnx.state(fusion.FusionNet(
        m.widths, m.blocks, rngs=nnx.Rngs(params=kt))))
    d = nnx.to_pure_dict(nnx.state(fusion.PatchDiscriminator(
        m.d_widths, extra_channels=1, blocks=m.blocks, rngs=nnx.Rngs(params=kd))))
    return {"step": jnp.zeros((), jnp.int32), "t": t, "d": d, "t_ema": jax.tree.map(jnp.copy, t),
            "opt_t": self.opt_t.init(t), "opt_d": self.opt_d.init(d)}

  # ---- step ------------------------------------------------------------------------------------

  def train_step(self, state, batch, rng):
    del rng  # the step is deterministic given the batch
    c = self.config.loss
    x, y = to_signed(batch["x"]), to_signed(batch["y"])
    window = batch["window"].astype(jnp.float32)
    fake = self.apply_t(state["t"], x, window)

    def d_objective(d_params):
      real_logits = self.apply_d(d_params, y, window)
      fake_logits = self.apply_d(d_params, jax.lax.stop_gradient(fake), window)
      w = losses.seam_weights(window, real_logits.shape, c.seam_radius, c.seam_weight)
      loss = losses.d_loss(c.objective, real_logits, fake_logits, w)
      r1 = r2 = jnp.zeros(())
      if c.objective == "rpgan":
        r1 = losses.gradient_penalty(lambda im: self.apply_d(d_params, im, window), y, w)
        r2 = losses.gradient_penalty(lambda im: self.apply_d(d_params, im, window),
                                     jax.lax.stop_gradient(fake), w)
      total = loss + 0.5 * c.r1_gamma * r1 + 0.5 * c.r2_gamma * r2
      return total, {"d_loss": loss, "r1": r1, "r2": r2}

    (_, d_metrics), d_grads = jax.value_and_grad(d_objective, has_aux=True)(state["d"])
    d_updates, opt_d = self.opt_d.update(d_grads, state["opt_d"], state["d"])
    d_params = optax.apply_updates(state["d"], d_updates)

    outside = 1.0 - compose.dilate((window > 0.5).astype(jnp.float32), c.seam_radius)

    def t_objective(t_params):
      out = self.apply_t(t_params, x, window)
      real_logits = self.apply_d(d_params, y, window)
      fake_logits = self.apply_d(d_params, out, window)
      w = losses.seam_weights(window, fake_logits.shape, c.seam_radius, c.seam_weight)
      adv = losses.g_loss(c.objective, jax.lax.stop_gradient(real_logits), fake_logits, w)
      l1 = jnp.sum(jnp.abs(out - x) * outside[..., None]) / (
          3.0 * jnp.maximum(jnp.sum(outside), 1.0))
      return adv + c.l1_weight * l1, {"g_loss": adv, "l1_outside": l1,
                                      "out_of_mask": out_of_mask_share(out - x, window,
                                                                       c.seam_radius)}

    (_, t_metrics), t_grads = jax.value_and_grad(t_objective, has_aux=True)(state["t"])
    t_updates, opt_t = self.opt_t.update(t_grads, state["opt_t"], state["t"])
    t_params = optax.apply_updates(state["t"], t_updates)
    decay = ema_lib.ema_decay(state["step"], self.config.batch_size, self.config.ema_half_life)
    new_state = {"step": state["step"] + 1, "t": t_params, "d": d_params,
                 "t_ema": ema_lib.ema_update(state["t_ema"], t_params, decay),
                 "opt_t": opt_t, "opt_d": opt_d}
    metrics = {**d_metrics, **t_metrics, "grad_norm/d": optax.tree.norm(d_grads),
               "grad_norm/t": optax.tree.norm(t_grads)}
    return new_state, metrics

  # ---- input -----------------------------------------------------------------------------------

  def build_examples(self) -> data_lib.FusionExamples:
    """Real crops from config.data.source; donors: real crops, or stage-1 patches if configured."""
    from fabgen.data.readers import open_source  # pylint: disable=g-import-not-at-top
    d = self.config.data
    src = open_source(d.source)
    records = [src[i] for i in range(min(len(src), d.max_records))]
    real = data_lib.real_crops(records, self.config.image_size, d.max_per_class)
    if d.get("donors", "real") == "real":
      donors = data_lib.real_crops(records, self.config.image_size, d.max_per_class)
    else:
      donors = data_lib.stage1_donors(d.donors, records, d.max_per_class, seed=self.config.seed)
    return data_lib.FusionExamples(real, donors, d.margin)

  def dataset(self, process_index, process_count, seed):
    if self.examples is None:
      self.examples = self.build_examples()
    per_process = self.config.batch_size // process_count
    return data_lib.fusion_dataset(self.examples, per_process, process_index, process_count, seed)

  def param_count_tree(self, state):
    return {"t": state["t"], "d": state["d"]}
