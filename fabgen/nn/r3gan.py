"""R3GAN-style generator and discriminator trunks (NeurIPS 2024), shared by every fabgen GAN.

The design, as the paper and its official code publish it: normalization-free residual blocks
`x + conv1x1(bact(gconv3x3(bact(conv1x1(x)))))` with an inverted bottleneck (expansion 2) and a
grouped 3x3 conv (group width 16), where the convs have *no* bias and each biased activation
`bact(x) = leaky_relu(x + b, 0.2)` carries the only bias; fix-up initialization (the two first
convs He-initialised for leaky ReLU and scaled by L^(-1/4) for L blocks in the network, the last
one zero, so every block starts as the identity and the output variance does not grow with
depth); [1, 3, 3, 1] half-pixel-centred low-pass resampling (`fabgen.nn.resample`) with a 1x1
conv where the width changes. Every layer outside the blocks -- G's basis map of z and its
condition embedding, the transitions, G's aggregation (output) conv, D's stem, depthwise basis
and output linear -- is a bias-free linear map with gain 1 (std 1/sqrt(fan_in)) and no
activation around it. G starts from a learned 4x4 constant multiplied channel-wise by a linear
map of z (and the embedded condition); D ends in a 4x4 depthwise conv (its "basis") and a linear
layer. Conditioning: an embedding concatenated to z in G, projection in D (its embedding
initialised with gain 1/sqrt(embed_dim)).

Everything is a constructor argument (widths per stage, blocks per stage, group width or
cardinality per stage, extra input channels, conditioning width), so the stage-1 patch GAN, the
stage-2 networks and the single-stage generator can all be built from these pieces.
`fabgen.platform.nnx_bridge.PureModule` turns any of them into pure `init(rng) -> params` /
`apply(params, ...)` functions over plain dicts, which is what the training state, orbax and
sharding see.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.nn import grouped_conv as gconv
from fabgen.nn import resample

LEAK = 0.2
HE_GAIN = math.sqrt(2.0 / (1.0 + LEAK ** 2))  # the biased activation's gain (leaky ReLU 0.2)


def act(x: jax.Array) -> jax.Array:
  return jax.nn.leaky_relu(x, LEAK)


def _he(key, shape, fan_in, scale, gain=HE_GAIN):
  return jax.random.normal(key, shape, jnp.float32) * (gain * scale / math.sqrt(fan_in))


def _per_stage(value, n: int, name: str) -> tuple:
  if isinstance(value, int):
    return (value,) * n
  value = tuple(value)
  if len(value) != n:
    raise ValueError(f"{name} has {len(value)} entries but there are {n} stages")
  return value


class Conv1x1(nnx.Module):
  """Pointwise conv (a per-pixel linear layer): std = gain * scale / sqrt(cin).

  The defaults (He gain, with bias) serve layers followed by a plain activation (fabgen's own
  fusion U-Net, the condition MLP); R3GAN's layers pass `gain=1, bias=False`.
  """

  def __init__(self, cin: int, cout: int, scale: float = 1.0, zero: bool = False,
               *, gain: float = HE_GAIN, bias: bool = True, rngs: nnx.Rngs):
    shape = (cin, cout)
    self.kernel = nnx.Param(jnp.zeros(shape) if zero else
                            _he(rngs.params(), shape, cin, scale, gain))
    self.bias = nnx.Param(jnp.zeros((cout,))) if bias else None

  def __call__(self, x):
    y = x @ self.kernel[...]
    return y if self.bias is None else y + self.bias[...]


class GroupedConv3x3(nnx.Module):
  """Grouped 3x3 conv through `fabgen.nn.grouped_conv` (its per-backend fast path)."""

  def __init__(self, cin: int, cout: int, groups: int, scale: float = 1.0, impl: str = "auto",
               *, bias: bool = True, rngs: nnx.Rngs):
    if cin % groups or cout % groups:
      raise ValueError(f"grouped conv {cin}->{cout} channels is not divisible into {groups} groups")
    self.groups, self.impl = groups, impl
    shape = (3, 3, cin // groups, cout)
    self.kernel = nnx.Param(_he(rngs.params(), shape, 9 * cin // groups, scale))
    self.bias = nnx.Param(jnp.zeros((cout,))) if bias else None

  def __call__(self, x):
    y = gconv.grouped_conv(x, self.kernel[...], self.groups, self.impl)
    return y if self.bias is None else y + self.bias[...]


class BiasedActivation(nnx.Module):
  """leaky_relu(x + b, 0.2): R3GAN keeps its biases here, not in the convs."""

  def __init__(self, channels: int):
    self.bias = nnx.Param(jnp.zeros((channels,)))

  def __call__(self, x):
    return act(x + self.bias[...])


def batch_sharded(x: jax.Array) -> jax.Array:
  """x with its leading (batch) dim constrained to the mesh's (data, fsdp) axes.

  Keeps every block's activations split by examples under fsdp-sharded weights (XLA would
  otherwise be free to gather them); a no-op outside a mesh, so the networks run unchanged on
  the host. (The same rule as `fabgen.platform.sharding.constrain`, which `nn` may not import.)
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  axes = tuple(a for a in ("data", "fsdp") if mesh.shape.get(a, 1) > 1)
  size = math.prod(mesh.shape[a] for a in axes)
  if not axes or x.shape[0] % size:
    return x
  return jax.lax.with_sharding_constraint(x, jax.sharding.PartitionSpec(axes))


class ResidualBlock(nnx.Module):
  """x + 1x1(bact(grouped3x3(bact(1x1(x))))): bias-free convs, the last zero-initialised."""

  def __init__(self, width: int, expansion: int = 2, groups: int | None = None,
               group_width: int = 16, variance_scale: float = 1.0, impl: str = "auto",
               *, rngs: nnx.Rngs):
    hidden = width * expansion
    groups = groups or max(1, hidden // group_width)
    self.expand = Conv1x1(width, hidden, variance_scale, bias=False, rngs=rngs)
    self.act1 = BiasedActivation(hidden)
    self.spatial = GroupedConv3x3(hidden, hidden, groups, variance_scale, impl, bias=False,
                                  rngs=rngs)
    self.act2 = BiasedActivation(hidden)
    self.project = Conv1x1(hidden, width, zero=True, bias=False, rngs=rngs)

  def __call__(self, x):
    x = batch_sharded(x)
    return batch_sharded(x + self.project(self.act2(self.spatial(self.act1(self.expand(x))))))


def linear(cin: int, cout: int, rngs: nnx.Rngs, gain: float = 1.0, zero: bool = False):
  """R3GAN's plain linear layer: no bias, std gain / sqrt(cin)."""
  return Conv1x1(cin, cout, zero=zero, gain=gain, bias=False, rngs=rngs)


class _Stages(nnx.Module):
  """Blocks per stage with the fix-up scale L^(-1/4) for L = total blocks.

  `remat`: each block's activations are recomputed in the backward pass instead of kept (only
  the block's input, and in a double backward its cotangent, are saved). For the R1/R2 double
  backward of a GAN step this trades recomputation for temporaries (README, Scale section).
  """

  def __init__(self, widths, blocks, expansion, group_width, cardinality, impl, rngs,
               remat: bool = False):
    n = len(widths)
    blocks = _per_stage(blocks, n, "blocks")
    cards = _per_stage(cardinality, n, "cardinality") if cardinality else (None,) * n
    scale = max(1, sum(blocks)) ** -0.25
    self.blocks = blocks
    self.remat = bool(remat)
    # Named attributes (not lists) so that parameter paths are strings: "s1_b0".
    for i, (w, b, c) in enumerate(zip(widths, blocks, cards)):
      for j in range(b):
        setattr(self, f"s{i}_b{j}",
                ResidualBlock(w, expansion, c, group_width, scale, impl, rngs=rngs))

  def __len__(self):
    return len(self.blocks)

  def run(self, i, h):
    for j in range(self.blocks[i]):
      block = getattr(self, f"s{i}_b{j}")
      h = _rematerialized(block, h) if self.remat else block(h)
    return h


def _rematerialized(block, h):
  """block(h) whose activations are recomputed, in the backward pass and in its derivative.

  `jax.checkpoint` alone keeps only the block's input for the first backward, but a gradient
  penalty differentiates that backward again (R1/R2: the gradient of ||dD/dx||^2), and the
  recomputed activations and the inner cotangents become residuals of the outer backward
  (measured: no saving). Here the forward *and* the block's VJP are each a checkpoint, so the
  outer backward keeps only (state, input, cotangent) per block. Pure (split/merge, nothing
  written back), so it composes with the outer grad-of-grad where `nnx.remat` writes Params.
  """
  graphdef, state = nnx.split(block)
  return _remat_apply(graphdef, state, h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _remat_apply(graphdef, state, h):
  return nnx.merge(graphdef, state)(h)


def _remat_fwd(graphdef, state, h):
  y = jax.checkpoint(lambda st, x: nnx.merge(graphdef, st)(x))(state, h)
  return y, (state, h)


def _remat_bwd(graphdef, residuals, ct):
  state, h = residuals

  def vjp(st, x, c):
    return jax.vjp(lambda st, x: nnx.merge(graphdef, st)(x), st, x)[1](c)

  return tuple(jax.checkpoint(vjp)(state, h, ct))


_remat_apply.defvjp(_remat_fwd, _remat_bwd)


def _add_transitions(module, widths, rngs):
  """1x1 convs `t1, t2, ...` into stage i where its width differs from stage i-1's."""
  for i in range(1, len(widths)):
    if widths[i] != widths[i - 1]:
      setattr(module, f"t{i}", linear(widths[i - 1], widths[i], rngs))


def _transition(module, i, h):
  t = getattr(module, f"t{i}", None)
  return t(h) if t is not None else h


class Generator(nnx.Module):
  """z (+ condition vector, + extra image channels) -> [B, S, S, out_channels], S = 4 * 2^(n-1).

  `widths` run from the 4x4 stage up. `cond_dim` > 0: the condition vector is embedded
  (linear, `embed_dim`) and concatenated to z. `extra_channels` > 0: an image [B, S, S, extra]
  (e.g. a background) is resampled to every stage and added through a zero-initialised 1x1 conv.
  The output is raw (the caller picks tanh / sigmoid per channel).
  """

  def __init__(self, noise_dim: int, widths: Sequence[int], blocks=2, out_channels: int = 3,
               expansion: int = 2, group_width: int = 16, cardinality=None, cond_dim: int = 0,
               embed_dim: int = 64, extra_channels: int = 0, impl: str = "auto",
               remat: bool = False, *, rngs: nnx.Rngs):
    widths = tuple(widths)
    self.noise_dim, self.cond_dim, self.extra_channels = noise_dim, cond_dim, extra_channels
    self.resolution = 4 * 2 ** (len(widths) - 1)
    if cond_dim:
      self.embed = linear(cond_dim, embed_dim, rngs)
    zin = noise_dim + (embed_dim if cond_dim else 0)
    self.basis = nnx.Param(jax.random.normal(rngs.params(), (4, 4, widths[0])))
    self.basis_scale = linear(zin, widths[0], rngs)
    self.trunk = _Stages(widths, blocks, expansion, group_width, cardinality, impl, rngs, remat)
    _add_transitions(self, widths, rngs)
    for i, w in enumerate(widths if extra_channels else ()):
      setattr(self, f"inject{i}", linear(extra_channels, w, rngs, zero=True))
    self.head = linear(widths[-1], out_channels, rngs)  # R3GAN's aggregation layer

  def __call__(self, z, cond=None, extra=None):
    if self.cond_dim:
      if cond is None:
        raise ValueError("this Generator was built with cond_dim > 0 and needs a condition")
      z = jnp.concatenate([z, self.embed(cond)], -1)
    h = self.basis[...][None] * self.basis_scale(z)[:, None, None, :]
    for i in range(len(self.trunk)):
      if i:
        h = resample.upsample2x(_transition(self, i, h))
      if self.extra_channels:
        h = h + getattr(self, f"inject{i}")(resample.resize_to(extra, h.shape[1]))
      h = self.trunk.run(i, h)
    return self.head(h)


class Discriminator(nnx.Module):
  """[B, S, S, in + extra] image -> logits [B]; `widths` run from the input resolution to 4x4.

  `cond_dim` > 0 makes it a projection discriminator: the final features (width `embed_dim`) are
  dotted with a linear embedding of the condition vector (initialised with gain
  1/sqrt(embed_dim), as R3GAN's).
  """

  def __init__(self, widths: Sequence[int], blocks=2, in_channels: int = 3,
               expansion: int = 2, group_width: int = 16, cardinality=None, cond_dim: int = 0,
               embed_dim: int = 64, extra_channels: int = 0, impl: str = "auto",
               remat: bool = False, *, rngs: nnx.Rngs):
    widths = tuple(widths)
    self.cond_dim, self.embed_dim = cond_dim, embed_dim
    self.resolution = 4 * 2 ** (len(widths) - 1)
    self.stem = linear(in_channels + extra_channels, widths[0], rngs)
    self.trunk = _Stages(widths, blocks, expansion, group_width, cardinality, impl, rngs, remat)
    _add_transitions(self, widths, rngs)
    # 4x4 depthwise conv over a 4x4 map (valid padding) = a learned per-channel spatial weighting.
    self.basis = nnx.Param(_he(rngs.params(), (4, 4, widths[-1]), 16, 1.0, gain=1.0))
    self.out = linear(widths[-1], embed_dim if cond_dim else 1, rngs)
    if cond_dim:
      self.project = linear(cond_dim, embed_dim, rngs, gain=1.0 / math.sqrt(embed_dim))

  def __call__(self, x, cond=None, extra=None):
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(f"Discriminator built for {self.resolution}px inputs got {x.shape}")
    if extra is not None:
      x = jnp.concatenate([x, extra], -1)
    h = self.stem(x)
    for i in range(len(self.trunk)):
      if i:
        h = _transition(self, i, resample.downsample2x(h))
      h = self.trunk.run(i, h)
    # R3GAN's discriminative basis: depthwise 4x4 conv then linear, no activation around them.
    out = self.out(jnp.einsum("bhwc,hwc->bc", h, self.basis[...]))
    if not self.cond_dim:
      return out[:, 0]
    if cond is None:
      raise ValueError("this Discriminator was built with cond_dim > 0 and needs a condition")
    return jnp.sum(out * self.project(cond), -1)
