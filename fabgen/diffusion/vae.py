"""The KL autoencoder (diffusers `AutoencoderKL`, SD layout) in NNX.

Images in [-1, 1] -> latents with `downsample = 2 ** (len(channels) - 1)` (8 for SD, 4 in the
CPU tests), `latent_channels` channels (4), a diagonal Gaussian posterior; latents are multiplied
by `scaling_factor` (0.18215) before the U-Net sees them (done by the caller, as in diffusers).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.diffusion import layers as L


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  in_channels: int = 3
  out_channels: int = 3
  block_out_channels: tuple = (128, 256, 512, 512)
  layers_per_block: int = 2
  latent_channels: int = 4
  norm_num_groups: int = 32
  scaling_factor: float = 0.18215

  @classmethod
  def from_dict(cls, d) -> "VAEConfig":
    d = dict(d)
    d["block_out_channels"] = tuple(d.get("block_out_channels", cls.block_out_channels))
    return cls(**d)

  @property
  def downsample(self) -> int:
    return 2 ** (len(self.block_out_channels) - 1)


class VAEMidBlock(nnx.Module):
  def __init__(self, c: int, groups: int, *, rngs):
    self.resnets = nnx.List([L.ResnetBlock2D(c, c, None, groups, 1e-6, rngs=rngs)
                             for _ in range(2)])
    self.attentions = nnx.List([L.Attention(c, 1, qkv_bias=True, group_norm_groups=groups,
                                            eps=1e-6, rngs=rngs)])

  def __call__(self, x):
    x = self.resnets[0](x)
    x = self.attentions[0].spatial(x)
    return self.resnets[1](x)


class EncoderBlock(nnx.Module):
  def __init__(self, cin, cout, n, groups, down: bool, *, rngs):
    self.resnets = nnx.List([L.ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, 1e-6,
                                             rngs=rngs) for i in range(n)])
    self.downsamplers = nnx.List([L.Downsample2D(cout, 0, rngs=rngs)]) if down else None

  def __call__(self, x):
    for r in self.resnets:
      x = r(x)
    return self.downsamplers[0](x) if self.downsamplers is not None else x


class DecoderBlock(nnx.Module):
  def __init__(self, cin, cout, n, groups, up: bool, *, rngs):
    self.resnets = nnx.List([L.ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, 1e-6,
                                             rngs=rngs) for i in range(n)])
    self.upsamplers = nnx.List([L.Upsample2D(cout, rngs=rngs)]) if up else None

  def __call__(self, x):
    for r in self.resnets:
      x = r(x)
    return self.upsamplers[0](x) if self.upsamplers is not None else x


class Encoder(nnx.Module):
  def __init__(self, cfg: VAEConfig, *, rngs):
    ch, g = cfg.block_out_channels, cfg.norm_num_groups
    self.conv_in = L.conv(cfg.in_channels, ch[0], 3, rngs)
    self.down_blocks = nnx.List([
        EncoderBlock(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block, g, i < len(ch) - 1,
                     rngs=rngs) for i in range(len(ch))])
    self.mid_block = VAEMidBlock(ch[-1], g, rngs=rngs)
    self.conv_norm_out = L.group_norm(ch[-1], g, 1e-6, rngs)
    self.conv_out = L.conv(ch[-1], 2 * cfg.latent_channels, 3, rngs)

  def __call__(self, x):
    h = self.conv_in(x)
    for b in self.down_blocks:
      h = b(h)
    h = self.mid_block(h)
    return self.conv_out(jax.nn.silu(self.conv_norm_out(h)))


class Decoder(nnx.Module):
  def __init__(self, cfg: VAEConfig, *, rngs):
    ch, g = cfg.block_out_channels[::-1], cfg.norm_num_groups
    self.conv_in = L.conv(cfg.latent_channels, ch[0], 3, rngs)
    self.mid_block = VAEMidBlock(ch[0], g, rngs=rngs)
    self.up_blocks = nnx.List([
        DecoderBlock(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block + 1, g, i < len(ch) - 1,
                     rngs=rngs) for i in range(len(ch))])
    self.conv_norm_out = L.group_norm(ch[-1], g, 1e-6, rngs)
    self.conv_out = L.conv(ch[-1], cfg.out_channels, 3, rngs)

  def __call__(self, z):
    h = self.mid_block(self.conv_in(z))
    for b in self.up_blocks:
      h = b(h)
    return self.conv_out(jax.nn.silu(self.conv_norm_out(h)))


class AutoencoderKL(nnx.Module):
  """encode -> (mean, logvar) of the unscaled latent; decode(unscaled latent) -> image."""

  def __init__(self, cfg: VAEConfig, *, rngs: L.KeyGen):
    self.cfg = cfg
    z = cfg.latent_channels
    self.encoder = Encoder(cfg, rngs=rngs)
    self.decoder = Decoder(cfg, rngs=rngs)
    self.quant_conv = L.conv(2 * z, 2 * z, 1, rngs)
    self.post_quant_conv = L.conv(z, z, 1, rngs)

  def encode(self, x):
    moments = self.quant_conv(self.encoder(x))
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)

  def decode(self, z):
    return self.decoder(self.post_quant_conv(z))

  def encode_latent(self, x, key=None):
    """Scaled latent: the posterior mean (key None) or a sample, times `scaling_factor`."""
    mean, logvar = self.encode(x)
    if key is not None:
      mean = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
    return mean * self.cfg.scaling_factor

  def decode_latent(self, z):
    return self.decode(z / self.cfg.scaling_factor)
