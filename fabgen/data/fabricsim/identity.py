"""Fabric identities and per-image variation, drawn in-graph from threefry keys.

A *fabric identity* is everything a roll of cloth keeps fixed: weave, yarn pitch and width, yarn
colours and stripe/check repeat, printed pattern, slubbiness, hairiness, and the camera set-up that
inspects it. An *image* of that fabric adds what changes from frame to frame: where on the roll
we look (a phase offset), a little rotation, lighting and sensor noise.

Keys: key(seed) -> fold_in(0, fabric_id) for the identity, fold_in(1, image_index) under it for
the image, and `defect_key` below for the defects. The key implementation is pinned to threefry
so that `jax_default_prng_impl` cannot change the pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.data.fabricsim import presets as presets_lib
from fabgen.data.fabricsim import weaves

_IMPL = "threefry2x32"


def root_key(seed: int) -> jax.Array:
  """The data set's root key; threefry regardless of the global PRNG config."""
  return jax.random.key(seed, impl=_IMPL)


def fabric_key(root: jax.Array, fabric_id) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(root, 0), fabric_id)


def image_key(root: jax.Array, fabric_id, image_index) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(fabric_key(root, fabric_id), 1), image_index)


def defect_key(root: jax.Array, fabric_id, image_index, defect_class) -> jax.Array:
  return jax.random.fold_in(image_key(root, fabric_id, image_index), 1000 + defect_class)


def _hsv_to_rgb(h, s, v):
  """HSV in [0, 1] -> RGB in [0, 1] (for drawing plausible dye colours)."""
  k = jnp.mod(jnp.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0, 6.0)
  return v[..., None] - v[..., None] * s[..., None] * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def _palette(key, colour: bool, base_value):
  """[3, 3] yarn colours: a dyed colour family for colour presets, greys otherwise."""
  kh, ks, kv, kd = jax.random.split(key, 4)
  if not colour:
    grey = jnp.clip(base_value + jax.random.uniform(kv, (3,), minval=-0.18, maxval=0.18), 0.12,
                    0.92)
    return jnp.repeat(grey[:, None], 3, axis=1)
  # Dyed yarns: mostly muted (sat <= 0.45), one hue family, sometimes a complementary accent.
  hue = jax.random.uniform(kh, ()) + jax.random.uniform(kd, (3,), minval=-0.06, maxval=0.06)
  hue = hue.at[1:].add(jnp.where(jax.random.uniform(ks, ()) < 0.3, 0.5, 0.0))
  sat = jax.random.uniform(ks, (3,), minval=0.0, maxval=1.0) ** 1.5 * 0.55
  val = jnp.clip(base_value + jax.random.uniform(kv, (3,), minval=-0.25, maxval=0.2), 0.15, 0.92)
  return _hsv_to_rgb(jnp.mod(hue, 1.0), sat, val)


def fabric_params(key: jax.Array, preset: presets_lib.Preset,
                  is_target=False) -> dict[str, jax.Array]:
  """The identity of one fabric, all jax scalars/arrays (traceable in fabric_id).

  `is_target` (traceable) draws weave and pitch from the preset's target family when it has one
  (`Preset.target_weaves` / `target_pitch`), from the same keys, so presets without one are
  unchanged bit for bit.
  """
  ks = iter(jax.random.split(key, 64))
  u = lambda lo, hi, shape=(): jax.random.uniform(next(ks), shape, minval=lo, maxval=hi)
  allowed = jnp.asarray([weaves.weave_id(n) for n in preset.weaves], jnp.int32)
  weave_key = next(ks)
  weave = allowed[jax.random.randint(weave_key, (), 0, len(preset.weaves))]
  if preset.target_weaves:
    held = jnp.asarray([weaves.weave_id(n) for n in preset.target_weaves], jnp.int32)
    weave = jnp.where(is_target, held[jax.random.randint(weave_key, (), 0, len(held))], weave)
  base_value = u(0.3, 0.8)
  warp_palette = _palette(next(ks), preset.colour, base_value)
  weft_palette = jnp.where(u(0, 1) < 0.5, warp_palette,
                           _palette(next(ks), preset.colour, base_value + u(-0.15, 0.15)))
  stripes = u(0, 1) < preset.stripe_prob + preset.check_prob
  checks = stripes & (u(0, 1) < preset.check_prob / max(preset.stripe_prob + preset.check_prob,
                                                         1e-6))
  widths = jnp.floor(u(2.0, 14.0, (3,))).astype(jnp.int32)
  ncol = jax.random.randint(next(ks), (), 2, 4)
  widths = jnp.where(jnp.arange(3) < ncol, widths, 0)
  # With no stripes every yarn takes palette entry 0.
  warp_widths = jnp.where(stripes, widths, jnp.array([1, 0, 0], jnp.int32))
  weft_widths = jnp.where(checks, jnp.roll(widths, 1), jnp.array([1, 0, 0], jnp.int32))
  weft_widths = jnp.where(weft_widths.sum() == 0, jnp.array([1, 0, 0], jnp.int32), weft_widths)
  pitch_lo, pitch_hi = preset.pitch
  scale = preset.image_size / 256.0 if preset.image_size >= 128 else 1.0
  unit = jnp.stack([u(0.0, 1.0), u(0.0, 1.0)])  # warp, weft
  pitch = pitch_lo + unit * (pitch_hi - pitch_lo)
  if preset.target_pitch is not None:
    t_lo, t_hi = preset.target_pitch
    pitch = jnp.where(is_target, t_lo + unit * (t_hi - t_lo), pitch)
  return {
      "weave": weave,
      "pitch": pitch * scale,
      "width": jnp.stack([u(0.72, 0.97), u(0.72, 0.97)]),  # yarn width / pitch
      "warp_palette": warp_palette,
      "weft_palette": weft_palette,
      "warp_widths": warp_widths,
      "weft_widths": weft_widths,
      "print_amount": jnp.where(u(0, 1) < preset.print_prob, u(0.35, 0.8), 0.0),
      "print_rgb": _palette(next(ks), preset.colour, u(0.2, 0.6))[0],
      "print_kind": jax.random.randint(next(ks), (), 0, 3),
      "print_scale": u(14.0, 40.0) * scale,
      "slub": u(0.05, 0.3),
      "slub_length": u(1.5, 6.0),          # yarn units per slub
      "fibre": u(0.08, 0.22),
      "twist": u(0.0, 0.12),
      "twist_freq": u(1.5, 3.5),
      "jitter": u(0.02, 0.12),
      "crimp": u(0.0, 0.25),
      "cloud": u(0.02, 0.1),               # low-frequency unevenness (hairiness, dye)
      "gap": u(0.22, 0.55),
      "under": u(0.6, 0.85),
      "dip": u(0.2, 0.5),
      "rotation": u(-1, 1) * np.deg2rad(preset.max_rotation_deg),
      "skew": u(-1, 1) * preset.max_skew,
      "light": u(-0.12, 0.12, (2,)),
      "vignette": u(0.0, 0.15),
      "prnu": u(0.0, 0.04) if preset.line_scan else jnp.float32(0.0),
      "blur": u(*preset.blur),
      "brightness": u(0.33, 0.62),         # mean grey level the camera's exposure aims for
      "noise": u(*preset.noise_levels) / 255.0,
      "seed": jax.random.bits(next(ks), (), jnp.uint32),
  }


def image_params(key: jax.Array, fabric: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """What changes between frames of one fabric: view offset, small pose and light changes."""
  ks = jax.random.split(key, 6)
  return {
      "offset": jax.random.uniform(ks[0], (2,), minval=0.0, maxval=4096.0),
      "rotation": fabric["rotation"] + jax.random.uniform(ks[1], (), minval=-0.004, maxval=0.004),
      "light": fabric["light"] + jax.random.uniform(ks[2], (2,), minval=-0.03, maxval=0.03),
      "exposure": jax.random.uniform(ks[3], (), minval=0.95, maxval=1.05),
      "brightness": fabric["brightness"],
      "seeds": jax.random.bits(ks[4], (4,), jnp.uint32),
  }
