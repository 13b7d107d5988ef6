"""Builds the tiny diffusers / transformers parity fixtures (needs the `diffusion-parity` extra).

  /work/venv-diffusion/bin/python tests/diffusion/make_fixtures.py tests/diffusion/fixtures

Random tiny UNet2DConditionModel(in_channels=9), AutoencoderKL, CLIPTextModel, a CLIP BPE
vocabulary and the SD-2 DDIM/DDPM schedulers, saved in the diffusers folder layout
(safetensors), plus `reference.npz` with their outputs on fixed inputs (NHWC where images).
The tests load these with fabgen only (no torch) and compare within 1e-4.
"""

import json
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

WORDS = ["a", "photo", "of", "fabric", "with", "knot", "oil", "stain", "defect"]
PROMPTS = ["A photo of a knot", "a fabric with oil stain!", "defect"]


def byte_chars():
  keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
  out, n = [], 0
  for b in range(256):
    if b in keep:
      out.append(chr(b))
    else:
      out.append(chr(256 + n))
      n += 1
  return out


def make_tokenizer(folder):
  os.makedirs(folder, exist_ok=True)
  chars = byte_chars()
  vocab = chars + [c + "</w>" for c in chars]
  merges = []
  for w in WORDS:  # merge each word left to right into one token
    parts = list(w[:-1]) + [w[-1] + "</w>"]
    while len(parts) > 1:
      a, b = parts[0], parts[1]
      if (a, b) not in merges:
        merges.append((a, b))
        if a + b not in vocab:
          vocab.append(a + b)
      parts = [a + b] + parts[2:]
  vocab += ["<|startoftext|>", "<|endoftext|>"]
  with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
  with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
  tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                      pad_token="!", model_max_length=16)
  tok.save_pretrained(folder)
  return tok, len(vocab)


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def main(out):
  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  ref = {}
  tok, vocab_size = make_tokenizer(os.path.join(out, "tokenizer"))
  ids = tok(PROMPTS, padding="max_length", max_length=16, truncation=True,
            return_tensors="pt").input_ids
  ref["token_ids"] = ids.numpy()

  text = CLIPTextModel(CLIPTextConfig(
      vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
      num_attention_heads=2, max_position_embeddings=16, hidden_act="gelu",
      bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=0)).eval()
  text.save_pretrained(os.path.join(out, "text_encoder"), safe_serialization=True)
  with torch.no_grad():
    ref["text_hidden"] = text(ids).last_hidden_state.numpy()

  unet = UNet2DConditionModel(
      sample_size=8, in_channels=9, out_channels=4, layers_per_block=2,
      block_out_channels=(8, 16, 16), norm_num_groups=4, cross_attention_dim=16,
      attention_head_dim=(2, 2, 4), use_linear_projection=True,
      down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")).eval()
  with torch.no_grad():  # random (not zero) output convs so the comparison sees every path
    for p in unet.parameters():
      p.add_(0.05 * torch.randn_like(p))
  unet.save_pretrained(os.path.join(out, "unet"), safe_serialization=True)
  x = rng.normal(size=(2, 9, 8, 8)).astype(np.float32)
  ctx = rng.normal(size=(2, 16, 16)).astype(np.float32)
  t = np.array([10, 731], np.int64)
  with torch.no_grad():
    eps = unet(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(ctx)).sample
  ref.update(unet_x=x.transpose(0, 2, 3, 1), unet_t=t, unet_ctx=ctx, unet_eps=nhwc(eps))

  vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16),
                      down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1,
                      latent_channels=4, norm_num_groups=4, sample_size=16).eval()
  with torch.no_grad():
    for p in vae.parameters():
      p.add_(0.05 * torch.randn_like(p))
  vae.save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
  img = rng.uniform(-1, 1, size=(1, 3, 16, 16)).astype(np.float32)
  with torch.no_grad():
    post = vae.encode(torch.from_numpy(img)).latent_dist
    dec = vae.decode(post.mean).sample
  ref.update(vae_x=img.transpose(0, 2, 3, 1), vae_mean=nhwc(post.mean),
             vae_logvar=nhwc(post.logvar), vae_decoded=nhwc(dec))

  for pred in ("epsilon", "v_prediction"):
    kw = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
              beta_schedule="scaled_linear", prediction_type=pred, clip_sample=False,
              set_alpha_to_one=False, steps_offset=1)
    ddim = DDIMScheduler(**kw)
    if pred == "epsilon":
      ddim.save_pretrained(os.path.join(out, "scheduler"))
    ddim.set_timesteps(10)
    ref[f"ddim_{pred}_timesteps"] = ddim.timesteps.numpy()
    sample = torch.from_numpy(rng.normal(size=(1, 4, 4, 4)).astype(np.float32))
    out_model = torch.from_numpy(rng.normal(size=(1, 4, 4, 4)).astype(np.float32))
    ref[f"ddim_{pred}_sample"], ref[f"ddim_{pred}_model_output"] = nhwc(sample), nhwc(out_model)
    ref[f"ddim_{pred}_prev"] = np.stack([nhwc(ddim.step(out_model, int(tt), sample).prev_sample)
                                         for tt in ddim.timesteps[[0, 5, 9]]])
    ref[f"ddim_{pred}_step_ts"] = ddim.timesteps.numpy()[[0, 5, 9]]
  ddpm = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                       beta_schedule="scaled_linear")
  x0 = torch.from_numpy(rng.normal(size=(3, 4, 4, 4)).astype(np.float32))
  noise = torch.from_numpy(rng.normal(size=(3, 4, 4, 4)).astype(np.float32))
  ts = torch.tensor([0, 400, 999])
  ref.update(ddpm_x0=nhwc(x0), ddpm_noise=nhwc(noise), ddpm_t=ts.numpy(),
             ddpm_noisy=nhwc(ddpm.add_noise(x0, noise, ts)),
             ddpm_velocity=nhwc(ddpm.get_velocity(x0, noise, ts)))
  np.savez_compressed(os.path.join(out, "reference.npz"), **ref)
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
  print(f"wrote {out}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures"))
