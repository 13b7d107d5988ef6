"""The three networks of latent inpainting diffusion as one bundle of pure functions.

`LatentDiffusion` builds the VAE, U-Net and text tower from a config (or reads their sizes from a
diffusers folder) as three `nnx_bridge.PureModule`s (key-stream init: these are deep models whose
`nnx.Rngs` trace costs half a minute at SD-2 size), and exposes `encode`, `decode`, `eps` and
`text` functions of pure-dict parameters - the form the platform keeps in its state pytree. The
vocabulary of a model trained from scratch is a small CLIP-format BPE built from a word list
(`build_vocab`), so the same tokenizer class serves SD-2's 49k vocabulary and the CPU models.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fabgen.data import classes as classes_lib
from fabgen.diffusion import loader
from fabgen.diffusion import schedulers
from fabgen.diffusion import text_encoder as text_lib
from fabgen.diffusion import tokenizer as tok_lib
from fabgen.diffusion import unet as unet_lib
from fabgen.diffusion import vae as vae_lib
from fabgen.platform import nnx_bridge

# Words the from-scratch vocabulary merges whole (prompts of pre-training and DefectFill).
BASE_WORDS = ("a", "photo", "of", "with", "fabric", "defect", "an", "image") + tuple(
    w for name in classes_lib.CLASSES for w in name.split("_"))


def build_vocab(words=BASE_WORDS):
  """(vocab, merges) of a CLIP-format BPE: every byte symbol (+ `</w>`), each word merged whole."""
  chars = list(tok_lib.bytes_to_unicode().values())
  vocab = chars + [c + "</w>" for c in chars]
  seen, merges = set(vocab), []
  for w in words:
    parts = list(w[:-1]) + [w[-1] + "</w>"]
    while len(parts) > 1:
      pair = (parts[0], parts[1])
      if pair not in merges:
        merges.append(pair)
        if pair[0] + pair[1] not in seen:
          vocab.append(pair[0] + pair[1])
          seen.add(pair[0] + pair[1])
      parts = [pair[0] + pair[1]] + parts[2:]
  vocab += ["<|startoftext|>", "<|endoftext|>"]
  return {t: i for i, t in enumerate(vocab)}, merges


class LatentDiffusion:
  """Sizes from `model` (a ConfigDict with unet/vae/text dicts) or a diffusers folder."""

  def __init__(self, model, precision=None):
    from fabgen.platform import precision as precision_lib  # pylint: disable=g-import-not-at-top
    self.policy = precision_lib.Policy.from_config(precision) if precision else None
    lora = dict(lora_rank=int(model.get("lora_rank", 0)),
                lora_alpha=float(model.get("lora_alpha", 0.0)))
    folder = model.get("pretrained", "")
    remat = bool(model.get("remat", False))
    if folder:
      self.unet_cfg = loader.unet_config(loader.read_config(os.path.join(folder, "unet")),
                                         remat=remat, **lora)
      self.vae_cfg = loader.vae_config(loader.read_config(os.path.join(folder, "vae")))
      self.text_cfg = loader.text_config(
          loader.read_config(os.path.join(folder, "text_encoder")), **lora)
      self.tokenizer = tok_lib.CLIPTokenizer.from_folder(os.path.join(folder, "tokenizer"))
      sched_path = os.path.join(folder, "scheduler")
      self.schedule = schedulers.Schedule.from_dict(
          loader.read_config_file(os.path.join(sched_path, "scheduler_config.json"))
          if os.path.isdir(sched_path) else {})
    else:
      vocab, merges = build_vocab()
      self.tokenizer = tok_lib.CLIPTokenizer(vocab, merges, max_length=int(model.text.max_length))
      self.unet_cfg = unet_lib.UNetConfig.from_dict({**model.unet.to_dict(), "remat": remat,
                                                     **lora})
      self.vae_cfg = vae_lib.VAEConfig.from_dict(model.vae.to_dict())
      t = {k: v for k, v in model.text.to_dict().items() if k != "max_length"}
      self.text_cfg = text_lib.TextConfig.from_dict({**t, "vocab_size": len(vocab),
                                                     "max_position_embeddings":
                                                     int(model.text.max_length), **lora})
      self.schedule = schedulers.Schedule.from_dict(model.get("schedule", {}))
    self.folder = folder
    self.latent_channels = self.vae_cfg.latent_channels
    self.downsample = self.vae_cfg.downsample
    self.placeholder_id = self.tokenizer.placeholder_id
    self.unet_net = nnx_bridge.PureModule(
        lambda rngs: unet_lib.UNet2DConditionModel(self.unet_cfg, rngs=rngs), key_stream=True)
    self.vae_net = nnx_bridge.PureModule(
        lambda rngs: vae_lib.AutoencoderKL(self.vae_cfg, rngs=rngs), key_stream=True)
    self.text_net = nnx_bridge.PureModule(
        lambda rngs: text_lib.CLIPTextModel(self.text_cfg, rngs=rngs), key_stream=True)

  # ---- parameters -------------------------------------------------------------------------
  def init(self, rng):
    """Random pure-dict parameters {"unet", "vae", "text"} (traceable)."""
    ku, kv, kt = jax.random.split(rng, 3)
    return {"unet": self.unet_net.init(ku), "vae": self.vae_net.init(kv),
            "text": self.text_net.init(kt)}

  def load_pretrained(self):
    """Host numpy pure dicts of the diffusers folder's weights (LoRA pairs at their init)."""
    out = {}
    for name, fn in (("unet", lambda: loader.load_unet(self.folder, **self._lora())),
                     ("vae", lambda: loader.load_vae(self.folder)),
                     ("text", lambda: loader.load_text_encoder(self.folder, **self._lora()))):
      out[name] = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(fn(), nnx.Param)))
    return out

  def _lora(self):
    return dict(lora_rank=self.unet_cfg.lora_rank, lora_alpha=self.unet_cfg.lora_alpha)

  def _bind(self, net: nnx_bridge.PureModule, params):
    if self.policy is not None:
      params = self.policy.cast_to_compute(params)
    return net.bind(params)

  def _in(self, x):
    return self.policy.cast_to_compute(x) if self.policy is not None else x

  def _out(self, x):
    return self.policy.cast_to_output(x) if self.policy is not None else x

  # ---- networks ---------------------------------------------------------------------------
  def encode(self, vae_params, images, key=None):
    """images [-1, 1] NHWC -> scaled latents (posterior mean, or a sample with `key`)."""
    return self._out(self._bind(self.vae_net, vae_params).encode_latent(
        self._in(images), key))

  def vae_moments(self, vae_params, images):
    mean, logvar = self._bind(self.vae_net, vae_params).encode(self._in(images))
    return self._out(mean), self._out(logvar)

  def decode(self, vae_params, latents):
    return self._out(self._bind(self.vae_net, vae_params).decode_latent(
        self._in(latents)))

  def decode_unscaled(self, vae_params, z):
    return self._out(self._bind(self.vae_net, vae_params).decode(self._in(z)))

  def text(self, text_params, ids, v_star=None):
    """Prompt states [B, N, D]; `v_star` is the [V*] embedding (None: no placeholder)."""
    model = self._bind(self.text_net, text_params)
    if v_star is None:
      return self._out(model(ids))
    return self._out(model(ids, self.placeholder_id, self._in(v_star)))

  def eps(self, unet_params, x, t, context, token_index=None):
    """U-Net output (eps or v) for the 9-channel input; with `token_index`, also the decoder
    cross-attention map of that token [B, h, w]."""
    model = self._bind(self.unet_net, unet_params)
    out, amap = model(self._in(x), t, self._in(context), token_index)
    return self._out(out), (None if amap is None else self._out(amap))

  def tokens(self, prompts) -> np.ndarray:
    return self.tokenizer(list(prompts))


def mask_to_latent(mask, factor: int):
  """[B, H, W] {0,1} image mask -> [B, H/f, W/f, 1]: a latent cell is masked if any pixel is
  (max-pool, not diffusers' nearest pick, so that thin defects such as broken ends survive)."""
  b, h, w = mask.shape
  m = mask.reshape(b, h // factor, factor, w // factor, factor).max(axis=(2, 4))
  return m[..., None].astype(jnp.float32)
