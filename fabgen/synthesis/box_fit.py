"""Real defect sizes for generated defects: a per-class bank of real boxes, and the fit into one.

A stage-1 generator paints a fixed `P x P` patch; real defects are not squares of one size
(FabricSim `simple` at 256 px: knots ~12 px, oil stains ~36 px, broken ends ~9 x 140 px). The
paper resizes each stage-1 patch into the blank window of a real defect. We do the same at
synthesis time, where there is no real defect to replace: each sample draws a real box (h, w) of
its class from a `BoxBank` fitted on labelled source data, and the stage-1 patch is scaled so
that its *mask's* bounding box lands exactly on that box (`fit_into_box`). So the synthesized
boxes follow the real per-class distribution of size and aspect, long thin classes stay long and
thin, and the defect texture is stretched as the paper's resize stretches it.

Why a real box and not a real mask shape: the stage-1 generator already makes a mask that goes
with its texture (a broken end's mask is a thread); conditioning the shape on a real mask would
need a new stage-1 input and retraining. The box is the one thing the generator gets wrong (its
scale), and it is also what the detector's box head learns.

Everything per sample is pure JAX on traced values (`jax.image.scale_and_translate` takes traced
scales and offsets into a static canvas), so it jits and vmaps with the rest of `apply`.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np


class BoxBank:
  """Heights and widths of real defect instances, with their class ids."""

  def __init__(self, heights, widths, classes):
    self.heights = np.asarray(heights, np.int32)
    self.widths = np.asarray(widths, np.int32)
    self.classes = np.asarray(classes, np.int32)
    if not (len(self.heights) == len(self.widths) == len(self.classes)):
      raise ValueError("BoxBank: heights, widths and classes differ in length")

  def __len__(self):
    return len(self.classes)

  @classmethod
  def from_records(cls, records: Iterable[Mapping[str, np.ndarray]],
                   class_ids: Iterable[int] | None = None) -> "BoxBank":
    """The bounding box of every labelled defect instance of the wanted classes."""
    wanted = None if class_ids is None else set(int(c) for c in class_ids)
    hs, ws, cs = [], [], []
    for rec in records:
      inst = np.asarray(rec["instance_mask"])
      for k, cid in enumerate(np.asarray(rec["instance_class"]).tolist()):
        if cid < 0 or (wanted is not None and cid not in wanted):
          continue
        ys, xs = np.nonzero(inst == k + 1)
        if len(ys) == 0:
          continue
        hs.append(ys.max() - ys.min() + 1)
        ws.append(xs.max() - xs.min() + 1)
        cs.append(cid)
    return cls(hs, ws, cs)

  def class_ids(self) -> tuple[int, ...]:
    return tuple(sorted(set(self.classes.tolist())))

  def largest(self) -> int:
    """The longest side of any box (0 for an empty bank)."""
    return int(max(self.heights.max(initial=0), self.widths.max(initial=0)))

  def state(self) -> dict[str, jax.Array]:
    """The arrays `sample_box` reads (a pytree for a synthesizer's state)."""
    return {"box_hw": jnp.asarray(np.stack([self.heights, self.widths], 1), jnp.int32),
            "box_class": jnp.asarray(self.classes, jnp.int32)}


# Window sides are multiples of this, so that every fusion network's downsampling divides them.
WINDOW_MULTIPLE = 16


def window_for(bank: BoxBank, pad: int, max_window: int, multiple: int = WINDOW_MULTIPLE) -> int:
  """A window side that holds the bank's largest box plus `pad` on each side, capped."""
  need = bank.largest() + 2 * pad
  side = -(-need // multiple) * multiple
  return int(max(multiple, min(side, max_window // multiple * multiple)))


def sample_box(key: jax.Array, class_id: jax.Array, state: Mapping[str, jax.Array],
               limit: int) -> jax.Array:
  """int32 (h, w) of a uniformly drawn real box of `class_id`, each side clipped to `limit`.

  A class absent from the bank draws from all boxes (the bank decides sizes, not which classes
  may be painted).
  """
  same = state["box_class"] == class_id
  logits = jnp.where(same | ~jnp.any(same), 0.0, -jnp.inf)
  i = jax.random.categorical(key, logits)
  return jnp.clip(state["box_hw"][i], 1, limit)


def mask_extent(mask: jax.Array) -> jax.Array:
  """float32 (y0, y1, x0, x1) of the `mask > 0.5` bounding box (x1/y1 exclusive); all if empty."""
  on = mask > 0.5
  rows, cols = jnp.any(on, axis=1), jnp.any(on, axis=0)
  h, w = mask.shape

  def span(v, n):
    first = jnp.argmax(v)
    last = n - jnp.argmax(v[::-1])
    return jnp.where(jnp.any(v), first, 0), jnp.where(jnp.any(v), last, n)

  y0, y1 = span(rows, h)
  x0, x1 = span(cols, w)
  return jnp.stack([y0, y1, x0, x1]).astype(jnp.float32)


def fit_into_box(patch: jax.Array, mask: jax.Array, box_hw: jax.Array, top_left: jax.Array,
                 size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Scales a [P, P, C] patch so its mask's box lands on `box_hw` at `top_left` of a canvas.

  Returns (patch [S, S, C], mask [S, S], domain [S, S]) on a `size` canvas; `domain` is 1 where
  the scaled patch has data (outside it the canvas is empty and must not be pasted).
  """
  y0, y1, x0, x1 = mask_extent(mask)
  box = box_hw.astype(jnp.float32)
  scale = jnp.stack([box[0] / (y1 - y0), box[1] / (x1 - x0)])
  translation = top_left.astype(jnp.float32) - jnp.stack([y0, x0]) * scale
  resize = lambda a: jax.image.scale_and_translate(
      a, (size, size) + a.shape[2:], (0, 1), scale, translation, "linear", antialias=True)
  both = jnp.concatenate([patch, mask[..., None], jnp.ones_like(mask)[..., None]], -1)
  out = resize(both)
  return out[..., :-2], out[..., -2], (out[..., -1] > 0.99).astype(jnp.float32)


def place_box(key: jax.Array, box_hw: jax.Array, size: int, pad: int) -> jax.Array:
  """int32 (y0, x0): a uniform position for the box inside a `size` window, `pad` from its edges."""
  ky, kx = jax.random.split(key)
  hi = jnp.maximum(size - pad - box_hw, pad)
  y0 = jax.random.randint(ky, (), pad, hi[0] + 1)
  x0 = jax.random.randint(kx, (), pad, hi[1] + 1)
  return jnp.stack([y0, x0]).astype(jnp.int32)
