"""The stage-1 networks: conditional R3GAN G(z, texture, class) -> (patch, soft mask) and
projection D(patch, mask | texture, class).

G emits four channels: RGB (tanh, signed) and a mask logit (sigmoid), so every generated defect
comes with its own label; D judges the (image, mask) pair, so a mask that does not follow the
painted defect is something D can see and punish. Optionally (`background_input`) G also sees
the defect-free texture crop itself as extra input channels, which lets it copy the exact
texture instead of only matching its Gram statistics.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from fabgen.nn import r3gan
from fabgen.platform import nnx_bridge
from fabgen.stage1 import condition as condition_lib


def has_mask(m: ml_collections.ConfigDict) -> bool:
  """Whether G paints a mask channel and D judges it (off only for the R3GAN comparison)."""
  return bool(m.get("mask_channel", True))


class Stage1G(nnx.Module):
  """z [B, noise], gram features [B, F], class ids [B] (, texture [B, P, P, 3] signed) ->
  (rgb [B, P, P, 3] in [-1, 1], mask [B, P, P] in [0, 1]).

  `widths` run from 4x4 up (patch side 4 * 2^(n-1)); the condition (Gram features through
  `ConditionEmbedding`, plus a class embedding) is used when `conditional`.
  `mask_channel=False, squash_output=False` is R3GAN's own generator: three raw output channels
  and no mask (then the mask is None).
  """

  def __init__(self, noise_dim: int, widths: Sequence[int], feature_dim: int, *, blocks=2,
               conditional: bool = True, background_input: bool = False, num_classes: int = 6,
               gram_dim: int = 128, class_dim: int = 32, cond_hidden: int = 256,
               expansion: int = 2, group_width: int = 16, embed_dim: int = 64,
               mask_channel: bool = True, squash_output: bool = True,
               impl: str = "auto", remat: bool = False, rngs: nnx.Rngs):
    self.mask_channel = bool(mask_channel)
    self.squash = bool(squash_output)
    self.conditional = bool(conditional)
    self.cond = (condition_lib.ConditionEmbedding(feature_dim, gram_dim, num_classes, class_dim,
                                                  cond_hidden, rngs=rngs)
                 if self.conditional else None)
    self.background_input = bool(background_input)
    self.net = r3gan.Generator(
        noise_dim, widths, blocks, out_channels=4 if self.mask_channel else 3,
        expansion=expansion, group_width=group_width,
        cond_dim=self.cond.dim if self.conditional else 0, embed_dim=embed_dim,
        extra_channels=3 if self.background_input else 0, impl=impl, remat=remat, rngs=rngs)

  @classmethod
  def from_config(cls, m: ml_collections.ConfigDict, feature_dim: int,
                  rngs: nnx.Rngs) -> "Stage1G":
    """From configs/stage1.py's `model` section."""
    return cls(m.noise_dim, m.g_widths, feature_dim, blocks=m.blocks,
               background_input=m.background_input, mask_channel=has_mask(m),
               squash_output=bool(m.get("squash_output", True)), impl=m.conv_impl, rngs=rngs,
               **_shared_args(m))

  def __call__(self, z, feats, class_ids, texture=None):
    c = self.cond(feats, class_ids) if self.conditional else None
    out = self.net(z, c, texture if self.background_input else None)
    rgb = jnp.tanh(out[..., :3]) if self.squash else out[..., :3]
    return rgb, jax.nn.sigmoid(out[..., 3]) if self.mask_channel else None


class Stage1D(nnx.Module):
  """x [B, P, P, 4] = (signed rgb, mask * 2 - 1), gram features, class ids -> logits [B]."""

  def __init__(self, widths: Sequence[int], feature_dim: int, *, blocks=2,
               conditional: bool = True, num_classes: int = 6, gram_dim: int = 128,
               class_dim: int = 32, cond_hidden: int = 256, expansion: int = 2,
               group_width: int = 16, embed_dim: int = 64, mask_channel: bool = True,
               impl: str = "auto", remat: bool = False, rngs: nnx.Rngs):
    self.conditional = bool(conditional)
    self.cond = (condition_lib.ConditionEmbedding(feature_dim, gram_dim, num_classes, class_dim,
                                                  cond_hidden, rngs=rngs)
                 if self.conditional else None)
    self.net = r3gan.Discriminator(
        widths, blocks, in_channels=4 if mask_channel else 3, expansion=expansion,
        group_width=group_width, cond_dim=self.cond.dim if self.conditional else 0,
        embed_dim=embed_dim, impl=impl, remat=remat, rngs=rngs)

  @classmethod
  def from_config(cls, m: ml_collections.ConfigDict, feature_dim: int,
                  rngs: nnx.Rngs) -> "Stage1D":
    """From configs/stage1.py's `model` section."""
    return cls(m.d_widths, feature_dim, blocks=m.blocks, mask_channel=has_mask(m),
               impl=m.conv_impl, rngs=rngs, **_shared_args(m))

  def __call__(self, x, feats, class_ids):
    return self.net(x, self.cond(feats, class_ids) if self.conditional else None)


def _shared_args(m: ml_collections.ConfigDict) -> dict:
  """The conditioning and block arguments G and D take from the same config keys."""
  return {"conditional": m.conditional, "num_classes": m.num_classes, "gram_dim": m.gram_dim,
          "class_dim": m.class_dim, "cond_hidden": m.cond_hidden, "expansion": m.expansion,
          "group_width": m.group_width, "embed_dim": m.embed_dim,
          "remat": bool(m.get("remat", False))}


MASK_TO_D = ("hard", "soft")


def d_input(rgb_signed: jax.Array, mask: jax.Array, mask_to_d: str = "hard") -> jax.Array:
  """D's 4-channel input from a signed image and a [0, 1] mask.

  Real masks are exactly binary and G's are sigmoid outputs, so with the soft mask D could tell
  real from fake by the mask channel's values alone (any value strictly between 0 and 1 is
  fake) -- a shortcut that teaches G nothing about defects. `"hard"` (the default) shows D every
  mask thresholded at 0.5, which is exactly how synthesis uses G's masks (`mask > 0.5`), with a
  straight-through gradient (forward: the binary mask; backward: identity), so real and fake mask
  channels take the same two values and G's mask logits still get D's signal. `"soft"` is the
  old behaviour, kept as an ablation.
  """
  if mask_to_d not in MASK_TO_D:
    raise ValueError(f"model.mask_to_d={mask_to_d!r} is not one of {MASK_TO_D}")
  if mask is None:  # a generator without a mask channel (R3GAN's own)
    return rgb_signed
  if mask_to_d == "hard":
    mask = mask + jax.lax.stop_gradient((mask > 0.5).astype(mask.dtype) - mask)
  return jnp.concatenate([rgb_signed, mask[..., None] * 2.0 - 1.0], -1)


def networks(m: ml_collections.ConfigDict, feature_dim: int):
  """(G, D) as `nnx_bridge.PureModule`s for model config `m`."""
  g = nnx_bridge.PureModule(lambda rngs: Stage1G.from_config(m, feature_dim, rngs))
  d = nnx_bridge.PureModule(lambda rngs: Stage1D.from_config(m, feature_dim, rngs))
  return g, d
