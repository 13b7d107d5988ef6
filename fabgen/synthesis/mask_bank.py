"""Drawing defect shapes from a trained model's mask bank (the inpainter's and DGT's).

Both generators keep real defect masks of the source data in their checkpoint, each with a
label (the inpainter: the global class id; DGT: its index among the known classes), and paint a
defect of class c in the shape of a bank mask of class c, flipped left-right half of the time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def draw(keys: jax.Array, masks: jax.Array, labels: jax.Array, wanted: jax.Array):
  """(masks [B,P,P], keys [B]): per key, a bank mask whose label is `wanted[b]`, maybe flipped.

  keys [B] (one per defect), masks [N,P,P] and labels [N] (the bank; -1 marks an empty slot),
  wanted [B]. Each key splits into (which mask, whether to flip, a key for the generator), so
  the returned keys are independent of the draw. A label with no mask in the bank draws
  uniformly from every slot (categorical over all -inf); callers only ask for labels they hold.
  """

  def pick(key, label):
    k_mask, k_flip, k_rest = jax.random.split(key, 3)
    i = jax.random.categorical(k_mask, jnp.where(labels == label, 0.0, -jnp.inf))
    m = masks[i]
    return jnp.where(jax.random.bernoulli(k_flip), m[:, ::-1], m), k_rest

  return jax.vmap(pick)(keys, wanted)
