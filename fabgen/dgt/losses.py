"""DGT's eight loss terms: three L1 pixel terms, three segmentation terms, two classification terms.

Pixel terms, images in [0, 1]. Let A_d = sum_s E~_fore[..., s] (the smoothed, w_d-weighted mask;
one class channel is non-zero) and A_n = E~_back (its w_n twin). The note writes

  L_fore = ||X_fake - D (.) E~_fore||_1           L_back = ||X_fake - N (.) (1 - E~_fore)||_1
  L_mix  = ||X_fake - [(D (.) E~_fore + N (.) (1 - E~_fore)) (1 - E~_back) + N (.) E~_back]||_1

Taken literally, L_fore asks for a black image outside the defect and L_back for a black defect
region, so the two pull X_fake to opposite targets everywhere and their sum is minimised by a
grey compromise. The reading implemented by default (`reading="masked"`) weights the *difference*:

  L_fore = mean |A_d (.) (X_fake - D)|            (inside the defect: look like the real defect)
  L_back = mean |(1 - A_d) (.) (X_fake - N)|      (outside: keep the defect-free background)
  L_mix  = mean |X_fake - T_mix|,  T_mix = (D A_d + N (1 - A_d)) (1 - A_n) + N A_n

L_mix's target is already a whole image (a soft composite of D over N), so both readings share it.
`reading="literal"` keeps the transcribed formulas (with A_d for E~_fore), for the ablation.

Segmentation (DIS heat-map logits; defects are a few % of pixels, so fore and back pixels are
averaged separately and then together, a class-balanced BCE):
  L_fake^seg       balanced BCE of DIS(X_fake) against M
  L_real_fore^seg  BCE of DIS(D) against 1 over the pixels of M
  L_real_back^seg  BCE against 0 over D's pixels outside M and over all of N
Classification (DFC logits over the known classes): L_fake^cls and L_real^cls, cross-entropy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

READINGS = ("masked", "literal")
TERMS = ("fore", "back", "mix", "seg_fake", "seg_real_fore", "seg_real_back", "cls_fake",
         "cls_real")


def soft_masks(e_fore_s: jax.Array, e_back_s: jax.Array):
  """(A_d, A_n) as [B, H, W, 1] maps from the smoothed encodings."""
  return jnp.sum(e_fore_s, -1, keepdims=True), e_back_s


def mix_target(defect, clean, a_d, a_n):
  """T_mix = (D A_d + N (1 - A_d)) (1 - A_n) + N A_n."""
  return (defect * a_d + clean * (1.0 - a_d)) * (1.0 - a_n) + clean * a_n


def pixel_losses(fake, defect, clean, e_fore_s, e_back_s, reading: str = "masked"):
  """{"fore", "back", "mix"}: the three L1 terms (per-pixel means) for images in [0, 1]."""
  if reading not in READINGS:
    raise ValueError(f"config.loss.reading={reading!r}; use one of {READINGS}")
  a_d, a_n = soft_masks(e_fore_s, e_back_s)
  if reading == "masked":
    fore = jnp.mean(jnp.abs(a_d * (fake - defect)))
    back = jnp.mean(jnp.abs((1.0 - a_d) * (fake - clean)))
  else:
    fore = jnp.mean(jnp.abs(fake - defect * a_d))
    back = jnp.mean(jnp.abs(fake - clean * (1.0 - a_d)))
  mix = jnp.mean(jnp.abs(fake - mix_target(defect, clean, a_d, a_n)))
  return {"fore": fore, "back": back, "mix": mix}


def _masked_mean(values, weights):
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def balanced_bce(logits, target):
  """Mean of the fore-pixel and back-pixel BCE means (each over the whole batch)."""
  bce = optax.sigmoid_binary_cross_entropy(logits, target)
  return 0.5 * (_masked_mean(bce, target) + _masked_mean(bce, 1.0 - target))


def seg_fake(logits_fake, mask):
  return balanced_bce(logits_fake, mask)


def seg_real_fore(logits_defect, mask):
  return _masked_mean(optax.sigmoid_binary_cross_entropy(logits_defect, 1.0), mask)


def seg_real_back(logits_defect, logits_clean, mask):
  outside = _masked_mean(optax.sigmoid_binary_cross_entropy(logits_defect, 0.0), 1.0 - mask)
  clean = jnp.mean(optax.sigmoid_binary_cross_entropy(logits_clean, 0.0))
  return 0.5 * (outside + clean)


def cls_loss(logits, labels):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def recon_loss(recon, clean):
  """DIS's own reconstruction target: the defect-free twin N (exact thanks to paired data)."""
  return jnp.mean(jnp.abs(recon - clean))
