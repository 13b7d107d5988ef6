"""The six defect classes as edits of the cloth model, with per-instance influence fields.

A defect is not paint on top: each class edits the fields `render.shade` draws from.

  color_spot    a dye blob with a fairly sharp edge tints the yarn colours (texture stays)
  oil_stain     a larger blob with a diffuse edge darkens and saturates the cloth
  knot          a small lump of yarn with a lit top and a cast shadow replaces the weave
  broken_end    one warp end is missing over a length, with frayed (uneven) fibre ends; the
                picks crossing the gap float loose
  broken_yarn   the same for a weft pick
  white_stripe  1-3 adjacent ends or picks are lighter along the whole frame (a lustre/dye fault)

An image holds 1..MAX_INSTANCES instances of one class (mostly 1-2). All instance slots are
computed as arrays [K, H, W] and combined, so the class and the instance count can be traced
(`vmap` over a batch of mixed classes costs one pass per slot, no Python branching).
`scores` [K, H, W] rank instances at every pixel (the highest active score names the instance
of a changed pixel); the mask itself is decided in `simulator.py` from what actually changed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fabgen.data import classes as classes_lib
from fabgen.data import sample as sample_lib
from fabgen.data.fabricsim import hashing
from fabgen.data.fabricsim.render import Params

_ID = classes_lib.CLASS_ID
K = sample_lib.MAX_INSTANCES


def _smoothstep(edge0, edge1, x):
  t = jnp.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def instance_params(key: jax.Array, defect_class, size: int, instance_probs) -> Params:
  """Per-slot parameters [K]; slot k is active iff k < the drawn instance count."""
  ks = jax.random.split(key, 12)
  u = lambda n, lo, hi: jax.random.uniform(ks[n], (K,), minval=lo, maxval=hi)
  count = 1 + jax.random.choice(ks[0], K, p=jnp.asarray(instance_probs, jnp.float32))
  active = (jnp.arange(K) < count) & (defect_class >= 0)
  scale = size / 256.0
  c = defect_class
  # Blob radii in pixels per class (colour spot, oil stain, knot); bands use the other fields.
  r_lo = jnp.where(c == _ID["oil_stain"], 9.0, jnp.where(c == _ID["knot"], 2.5, 4.0))
  r_hi = jnp.where(c == _ID["oil_stain"], 32.0, jnp.where(c == _ID["knot"], 6.0, 18.0))
  radius = jnp.maximum(u(1, 0.0, 1.0) * (r_hi - r_lo) + r_lo, 1.0) * jnp.maximum(scale, 0.5)
  radius = jnp.maximum(radius, jnp.where(c == _ID["knot"], 2.0, 3.0))
  margin = 0.08 * size
  stripe = c == _ID["white_stripe"]
  return {
      "active": active,
      "cx": u(2, margin, size - margin),
      "cy": u(3, margin, size - margin),
      "rx": radius,
      "ry": radius * u(4, 0.55, 1.0),
      "angle": u(5, 0.0, 3.14159),
      "irregular": u(6, 0.15, 0.5),
      # Bands: orientation, number of yarns, extent along the yarn (fraction of the frame).
      "warp_band": jnp.where(c == _ID["broken_end"], True,
                             jnp.where(c == _ID["broken_yarn"], False, u(7, 0.0, 1.0) < 0.5)),
      "lanes": jnp.where(stripe, jnp.floor(u(8, 1.0, 4.0)), 1.0),
      "length": jnp.where(stripe, 4.0, u(9, 0.15, 1.1)),
      "fray": u(10, 0.3, 1.5),
      "strength": u(11, 0.0, 1.0),
      "seed": jax.random.bits(ks[11], (K,), jnp.uint32),
  }


def defect_fields(inst: Params, defect_class, fabric: Params, image: Params, geo: Params,
                  channels: int, tint_key: jax.Array) -> tuple[Params, jax.Array]:
  """(mods for `render.shade`, scores [K, H, W]) of the active instances of `defect_class`.

  Per slot only cheap affine coordinates, band tests and a score are computed; the shading
  fields (blob edge, knot dome, shadow) are computed once, from the slot that wins each pixel.
  """
  b = lambda a: a[:, None, None]
  x, y = geo["x"][None], geo["y"][None]
  c = defect_class
  active = b(inst["active"])
  # --- per slot: blob frame (colour spot, oil stain, knot) ----------------------------------
  ca, sa = jnp.cos(inst["angle"]), jnp.sin(inst["angle"])
  ex = b(ca / inst["rx"]) * x + b(sa / inst["rx"]) * y - b((ca * inst["cx"] + sa * inst["cy"])
                                                            / inst["rx"])
  ey = b(-sa / inst["ry"]) * x + b(ca / inst["ry"]) * y + b((sa * inst["cx"] - ca * inst["cy"])
                                                             / inst["ry"])
  r2 = ex * ex + ey * ey
  # --- per slot: bands (broken end / yarn, white stripe), in yarn coordinates ---------------
  warp = b(inst["warp_band"])
  lane = jnp.where(warp, geo["i"][None], geo["j"][None]).astype(jnp.float32)
  along = jnp.where(warp, geo["v"][None], geo["u"][None])
  pitch_along = jnp.where(inst["warp_band"], fabric["pitch"][1], fabric["pitch"][0])
  pitch_across = jnp.where(inst["warp_band"], fabric["pitch"][0], fabric["pitch"][1])
  size = geo["x"].shape[0]
  centre_u = image["offset"][0] + (inst["cx"] - size / 2.0) / fabric["pitch"][0]
  centre_v = image["offset"][1] + (inst["cy"] - size / 2.0) / fabric["pitch"][1]
  lane0 = b(jnp.floor(jnp.where(inst["warp_band"], centre_u, centre_v)))
  mid = b(jnp.where(inst["warp_band"], centre_v, centre_u))
  half = b(0.5 * inst["length"] * size / pitch_along)
  # Frayed ends: each of 6 fibre bundles across a yarn ends at its own (hashed) point.
  fseed = image["seeds"][3]
  fray_u = [hashing.uniform2(fseed, geo["i"] * 8 + jnp.floor(geo["fu"] * 6.0).astype(jnp.int32),
                             e) - 0.5 for e in (1, 2)]
  fray_v = [hashing.uniform2(fseed + 1, geo["j"] * 8 + jnp.floor(geo["fv"] * 6.0).astype(
      jnp.int32), e) - 0.5 for e in (1, 2)]
  ext0 = b(inst["fray"]) * jnp.where(warp, fray_u[0][None], fray_v[0][None])
  ext1 = b(inst["fray"]) * jnp.where(warp, fray_u[1][None], fray_v[1][None])
  lanes = b(inst["lanes"])
  in_lanes = (lane >= lane0) & (lane < lane0 + lanes)
  offset = along - mid
  band = in_lanes & (offset > ext0 - half) & (offset < half + ext1) & active
  lane_gap = jnp.maximum(jnp.maximum(lane0 - lane, lane - lane0 - lanes + 1.0), 0.0)
  band_score = -(lane_gap * b(pitch_across)
                 + jnp.maximum(jnp.abs(offset) - half, 0.0) * b(pitch_along))
  is_oil = c == _ID["oil_stain"]
  uses_blob = (c == _ID["color_spot"]) | is_oil | (c == _ID["knot"])
  scores = jnp.where(uses_blob, (1.0 - r2) * b(inst["rx"]), band_score)
  scores = jnp.where(active, scores, -1e9)
  # --- once per pixel, from the winning slot -----------------------------------------------
  win = jax.nn.one_hot(jnp.argmax(scores, 0), K, axis=0, dtype=jnp.float32)
  ex_w, ey_w = jnp.sum(ex * win, 0), jnp.sum(ey * win, 0)
  any_active = jnp.any(inst["active"])
  rough = hashing.value_noise(image["seeds"][1], geo["x"] / 5.0, geo["y"] / 5.0)
  dist = jnp.sqrt(ex_w * ex_w + ey_w * ey_w) * (1.0 + inst["irregular"][0] * (rough - 0.5))
  blob = _smoothstep(1.0, jnp.where(is_oil, 0.3, 0.82), dist) * any_active
  band_warp = jnp.any(band & warp, 0).astype(jnp.float32)
  band_weft = jnp.any(band & ~warp, 0).astype(jnp.float32)
  strength = inst["strength"][0]
  zero = jnp.zeros_like(blob)
  # A dye spot multiplies the yarn colour by a dye colour (a muted hue, darker on the whole).
  kh, ks = jax.random.split(tint_key)
  dye_hue = jax.random.uniform(kh, ())
  dye = 1.0 - jax.random.uniform(ks, (), minval=0.15, maxval=0.5) * (
      1.0 - 0.5 * (1.0 + jnp.cos(6.2831853 * (dye_hue + jnp.array([0.0, 1 / 3, 2 / 3])))))
  tint_rgb = dye * (0.65 + 0.3 * strength)
  if channels == 1:  # greyscale: a dye spot is darker (or, rarely, bleached lighter)
    tint_rgb = jnp.full((3,), jnp.where(strength < 0.85, 0.45 + 0.35 * strength, 1.35))
  # Knot: a dome lit from the upper left, swirled fibres, and its shadow to the lower right.
  knot_nz = jnp.sqrt(jnp.clip(1.0 - (ex_w * ex_w + ey_w * ey_w), 0.0, 1.0))
  knot_fibre = 1.0 + 0.12 * jnp.sin(9.0 * ex_w + 5.0 * ey_w + 6.0 * rough) + 0.1 * (rough - 0.5)
  knot_shade = (0.5 + 0.55 * knot_nz - 0.22 * (ex_w + ey_w)) * knot_fibre
  shadow_dist = jnp.sqrt((ex_w - 0.45) ** 2 + (ey_w - 0.45) ** 2)
  shadow = _smoothstep(1.35, 0.7, shadow_dist) * any_active * 0.45
  is_knot = c == _ID["knot"]
  mods = {
      "warp_gone": jnp.where(c == _ID["broken_end"], band_warp, zero),
      "weft_gone": jnp.where(c == _ID["broken_yarn"], band_weft, zero),
      "light": jnp.where(c == _ID["white_stripe"], (band_warp + band_weft) * (0.45 + 0.4 * strength),
                         zero),
      "tint": jnp.where(c == _ID["color_spot"], blob, zero),
      "tint_rgb": tint_rgb,
      "knot": jnp.where(is_knot, blob, zero),
      "knot_shade": knot_shade,
      "shadow": jnp.where(is_knot, shadow * (1.0 - blob), zero),
      "dark": jnp.where(is_oil, blob, zero),
      "dark_strength": 0.3 + 0.35 * strength,
  }
  return mods, scores
