"""`DiffusionTask` ("diffusion"): pre-train a small latent inpainting model on FabricSim.

For users without the SD-2 weights (and for the CPU tests). One state holds the VAE, the U-Net
and the text tower, trained together: the VAE on reconstruction + a small KL term, the U-Net on
the SD-inpainting objective over stop-gradient latents of the VAE (so the autoencoder is not
pulled by the diffusion loss), the text tower through the U-Net's cross-attention. Inpainting
regions are the real defect mask (dilated by nothing) or RealFill's random boxes, half and half;
prompts are "a photo of a <class> defect" on "fabric", dropped to "" 10 % of the time so that
classifier-free guidance has an unconditional branch. DefectFill then fine-tunes this state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fabgen.data import classes as classes_lib
from fabgen.data.readers import open_source, skips
from fabgen.diffusion import data as data_lib
from fabgen.diffusion import losses
from fabgen.diffusion import model as model_lib
from fabgen.diffusion import schedulers
from fabgen.diffusion import unet as unet_lib
from fabgen.platform import input_options
from fabgen.platform import precision as precision_lib
from fabgen.platform import schedules
from fabgen.platform import task as task_lib
from fabgen.platform.task import Task


def class_prompt(class_id: int) -> str:
  return "a photo of a " + classes_lib.CLASSES[class_id].replace("_", " ") + " defect"


def signed(images_u8):
  return images_u8.astype(jnp.float32) / 127.5 - 1.0


class DiffusionTask(Task):
  """Config: model.{unet, vae, text, schedule, remat}, data.{source, image_size, max_records,
  max_per_class}, optim.{lr, warmup_steps, clip_norm}, loss.{rec_weight, kl_weight,
  p_defect_mask, p_drop_prompt}."""

  def __init__(self, config):
    super().__init__(config)
    self.model = model_lib.LatentDiffusion(config.model, config.precision)
    self.policy = precision_lib.Policy.from_config(config.precision)
    o = config.optim
    self.lr = optax.warmup_constant_schedule(0.0, o.lr, max(int(o.warmup_steps), 1))
    self.optimizer = schedules.adam(self.lr, b1=0.9, b2=0.999, clip_norm=o.get("clip_norm"))
    prompts = [class_prompt(c) for c in range(classes_lib.NUM_CLASSES)] + [""]
    self.prompt_ids = self.model.tokens(prompts)   # [classes + 1, N]; the last is unconditional
    self.crops = None
    self.sources = []  # what get_crops read, for `input_report`

  def get_crops(self):
    if self.crops is None:
      d = self.config.data
      src = open_source(d.source)
      self.sources = [src]
      self.crops = data_lib.defect_crops(src, d.image_size, d.max_records, d.max_per_class,
                                         on_unreadable=skips.policy(self.config))
    return self.crops

  def input_report(self):
    return skips.report(self.sources)

  def init_state(self, rng):
    params = self.policy.cast_to_param(self.model.init(rng))
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "opt": self.optimizer.init(params)}

  def loss(self, params, batch, rng):
    c, s, m = self.config.loss, self.model.schedule, self.model
    y = signed(batch["image"])
    b, size = y.shape[0], y.shape[1]
    k_post, k_box, k_pick, k_t, k_noise, k_drop = jax.random.split(rng, 6)
    mean, logvar = m.vae_moments(params["vae"], y)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(k_post, mean.shape)
    rec = m.decode_unscaled(params["vae"], z)
    l_rec = jnp.mean(jnp.abs(rec - y))
    l_kl = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)

    latents = jax.lax.stop_gradient(z) * m.vae_cfg.scaling_factor
    use_defect = jax.random.bernoulli(k_pick, c.p_defect_mask, (b, 1, 1))
    region = jnp.where(use_defect, batch["mask"], data_lib.box_masks(k_box, b, size))
    masked = jax.lax.stop_gradient(m.encode(params["vae"], y * (1.0 - region[..., None])))
    m_lat = model_lib.mask_to_latent(region, m.downsample)
    t = jax.random.randint(k_t, (b,), 0, s.num_train_timesteps)
    noise = jax.random.normal(k_noise, latents.shape)
    x_in = unet_lib.inpaint_input(schedulers.add_noise(s, latents, noise, t), m_lat, masked)
    cls = jnp.where(jax.random.bernoulli(k_drop, c.p_drop_prompt, (b,)),
                    classes_lib.NUM_CLASSES, batch["class_id"])
    ctx = m.text(params["text"], jnp.asarray(self.prompt_ids)[cls])
    pred, _ = m.eps(params["unet"], x_in, t, ctx)
    l_diff = losses.inpainting_loss(pred, schedulers.training_target(s, latents, noise, t))
    total = l_diff + c.rec_weight * l_rec + c.kl_weight * l_kl
    return total, {"loss": total, "loss/diffusion": l_diff, "loss/rec": l_rec, "loss/kl": l_kl}

  def train_step(self, state, batch, rng):
    grads, metrics = jax.grad(self.loss, has_aux=True)(state["params"], batch, rng)
    updates, opt = self.optimizer.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return ({"step": state["step"] + 1, "params": params, "opt": opt},
            {**metrics, "grad_norm/unet": optax.tree.norm(grads["unet"]),
             "grad_norm/vae": optax.tree.norm(grads["vae"]),
             "grad_norm/text": optax.tree.norm(grads["text"]), "lr": self.lr(state["step"])})

  def abstract_batch(self):
    """The batch `dataset` yields (`fabgen.diffusion.data.crop_dataset`), data-free."""
    b, s = self.config.batch_size, self.config.data.image_size
    return task_lib.batch_spec(image=((b, s, s, 3), np.uint8), mask=((b, s, s), np.float32),
                               class_id=((b,), np.int32))

  def dataset(self, process_index, process_count, seed):
    return data_lib.crop_dataset(self.get_crops(), self.config.batch_size, process_index,
                                 process_count, seed, input_options.config_read_options(self.config))

  def param_count_tree(self, state):
    return {"params": state["params"]}

  def evaluate(self, state, step, writer, workdir):
    """Reconstruction error of a fixed crop batch (the VAE), and its images next to the crops."""
    del workdir
    from fabgen.platform import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
    images = self.get_crops()[0][:8]
    vae = sharding_lib.to_host(state["params"]["vae"])
    y = signed(jnp.asarray(images))
    rec = jnp.clip(self.model.decode(vae, self.model.encode(vae, y)), -1, 1)
    if writer is not None:
      grid = np.concatenate([np.concatenate(list(np.asarray(y)), 1),
                             np.concatenate(list(np.asarray(rec)), 1)], 0)
      writer.write_images(step, {"eval/vae_reconstruction": ((grid + 1) / 2)[None]})
    return {"eval/rec_l1": float(jnp.mean(jnp.abs(rec - y)))}
