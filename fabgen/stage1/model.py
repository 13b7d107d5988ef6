"""The stage-1 networks: conditional R3GAN G(z, texture, class) -> (patch, soft mask) and
projection D(patch, mask | texture, class).

G emits four channels: RGB (tanh, signed) and a mask logit (sigmoid), so every generated defect
comes with its own label; D judges the (image, mask) pair, so a mask that does not follow the
painted defect is something D can see and punish. Optionally (`background_input`) G also sees
the defect-free texture crop itself as extra input channels, which lets it copy the exact
texture instead of only matching its Gram statistics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from fabgen.nn import r3gan
from fabgen.stage1 import condition as condition_lib


def has_mask(m: ml_collections.ConfigDict) -> bool:
  """Whether G paints a mask channel and D judges it (off only for the R3GAN comparison)."""
  return bool(m.get("mask_channel", True))


class Stage1G(nnx.Module):
  """z [B, noise], gram features [B, F], class ids [B] (, texture [B, P, P, 3] signed) ->
  (rgb [B, P, P, 3] in [-1, 1], mask [B, P, P] in [0, 1]).

  `model.mask_channel=False, model.squash_output=False` is R3GAN's own generator: three raw
  output channels and no mask (then the mask is None).
  """

  def __init__(self, m: ml_collections.ConfigDict, feature_dim: int, *, rngs: nnx.Rngs):
    self.mask_channel = has_mask(m)
    self.squash = bool(m.get("squash_output", True))
    self.conditional = bool(m.conditional)
    self.cond = _embedding(m, feature_dim, rngs) if self.conditional else None
    self.background_input = bool(m.background_input)
    self.net = r3gan.Generator(
        m.noise_dim, m.g_widths, m.blocks, out_channels=4 if self.mask_channel else 3,
        expansion=m.expansion, group_width=m.group_width,
        cond_dim=self.cond.dim if self.conditional else 0,
        embed_dim=m.embed_dim,
        extra_channels=3 if self.background_input else 0, impl=m.conv_impl, rngs=rngs)

  def __call__(self, z, feats, class_ids, texture=None):
    c = self.cond(feats, class_ids) if self.conditional else None
    out = self.net(z, c, texture if self.background_input else None)
    rgb = jnp.tanh(out[..., :3]) if self.squash else out[..., :3]
    return rgb, jax.nn.sigmoid(out[..., 3]) if self.mask_channel else None


class Stage1D(nnx.Module):
  """x [B, P, P, 4] = (signed rgb, mask * 2 - 1), gram features, class ids -> logits [B]."""

  def __init__(self, m: ml_collections.ConfigDict, feature_dim: int, *, rngs: nnx.Rngs):
    self.conditional = bool(m.conditional)
    self.cond = _embedding(m, feature_dim, rngs) if self.conditional else None
    self.net = r3gan.Discriminator(
        m.d_widths, m.blocks, in_channels=4 if has_mask(m) else 3, expansion=m.expansion,
        group_width=m.group_width,
        cond_dim=self.cond.dim if self.conditional else 0, embed_dim=m.embed_dim,
        impl=m.conv_impl, rngs=rngs)

  def __call__(self, x, feats, class_ids):
    return self.net(x, self.cond(feats, class_ids) if self.conditional else None)


def _embedding(m, feature_dim, rngs):
  return condition_lib.ConditionEmbedding(feature_dim, m.gram_dim, m.num_classes, m.class_dim,
                                          m.cond_hidden, rngs=rngs)


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
  """(G, D) as `r3gan.Functional`s for model config `m`."""
  g = r3gan.Functional(lambda rngs: Stage1G(m, feature_dim, rngs=rngs))
  d = r3gan.Functional(lambda rngs: Stage1D(m, feature_dim, rngs=rngs))
  return g, d
