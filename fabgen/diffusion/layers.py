"""Building blocks shared by the U-Net, the VAE and the text tower, named as diffusers names them.

Every parameter path (`down_blocks/0/resnets/1/conv1/kernel`) mirrors a diffusers key
(`down_blocks.0.resnets.1.conv1.weight`), which is what lets `loader.py` map weights without a
hand-written table. `Dense` carries an optional LoRA pair (`lora_a`, `lora_b`) so DefectFill can
fine-tune attention projections while the base kernel stays frozen; with rank 0 it is a plain
linear layer and the model's parameter tree is exactly the diffusers one.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.platform import nnx_bridge
from fabgen.platform import sharding as sharding_lib


# The bridge's plain-Python key stream: what every layer here is built with (`rngs()` per key).
KeyGen = nnx_bridge.KeyStream


class Conv(nnx.Module):
  """NHWC conv with an HWIO `kernel` and a `bias` (torch Conv2d semantics, explicit padding)."""

  def __init__(self, cin, cout, k, stride, padding, *, rngs: KeyGen):
    self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs(), (k, k, cin, cout)))
    self.bias = nnx.Param(jnp.zeros((cout,)))
    self.stride, self.padding = stride, padding

  def __call__(self, x):
    y = jax.lax.conv_general_dilated(
        x, self.kernel[...].astype(x.dtype), (self.stride, self.stride), self.padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + self.bias[...].astype(x.dtype)


class GroupNorm(nnx.Module):
  """torch GroupNorm over NHWC (contiguous channel groups), f32 statistics."""

  def __init__(self, c, groups, eps):
    if c % groups:
      raise ValueError(f"GroupNorm: {c} channels are not divisible into {groups} groups")
    self.scale = nnx.Param(jnp.ones((c,)))
    self.bias = nnx.Param(jnp.zeros((c,)))
    self.groups, self.eps = groups, eps

  def __call__(self, x):
    shape = x.shape
    g = x.astype(jnp.float32).reshape(shape[0], -1, self.groups, shape[-1] // self.groups)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = jnp.square(g - mean).mean(axis=(1, 3), keepdims=True)
    y = ((g - mean) * jax.lax.rsqrt(var + self.eps)).reshape(shape)
    return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class LayerNorm(nnx.Module):
  def __init__(self, c, eps):
    self.scale = nnx.Param(jnp.ones((c,)))
    self.bias = nnx.Param(jnp.zeros((c,)))
    self.eps = eps

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class Embed(nnx.Module):
  def __init__(self, n, d, *, rngs: KeyGen):
    self.embedding = nnx.Param(0.02 * jax.random.normal(rngs(), (n, d)))


class Dense(nnx.Module):
  """y = x W + b (+ (alpha / r) x A B when a LoRA rank is set; B starts at zero)."""

  def __init__(self, din: int, dout: int, *, use_bias: bool = True, lora_rank: int = 0,
               lora_alpha: float = 0.0, rngs: KeyGen):
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs(), (din, dout)))
    self.bias = nnx.Param(jnp.zeros((dout,))) if use_bias else None
    self.lora_scale = (lora_alpha / lora_rank) if lora_rank else 0.0
    if lora_rank:
      self.lora_a = nnx.Param(nnx.initializers.normal(1.0 / lora_rank)(rngs(),
                                                                     (din, lora_rank)))
      self.lora_b = nnx.Param(jnp.zeros((lora_rank, dout)))
    else:
      self.lora_a = self.lora_b = None

  def __call__(self, x):
    y = x @ self.kernel[...].astype(x.dtype)
    if self.lora_a is not None:
      y = y + self.lora_scale * ((x @ self.lora_a[...].astype(x.dtype))
                                 @ self.lora_b[...].astype(x.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(x.dtype)
    return y


def conv(cin: int, cout: int, k: int, rngs: KeyGen, stride: int = 1, padding=None):
  """A torch-style Conv2d (symmetric padding k // 2 unless given) in NHWC."""
  pad = k // 2 if padding is None else padding
  if isinstance(pad, int):
    pad = ((pad, pad), (pad, pad))
  return Conv(cin, cout, k, stride, pad, rngs=rngs)


def group_norm(c: int, groups: int, eps: float, rngs=None):
  del rngs
  return GroupNorm(c, groups, eps)


def layer_norm(c: int, eps: float, rngs=None):
  del rngs
  return LayerNorm(c, eps)


def timestep_embedding(t, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0.0,
                       max_period: float = 10000.0):
  """Sinusoidal embedding of (possibly fractional) timesteps [B] -> [B, dim], diffusers' formula."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift))
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  if flip_sin_to_cos:
    emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
  return emb


def batch_sharded(x):
  """`x` with its leading (batch) dim over the mesh's (data, fsdp) axes, the rest as the
  partitioner likes; a no-op outside a mesh. At block boundaries: left free, the partitioner
  resharded activations like the fsdp-split weights (diffusion.py:64 at data=4,fsdp=2 logged 9
  involuntary full rematerialisations, in the text MLPs and the time embedding)."""
  return sharding_lib.constrain(x, "batch", *([None] * (x.ndim - 1)))


class TimestepEmbedding(nnx.Module):
  def __init__(self, cin: int, cout: int, *, rngs: KeyGen):
    self.linear_1 = Dense(cin, cout, rngs=rngs)
    self.linear_2 = Dense(cout, cout, rngs=rngs)

  def __call__(self, x):
    return batch_sharded(self.linear_2(batch_sharded(jax.nn.silu(self.linear_1(x)))))


class ResnetBlock2D(nnx.Module):
  """GroupNorm-SiLU-conv twice, time embedding added between, 1x1 shortcut when widths differ."""

  def __init__(self, cin: int, cout: int, temb: int | None, groups: int, eps: float, *,
               rngs: KeyGen):
    self.norm1 = group_norm(cin, groups, eps, rngs)
    self.conv1 = conv(cin, cout, 3, rngs)
    self.time_emb_proj = Dense(temb, cout, rngs=rngs) if temb else None
    self.norm2 = group_norm(cout, groups, eps, rngs)
    self.conv2 = conv(cout, cout, 3, rngs)
    self.conv_shortcut = conv(cin, cout, 1, rngs) if cin != cout else None

  def __call__(self, x, temb=None):
    h = self.conv1(jax.nn.silu(self.norm1(x)))
    if self.time_emb_proj is not None:
      h = h + self.time_emb_proj(jax.nn.silu(temb))[:, None, None, :]
    h = self.conv2(jax.nn.silu(self.norm2(h)))
    if self.conv_shortcut is not None:
      x = self.conv_shortcut(x)
    return batch_sharded(x + h)


class Downsample2D(nnx.Module):
  """Stride-2 3x3 conv; `padding=0` is the VAE's (0, 1, 0, 1) asymmetric pad."""

  def __init__(self, c: int, padding: int, *, rngs: KeyGen):
    pad = ((0, 1), (0, 1)) if padding == 0 else padding
    self.conv = conv(c, c, 3, rngs, stride=2, padding=pad)

  def __call__(self, x):
    return self.conv(x)


class Upsample2D(nnx.Module):
  """Nearest x2 then 3x3 conv."""

  def __init__(self, c: int, *, rngs: KeyGen):
    self.conv = conv(c, c, 3, rngs)

  def __call__(self, x):
    return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


def attention(q, k, v, heads: int, mask=None, return_probs: bool = False):
  """Multi-head softmax attention on [B, N, heads*d] inputs; probs are [B, heads, Nq, Nk]."""
  b, nq, inner = q.shape
  d = inner // heads
  split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, d)
  logits = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k)) * (d ** -0.5)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(q.dtype)
  out = jnp.einsum("bhqk,bkhd->bqhd", probs, split(v)).reshape(b, nq, inner)
  return (out, probs) if return_probs else out


class Attention(nnx.Module):
  """diffusers `Attention`: to_q/to_k/to_v/to_out.0; optional group norm and residual (VAE)."""

  def __init__(self, dim: int, heads: int, context_dim: int | None = None, *,
               qkv_bias: bool = False, group_norm_groups: int = 0, eps: float = 1e-6,
               lora_rank: int = 0, lora_alpha: float = 0.0, rngs: KeyGen):
    self.heads = heads
    ctx = context_dim or dim
    lora = dict(lora_rank=lora_rank, lora_alpha=lora_alpha, rngs=rngs)
    self.group_norm = group_norm(dim, group_norm_groups, eps, rngs) if group_norm_groups else None
    self.to_q = Dense(dim, dim, use_bias=qkv_bias, **lora)
    self.to_k = Dense(ctx, dim, use_bias=qkv_bias, **lora)
    self.to_v = Dense(ctx, dim, use_bias=qkv_bias, **lora)
    self.to_out = nnx.List([Dense(dim, dim, **lora)])

  def __call__(self, x, context=None, return_probs: bool = False):
    ctx = x if context is None else context
    out = attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads,
                    return_probs=return_probs)
    if return_probs:
      out, probs = out
      return self.to_out[0](out), probs
    return self.to_out[0](out)

  def spatial(self, x):
    """The VAE's residual self-attention over an NHWC map (group norm first)."""
    b, h, w, c = x.shape
    y = self.group_norm(x).reshape(b, h * w, c)
    return x + self(y).reshape(b, h, w, c)


class GEGLU(nnx.Module):
  def __init__(self, din: int, dout: int, *, rngs: KeyGen):
    self.proj = Dense(din, dout * 2, rngs=rngs)

  def __call__(self, x):
    h, gate = jnp.split(self.proj(x), 2, axis=-1)
    return h * jax.nn.gelu(gate, approximate=False)


class NoParams(nnx.Module):
  """Holds the place of a parameter-free torch module (dropout) so indices match diffusers."""


class FeedForward(nnx.Module):
  """`ff.net.0.proj` (GEGLU) and `ff.net.2`; index 1 is diffusers' dropout (no parameters)."""

  def __init__(self, dim: int, mult: int = 4, *, rngs: KeyGen):
    self.net = nnx.List([GEGLU(dim, dim * mult, rngs=rngs), NoParams(),
                         Dense(dim * mult, dim, rngs=rngs)])

  def __call__(self, x):
    return self.net[2](self.net[0](x))


class BasicTransformerBlock(nnx.Module):
  """Pre-LN self-attention, cross-attention to the prompt, GEGLU feed-forward."""

  def __init__(self, dim: int, heads: int, context_dim: int, *, lora_rank: int = 0,
               lora_alpha: float = 0.0, rngs: KeyGen):
    lora = dict(lora_rank=lora_rank, lora_alpha=lora_alpha)
    self.norm1 = layer_norm(dim, 1e-5, rngs)
    self.attn1 = Attention(dim, heads, rngs=rngs, **lora)
    self.norm2 = layer_norm(dim, 1e-5, rngs)
    self.attn2 = Attention(dim, heads, context_dim, rngs=rngs, **lora)
    self.norm3 = layer_norm(dim, 1e-5, rngs)
    self.ff = FeedForward(dim, rngs=rngs)

  def __call__(self, x, context, return_probs: bool = False):
    x = x + self.attn1(self.norm1(x))
    probs = None
    if return_probs:
      a, probs = self.attn2(self.norm2(x), context, return_probs=True)
    else:
      a = self.attn2(self.norm2(x), context)
    x = x + a
    x = x + self.ff(self.norm3(x))
    return batch_sharded(x), probs


class Transformer2DModel(nnx.Module):
  """GroupNorm, linear proj_in, transformer blocks, linear proj_out, residual (SD-2 layout)."""

  def __init__(self, dim: int, heads: int, context_dim: int, groups: int, layers: int = 1, *,
               lora_rank: int = 0, lora_alpha: float = 0.0, rngs: KeyGen):
    self.norm = group_norm(dim, groups, 1e-6, rngs)
    self.proj_in = Dense(dim, dim, rngs=rngs)
    self.transformer_blocks = nnx.List([
        BasicTransformerBlock(dim, heads, context_dim, lora_rank=lora_rank,
                              lora_alpha=lora_alpha, rngs=rngs) for _ in range(layers)])
    self.proj_out = Dense(dim, dim, rngs=rngs)

  def __call__(self, x, context, token_index=None):
    """`token_index` [B] (optional): also return the head-averaged cross-attention map of that
    prompt token, [B, H, W], averaged over this module's blocks."""
    b, h, w, c = x.shape
    y = self.proj_in(self.norm(x).reshape(b, h * w, c))
    maps = []
    for block in self.transformer_blocks:
      y, probs = block(y, context, return_probs=token_index is not None)
      if token_index is not None:
        tok = jnp.take_along_axis(probs, token_index[:, None, None, None], axis=-1)[..., 0]
        maps.append(tok.mean(axis=1).reshape(b, h, w))
    out = x + self.proj_out(y).reshape(b, h, w, c)
    if token_index is None:
      return out, None
    return out, jnp.mean(jnp.stack(maps), axis=0)
