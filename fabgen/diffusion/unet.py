"""The inpainting U-Net (diffusers `UNet2DConditionModel`, SD-2 layout) in NNX.

Input is the diffusers 9-channel order `[noisy latent (4), mask (1), masked-image latent (4)]`
(`inpaint_input`). Blocks are cross-attention down blocks except the last, a cross-attention mid
block, and mirrored up blocks; every size comes from `UNetConfig`, from a CPU-test toy to SD-2
(320/640/1280/1280, 5/10/20/20 heads of 64 dims, context 1024). With `token_index` the forward
also returns the decoder (up-block) cross-attention map of that prompt token, averaged over
layers and heads, which is what DefectFill's L_attn compares with the defect mask.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.diffusion import layers as L


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  in_channels: int = 9
  out_channels: int = 4
  block_out_channels: tuple = (320, 640, 1280, 1280)
  attention_heads: tuple = (5, 10, 20, 20)   # diffusers' `attention_head_dim` (really heads)
  cross_attention: tuple = (True, True, True, False)  # CrossAttn{Down,Up}Block2D vs plain
  layers_per_block: int = 2
  cross_attention_dim: int = 1024
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  lora_rank: int = 0
  lora_alpha: float = 0.0
  remat: bool = False  # gradient checkpointing of each ResNet / transformer block

  @classmethod
  def from_dict(cls, d) -> "UNetConfig":
    d = dict(d)
    for k in ("block_out_channels", "attention_heads", "cross_attention"):
      if k in d:
        d[k] = tuple(d[k])
    return cls(**d)


def _maybe_remat(fn, on: bool):
  return nnx.remat(fn) if on else fn


class DownBlock(nnx.Module):
  def __init__(self, cin, cout, temb, heads, cfg: UNetConfig, attn: bool, down: bool, *, rngs):
    g, eps = cfg.norm_num_groups, cfg.norm_eps
    self.resnets = nnx.List([L.ResnetBlock2D(cin if i == 0 else cout, cout, temb, g, eps,
                                             rngs=rngs) for i in range(cfg.layers_per_block)])
    self.attentions = nnx.List([
        L.Transformer2DModel(cout, heads, cfg.cross_attention_dim, g, lora_rank=cfg.lora_rank,
                             lora_alpha=cfg.lora_alpha, rngs=rngs)
        for _ in range(cfg.layers_per_block)]) if attn else None
    self.downsamplers = nnx.List([L.Downsample2D(cout, 1, rngs=rngs)]) if down else None
    self.remat = cfg.remat

  def __call__(self, x, temb, context):
    outs = []
    for i, res in enumerate(self.resnets):
      x = _maybe_remat(lambda m, x, t: m(x, t), self.remat)(res, x, temb)
      if self.attentions is not None:
        x, _ = _maybe_remat(lambda m, x, c: m(x, c), self.remat)(self.attentions[i], x, context)
      outs.append(x)
    if self.downsamplers is not None:
      x = self.downsamplers[0](x)
      outs.append(x)
    return x, outs


class UpBlock(nnx.Module):
  def __init__(self, cin, cout, prev, temb, heads, cfg: UNetConfig, attn: bool, up: bool, *,
               rngs):
    g, eps, n = cfg.norm_num_groups, cfg.norm_eps, cfg.layers_per_block + 1
    self.resnets = nnx.List([
        L.ResnetBlock2D((prev if i == 0 else cout) + (cin if i == n - 1 else cout), cout, temb,
                        g, eps, rngs=rngs) for i in range(n)])
    self.attentions = nnx.List([
        L.Transformer2DModel(cout, heads, cfg.cross_attention_dim, g, lora_rank=cfg.lora_rank,
                             lora_alpha=cfg.lora_alpha, rngs=rngs)
        for _ in range(n)]) if attn else None
    self.upsamplers = nnx.List([L.Upsample2D(cout, rngs=rngs)]) if up else None
    self.remat = cfg.remat

  def __call__(self, x, skips, temb, context, token_index=None):
    maps = []
    for i, res in enumerate(self.resnets):
      x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = _maybe_remat(lambda m, x, t: m(x, t), self.remat)(res, x, temb)
      if self.attentions is not None:
        x, amap = _maybe_remat(lambda m, x, c, ti: m(x, c, ti), self.remat)(
            self.attentions[i], x, context, token_index)
        if amap is not None:
          maps.append(amap)
    if self.upsamplers is not None:
      x = self.upsamplers[0](x)
    return x, maps


class MidBlock(nnx.Module):
  def __init__(self, c, temb, heads, cfg: UNetConfig, *, rngs):
    g, eps = cfg.norm_num_groups, cfg.norm_eps
    self.resnets = nnx.List([L.ResnetBlock2D(c, c, temb, g, eps, rngs=rngs) for _ in range(2)])
    self.attentions = nnx.List([L.Transformer2DModel(
        c, heads, cfg.cross_attention_dim, g, lora_rank=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha, rngs=rngs)])

  def __call__(self, x, temb, context):
    x = self.resnets[0](x, temb)
    x, _ = self.attentions[0](x, context)
    return self.resnets[1](x, temb)


class UNet2DConditionModel(nnx.Module):
  """eps_theta(x_t, t, prompt states); inputs NHWC."""

  def __init__(self, cfg: UNetConfig, *, rngs: L.KeyGen):
    self.cfg = cfg
    ch = cfg.block_out_channels
    temb = ch[0] * 4
    self.conv_in = L.conv(cfg.in_channels, ch[0], 3, rngs)
    self.time_embedding = L.TimestepEmbedding(ch[0], temb, rngs=rngs)
    self.down_blocks = nnx.List()
    cout = ch[0]
    for i in range(len(ch)):
      cin, cout = cout, ch[i]
      self.down_blocks.append(DownBlock(cin, cout, temb, cfg.attention_heads[i], cfg,
                                        cfg.cross_attention[i], i < len(ch) - 1, rngs=rngs))
    self.mid_block = MidBlock(ch[-1], temb, cfg.attention_heads[-1], cfg, rngs=rngs)
    self.up_blocks = nnx.List()
    rch, rheads, rattn = ch[::-1], cfg.attention_heads[::-1], cfg.cross_attention[::-1]
    cout = rch[0]
    for i in range(len(ch)):
      prev, cout = cout, rch[i]
      cin = rch[min(i + 1, len(ch) - 1)]
      self.up_blocks.append(UpBlock(cin, cout, prev, temb, rheads[i], cfg, rattn[i],
                                    i < len(ch) - 1, rngs=rngs))
    self.conv_norm_out = L.group_norm(ch[0], cfg.norm_num_groups, cfg.norm_eps, rngs)
    self.conv_out = L.conv(ch[0], cfg.out_channels, 3, rngs)

  def __call__(self, x, t, context, token_index=None):
    """x [B, h, w, in_channels], t [B] (or scalar), context [B, N, D].

    Returns eps [B, h, w, out] and, with `token_index` [B], the decoder cross-attention map of
    that token at latent resolution [B, h, w] (each layer's map upsampled nearest, then averaged)
    - else None.
    """
    t = jnp.broadcast_to(jnp.asarray(t), (x.shape[0],))
    temb = self.time_embedding(L.timestep_embedding(t, self.cfg.block_out_channels[0]).astype(
        x.dtype))
    h = self.conv_in(x)
    skips = [h]
    for block in self.down_blocks:
      h, outs = block(h, temb, context)
      skips.extend(outs)
    h = self.mid_block(h, temb, context)
    maps = []
    for block in self.up_blocks:
      h, m = block(h, skips, temb, context, token_index)
      maps.extend(m)
    out = self.conv_out(jax.nn.silu(self.conv_norm_out(h)))
    if token_index is None:
      return out, None
    size = x.shape[1]
    ups = [jnp.repeat(jnp.repeat(m, size // m.shape[1], 1), size // m.shape[2], 2) for m in maps]
    return out, jnp.mean(jnp.stack(ups), axis=0)


def inpaint_input(noisy_latent, mask, masked_latent):
  """The diffusers channel order: [noisy latent, mask (latent-size, nearest), masked-image latent]."""
  return jnp.concatenate([noisy_latent, mask.astype(noisy_latent.dtype), masked_latent], axis=-1)
