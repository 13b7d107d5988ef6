"""`DefectFillTask` ("defectfill"): few-shot fine-tune of a latent inpainting model on a defect.

One fine-tune per (fabric, defect class) from a handful of reference crops. A new token [V*]
(a trainable embedding) comes to mean "this defect" through three losses (losses.py):
L_def with prompt "a photo of [V*]" inpainting the real mask M, L_obj with "a <object> with [V*]"
inpainting RealFill random boxes and weighted by M' = M + alpha (1 - M), and L_attn pulling the
[V*] decoder cross-attention map onto M during the L_obj pass.

Trainable parameters are LoRA pairs on the U-Net attention projections and the text tower's
attention (`model.lora_rank` > 0), or the whole U-Net and text tower (`lora_rank` 0, "full"),
plus [V*]; the VAE is always frozen. The state keeps `train` (what the optimizer sees: only LoRA
pairs and [V*] with LoRA on) apart from `frozen` (passed through untouched), and the optimizer
is an optax `multi_transform` with separate learning rates for the U-Net and the text side.
The base weights come from a pre-training workdir (`model.init_from`, task "diffusion") or a
diffusers folder (`model.pretrained`), loaded in `warm_start`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fabgen.data import classes as classes_lib
from fabgen.data.readers import open_source, skips
from fabgen.diffusion import data as data_lib
from fabgen.diffusion import lora as lora_lib
from fabgen.diffusion import losses
from fabgen.diffusion import model as model_lib
from fabgen.diffusion import schedulers
from fabgen.diffusion import unet as unet_lib
from fabgen.diffusion.pretrain_task import signed
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import input_options
from fabgen.platform import precision as precision_lib
from fabgen.platform.task import Task


class DefectFillTask(Task):
  """Config: model.{... as configs/diffusion.py, lora_rank, lora_alpha, init_from},
  data.{source, class_name, num_refs, image_size, max_records, fabric}, loss.{l_def, l_obj,
  l_attn, alpha, object_name}, optim.{lr_unet, lr_text, warmup_steps}."""

  def __init__(self, config):
    super().__init__(config)
    self.model = model_lib.LatentDiffusion(config.model, config.precision)
    self.policy = precision_lib.Policy.from_config(config.precision)
    self.use_lora = int(config.model.lora_rank) > 0
    self.class_id = classes_lib.class_id(config.data.class_name)
    lo = config.loss
    self.def_prompt = "a photo of [V*]"
    self.obj_prompt = f"a {lo.object_name} with [V*]"
    ids = self.model.tokens([self.def_prompt, self.obj_prompt, ""])
    self.def_ids, self.obj_ids, self.uncond_ids = ids[0], ids[1], ids[2]
    self.obj_token_index = self.model.tokenizer.index_of_placeholder(self.obj_prompt)
    o = config.optim
    warm = max(int(o.warmup_steps), 1)
    self.lr_unet = optax.warmup_constant_schedule(0.0, o.lr_unet, warm)
    self.lr_text = optax.warmup_constant_schedule(0.0, o.lr_text, warm)
    self.optimizer = optax.multi_transform(
        {"unet": optax.adam(self.lr_unet), "text": optax.adam(self.lr_text)},
        lambda tree: {k: jax.tree.map(lambda _: "unet" if k == "unet" else "text", v)
                      for k, v in tree.items()})
    self.crops = None
    self.sources = []  # what get_crops read, for `input_report`

  # ---- state ------------------------------------------------------------------------------
  def is_trainable(self, path) -> bool:
    """LoRA pairs (LoRA on) or every U-Net / text leaf (full); never the VAE."""
    if path[0] == "vae":
      return False
    return lora_lib.is_lora_path(path) if self.use_lora else True

  def init_state(self, rng):
    k_params, k_v = jax.random.split(rng)
    params = self.policy.cast_to_param(self.model.init(k_params))
    train, frozen = lora_lib.partition(params, self.is_trainable)
    train["v_star"] = 0.02 * jax.random.normal(k_v, (self.model.text_cfg.hidden_size,))
    s = int(self.config.data.image_size)
    return {"step": jnp.zeros((), jnp.int32), "train": train, "frozen": frozen,
            "opt": self.optimizer.init(train),
            "mask_bank": jnp.zeros((int(self.config.data.num_refs), s, s), jnp.float32)}

  def base_weights(self):
    """Host pure dicts {"unet", "vae", "text"} of the base model (no LoRA leaves)."""
    m = self.config.model
    if m.get("pretrained"):
      return lora_lib.strip(self.model.load_pretrained())
    if not m.get("init_from"):
      raise ValueError("defectfill: set model.init_from (a `diffusion` workdir) or "
                       "model.pretrained (a diffusers folder) - there is nothing to fine-tune")
    try:
      _, _, state = checkpoint_lib.restore(m.init_from, expect="diffusion")
    except ValueError as e:
      raise ValueError(f"defectfill: model.init_from: {e}") from None
    return jax.tree.map(np.asarray, state["params"])

  def warm_start(self, state):
    """Base weights into `frozen` (and `train` when fine-tuning fully), [V*] from the mean token
    embedding, the reference masks into the mask bank; LoRA pairs keep their init (B = 0)."""
    base = self.base_weights()
    train_base, frozen_base = lora_lib.partition(base, self.is_trainable)

    def put(target, source, name):
      flat_t = dict(jax.tree_util.tree_flatten_with_path(target)[0])
      flat_s = dict(jax.tree_util.tree_flatten_with_path(source)[0])
      if set(flat_t) != set(flat_s):
        missing = sorted(map(jax.tree_util.keystr, set(flat_t) - set(flat_s)))[:3]
        raise ValueError(f"defectfill: base weights do not fit the model ({name}): missing "
                         f"{missing}; do model sizes match the pre-training config?")
      return jax.tree.map(lambda t, s_: jax.device_put(np.asarray(s_, t.dtype), t.sharding),
                          target, source)

    frozen = put(state["frozen"], frozen_base, "frozen")
    train = dict(state["train"])
    if not self.use_lora:
      base_train = put({k: v for k, v in train.items() if k != "v_star"}, train_base, "train")
      train.update(base_train)
    table = base["text"]["text_model"]["embeddings"]["token_embedding"]["embedding"]
    train["v_star"] = jax.device_put(np.asarray(table, np.float32).mean(0).astype(
        state["train"]["v_star"].dtype), state["train"]["v_star"].sharding)
    masks = self.get_crops()[1]
    reps = np.resize(np.arange(len(masks)), int(self.config.data.num_refs))
    bank = jax.device_put(masks[reps].astype(np.float32), state["mask_bank"].sharding)
    return {**state, "train": train, "frozen": frozen, "mask_bank": bank}

  def get_crops(self):
    if self.crops is None:
      d = self.config.data
      src = open_source(d.source)
      self.sources = [src]
      self.crops = data_lib.defect_crops(src, d.image_size, d.max_records, d.num_refs,
                                         class_ids=[self.class_id],
                                         fabric=d.get("fabric", None),
                                         on_unreadable=skips.policy(self.config))
    return self.crops

  def input_report(self):
    return skips.report(self.sources)

  # ---- training ---------------------------------------------------------------------------
  def params(self, train, frozen):
    """Full {"unet", "vae", "text"} parameters (LoRA pairs included when on) and [V*]."""
    t = {k: v for k, v in train.items() if k != "v_star"}
    return lora_lib.combine(t, frozen), train["v_star"]

  def losses(self, train, frozen, batch, rng):
    c, s, m = self.config.loss, self.model.schedule, self.model
    params, v_star = self.params(train, frozen)
    y = signed(batch["image"])
    b, size = y.shape[0], y.shape[1]
    mask = batch["mask"].astype(jnp.float32)
    m_lat = model_lib.mask_to_latent(mask, m.downsample)
    latents = jax.lax.stop_gradient(m.encode(params["vae"], y))
    k_t, k_n1, k_n2, k_box = jax.random.split(rng, 4)
    t = jax.random.randint(k_t, (b,), 0, s.num_train_timesteps)

    def pass_(region_img, noise_key, ids, token_index=None):
      masked = jax.lax.stop_gradient(m.encode(params["vae"], y * (1.0 - region_img[..., None])))
      noise = jax.random.normal(noise_key, latents.shape)
      x_in = unet_lib.inpaint_input(schedulers.add_noise(s, latents, noise, t),
                                    model_lib.mask_to_latent(region_img, m.downsample), masked)
      ctx = m.text(params["text"], jnp.broadcast_to(jnp.asarray(ids), (b, ids.shape[0])), v_star)
      tok = None if token_index is None else jnp.full((b,), token_index, jnp.int32)
      pred, amap = m.eps(params["unet"], x_in, t, ctx, tok)
      return pred, schedulers.training_target(s, latents, noise, t), amap

    pred, target, _ = pass_(mask, k_n1, self.def_ids)
    l_def = losses.defect_loss(pred, target, m_lat)
    boxes = data_lib.box_masks(k_box, b, size)
    pred, target, amap = pass_(boxes, k_n2, self.obj_ids, self.obj_token_index)
    l_obj = losses.object_loss(pred, target, m_lat, c.alpha)
    l_attn = losses.attention_loss(amap, m_lat)
    total = c.l_def * l_def + c.l_obj * l_obj + c.l_attn * l_attn
    return total, {"loss": total, "loss/def": l_def, "loss/obj": l_obj, "loss/attn": l_attn}

  def train_step(self, state, batch, rng):
    grads, metrics = jax.grad(self.losses, has_aux=True)(state["train"], state["frozen"], batch,
                                                         rng)
    updates, opt = self.optimizer.update(grads, state["opt"], state["train"])
    train = optax.apply_updates(state["train"], updates)
    return ({**state, "step": state["step"] + 1, "train": train, "opt": opt},
            {**metrics, "grad_norm/unet": optax.tree.norm(grads.get("unet", {})),
             "grad_norm/text": optax.tree.norm(grads.get("text", {})),
             "grad_norm/v_star": optax.tree.norm(grads["v_star"]),
             "lr/unet": self.lr_unet(state["step"]), "lr/text": self.lr_text(state["step"])})

  def dataset(self, process_index, process_count, seed):
    return data_lib.crop_dataset(self.get_crops(), self.config.batch_size, process_index,
                                 process_count, seed, input_options.config_read_options(self.config))

  def param_count_tree(self, state):
    return {"train": state["train"]}

  # ---- inference --------------------------------------------------------------------------
  def base_model(self) -> model_lib.LatentDiffusion:
    """The same networks without LoRA pairs (what merged weights run in)."""
    if not self.use_lora:
      return self.model
    if getattr(self, "_base_model", None) is None:
      m = self.config.model.copy_and_resolve_references()
      with m.unlocked():
        m.lora_rank, m.lora_alpha = 0, 0.0
      self._base_model = model_lib.LatentDiffusion(m, self.config.precision)
    return self._base_model

  def inference_params(self, state, merge_lora: bool = True):
    """(model, {"unet", "vae", "text"}, v_star) for sampling; with `merge_lora` the LoRA pairs
    are folded into the kernels and the model is the rank-0 one (one matmul per projection)."""
    params, v_star = self.params(state["train"], state["frozen"])
    if self.use_lora and merge_lora:
      r, a = int(self.config.model.lora_rank), float(self.config.model.lora_alpha)
      params = {k: lora_lib.merge(v, r, a) for k, v in params.items()}
      return self.base_model(), params, v_star
    return self.model, params, v_star
