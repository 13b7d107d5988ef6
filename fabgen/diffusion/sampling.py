"""Inpainting sampling (DDIM + classifier-free guidance) and Low-Fidelity Selection.

`inpaint` runs the SD-2 inpainting loop: the 9-channel input [x_t, mask, masked-image latent] at
every DDIM step, guided by (uncond, cond) prompt states, decoded by the VAE, then pasted back so
that pixels outside the mask are the original's. `low_fidelity_select` draws K such candidates
and keeps the one whose masked region differs most from the defect-free background (1 - SSIM
inside the mask): candidates that merely redrew the background lose.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fabgen.diffusion import model as model_lib
from fabgen.diffusion import schedulers
from fabgen.diffusion import unet as unet_lib


def inpaint(model: model_lib.LatentDiffusion, params, v_star, images, masks, cond_ids,
            uncond_ids, key, steps: int, guidance: float):
  """images [-1, 1] [B, H, W, 3], masks {0,1} [B, H, W] -> inpainted images [B, H, W, 3]."""
  s = model.schedule
  b, h, w, _ = images.shape
  f = model.downsample
  masked_lat = model.encode(params["vae"], images * (1.0 - masks[..., None]))
  m_lat = model_lib.mask_to_latent(masks, f)
  ids = jnp.concatenate([jnp.broadcast_to(uncond_ids, (b, uncond_ids.shape[-1])),
                         jnp.broadcast_to(cond_ids, (b, cond_ids.shape[-1]))])
  ctx = model.text(params["text"], ids, v_star)
  x = jax.random.normal(key, (b, h // f, w // f, model.latent_channels))

  def step(x, t):
    inp = unet_lib.inpaint_input(x, m_lat, masked_lat)
    out, _ = model.eps(params["unet"], jnp.concatenate([inp, inp]), t, ctx)
    out = schedulers.guided(out[:b], out[b:], guidance)
    return schedulers.ddim_step(s, out, t, x, steps), None

  x, _ = jax.lax.scan(step, x, jnp.asarray(schedulers.ddim_timesteps(s, steps)))
  decoded = jnp.clip(model.decode(params["vae"], x), -1.0, 1.0)
  return schedulers.paste_back(decoded, images, masks[..., None])


def _box(x, r: int):
  """Mean over (2r+1)^2 windows, same size (edge-padded), on [..., H, W]."""
  k = 2 * r + 1
  pad = [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)]
  xp = jnp.pad(x, pad, mode="edge")
  c = jnp.cumsum(jnp.cumsum(xp, -1), -2)
  c = jnp.pad(c, [(0, 0)] * (x.ndim - 2) + [(1, 0), (1, 0)])
  return (c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]) / (k * k)


def masked_ssim_distance(a, b, mask, radius: int = 3):
  """1 - mean SSIM inside `mask` of grey images a, b ([..., H, W, 3] in [-1, 1])."""
  ga, gb = jnp.mean(a, -1), jnp.mean(b, -1)
  ma, mb = _box(ga, radius), _box(gb, radius)
  va = _box(ga * ga, radius) - ma * ma
  vb = _box(gb * gb, radius) - mb * mb
  cov = _box(ga * gb, radius) - ma * mb
  c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2   # for a dynamic range of 2
  ssim = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
  area = jnp.maximum(jnp.sum(mask, axis=(-2, -1)), 1.0)
  return 1.0 - jnp.sum(ssim * mask, axis=(-2, -1)) / area


def low_fidelity_select(candidates, background, mask):
  """candidates [K, B, H, W, 3], background [B, H, W, 3], mask [B, H, W] -> ([B, H, W, 3], the
  chosen index [B], distances [K, B]): per sample the candidate least like the background."""
  d = masked_ssim_distance(candidates, background[None], mask[None])
  best = jnp.argmax(d, axis=0)
  chosen = jnp.take_along_axis(candidates, best[None, :, None, None, None], axis=0)[0]
  return chosen, best, d
