"""Line-scan strips: what an inspection line's camera records, and AITEX-like defect shapes.

A line-scan camera images the moving roll one line at a time, so its strips (AITEX: 4096x256
greyscale) look unlike an area-scan photo in ways a detector notices: the weave is fine (a yarn
period of 2-8 pixels), every column has its own gain (pixel response non-uniformity) and
low-frequency bands, the light falls off towards the ends of the line but not along the scan,
lines flicker a little with the lamp, motion smears along the scan, and a strip may reach the
fabric's edge (a selvage, then the conveyor). Real cloth adds irregular floats and loose fibres
(hairiness). `render_strip` adds all of these to the FabricSim cloth model (`render.py`), each
drawn from a `LineScanRanges` range, and renders the defects in the shapes AITEX shows:

  class (global id)  AITEX code(s)          shape here
  broken_yarn        010 broken pick        one weft pick missing across most or all of the strip
  broken_end         002 broken end,        one warp end missing over the strip's height; on a
                     022 cut selvage        strip with a selvage, often a notch cut into the edge
  knot               030 nep, 019 fuzzy     a fibrous lump: irregular outline, radial fibres
                     ball                   (neps 2-5 px, fuzzy balls 5-14 px)
  white_stripe       023 crease             a fold along the warp: a light ridge and its shadow
  color_spot         029 contamination      an irregular dark (rarely light) foreign-matter spot
  oil_stain          -                      a large diffuse dark stain

As in `simulator.py`, the defect-free strip is rendered from the same fields, and the instance
mask is exactly the set of pixels that moved by more than 2 grey levels. Everything is one pure
jax function of (root key, fabric id, image index, class): jittable, vmappable, deterministic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fabgen.data import classes as classes_lib
from fabgen.data import labels as labels_lib
from fabgen.data.fabricsim import hashing
from fabgen.data.fabricsim import identity
from fabgen.data.fabricsim import render as render_lib
from fabgen.data.fabricsim.linescan_ranges import LineScanRanges
from fabgen.data.fabricsim.render import Params

_ID = classes_lib.CLASS_ID
SLOTS = 2  # defect instances per strip at most (the preset's instance_probs beyond are 0)


def _u(key, r, shape=()):
  return jax.random.uniform(key, shape, minval=r[0], maxval=r[1])


def strip_params(key: jax.Array, ranges: LineScanRanges) -> Params:
  """The line-scan camera and cloth-surface draws of one strip (fabric-level draws use the
  fabric key, so a roll keeps its camera; per-strip ones the image key)."""
  ks = jax.random.split(key, 16)
  return {
      "column_gain": _u(ks[0], ranges.column_gain),
      "banding": _u(ks[1], ranges.banding),
      "band_period": _u(ks[2], ranges.band_period),
      "band_phase": _u(ks[3], (0.0, 6.2831853)),
      "row_flicker": _u(ks[4], ranges.row_flicker),
      "line_falloff": _u(ks[5], ranges.line_falloff),
      "motion_blur": _u(ks[6], ranges.motion_blur),
      "float_irregularity": _u(ks[7], ranges.float_irregularity),
      "hairiness": _u(ks[8], ranges.hairiness),
      "selvage": jax.random.uniform(ks[9], ()) < ranges.selvage_prob,
      "selvage_right": jax.random.uniform(ks[10], ()) < 0.5,
      "selvage_width": _u(ks[11], ranges.selvage_width),
      "edge_gap": _u(ks[12], ranges.edge_gap),
      "background": _u(ks[13], ranges.background),
      "seed": jax.random.bits(ks[14], (), jnp.uint32),
  }


def _irregular_floats(geo: Params, seed, share) -> Params:
  """Flips the interlacing of a random `share` of weave cells: real floats are not all alike."""
  flip = hashing.uniform2(seed + 21, geo["i"], geo["j"]) < share
  return dict(geo, code=jnp.where(flip, geo["code"] ^ 1, geo["code"]))


def _hairiness(geo: Params, seed, amount):
  """Loose surface fibres: thin, mostly vertical or horizontal strokes a few pixels long."""
  x, y = geo["x"], geo["y"]
  vert = hashing.value_noise(seed + 31, x / 0.9, y / 7.0)
  horz = hashing.value_noise(seed + 32, x / 7.0, y / 0.9)
  strokes = jnp.clip((jnp.maximum(vert, horz) - 0.78) * 6.0, 0.0, 1.0)
  return 1.0 + amount * (strokes - 0.15 * hashing.value_noise(seed + 33, x / 2.5, y / 2.5))


def _edge_coordinate(x, width, sp):
  """Distance (pixels) into the cloth from the strip's selvage end (left or right)."""
  return jnp.where(sp["selvage_right"], width - 1.0 - x, x)


def _selvage(cloth, geo: Params, sp: Params, width: int, notch):
  """The fabric's edge in view: background, a wavy edge, a denser selvage band, then cloth.

  `notch` [H, W] in [0, 1] cuts into the selvage (a cut-selvage defect): there the cloth is
  replaced by background.
  """
  x, y = geo["x"], geo["y"]
  d = _edge_coordinate(x, width, sp)
  wave = 2.0 * hashing.value_noise_1d(sp["seed"] + 41, 0, y / 37.0)
  edge = sp["edge_gap"] + wave
  cloth_alpha = jnp.clip(d - edge + 0.5, 0.0, 1.0) * (1.0 - notch)
  band = (d >= edge) & (d < edge + sp["selvage_width"])
  selvage_look = 1.08 + 0.08 * jnp.cos(6.2831853 * x / 2.3)  # tight, warp-faced, a bit lighter
  cloth = jnp.where(band[..., None], cloth * selvage_look[..., None], cloth)
  ground = sp["background"] * (1.0 + 0.1 * hashing.value_noise(sp["seed"] + 42, x / 9.0,
                                                                 y / 9.0))
  mixed = cloth * cloth_alpha[..., None] + ground[..., None] * (1.0 - cloth_alpha[..., None])
  return jnp.where(sp["selvage"], mixed, cloth)


def _camera(img, geo: Params, fabric: Params, image: Params, sp: Params, width: int):
  """Column gain and banding, falloff along the line, line flicker, motion blur along the scan,
  optics blur, exposure and sensor noise; float in [0, 1]."""
  x, y = geo["x"], geo["y"]
  xi, yi = x.astype(jnp.int32), y.astype(jnp.int32)
  xn = x / width - 0.5
  column = (1.0 + sp["column_gain"] * (2.0 * hashing.uniform2(fabric["seed"] + 9, xi, 0) - 1.0)
            + sp["banding"] * jnp.sin(6.2831853 * x / sp["band_period"] + sp["band_phase"])
            + 0.5 * sp["banding"] * (2.0 * hashing.value_noise_1d(fabric["seed"] + 10, 0,
                                                                   x / 211.0) - 1.0))
  line = 1.0 + sp["row_flicker"] * (2.0 * hashing.uniform2(image["seeds"][2], 0, yi) - 1.0)
  gain = column * line * (1.0 - sp["line_falloff"] * 4.0 * xn * xn) * image["exposure"]
  img = img * gain[..., None]
  # Motion blur: a box of `motion_blur` rows along the scan (5 taps, fractional length).
  length = sp["motion_blur"]
  taps = jnp.clip(0.5 * length + 0.5 - jnp.abs(jnp.arange(-2, 3, dtype=jnp.float32)), 0.0, 1.0)
  taps = taps / taps.sum()
  pad = jnp.pad(img, ((2, 2), (0, 0), (0, 0)), mode="edge")
  h = img.shape[0]
  img = sum(taps[k] * pad[k:k + h] for k in range(5))
  w = fabric["blur"]
  pad = jnp.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
  img = (1 - 2 * w) * pad[1:-1] + w * (pad[:-2] + pad[2:])
  img = (1 - 2 * w) * img[:, 1:-1] + w * (img[:, :-2] + img[:, 2:])
  noise = hashing.triangular_noise(image["seeds"][0], xi, yi)[..., None]
  return jnp.clip(img + noise * fabric["noise"] * (0.6 + 0.6 * jnp.clip(img, 0.0, 1.0)), 0.0,
                  1.0)


def instance_params(key: jax.Array, defect_class, shape: tuple[int, int], instance_probs,
                    ranges: LineScanRanges) -> Params:
  """Per-slot defect parameters [SLOTS]; slot k is active iff k < the drawn count."""
  h, w = shape
  ks = jax.random.split(key, 14)
  u = lambda n, lo, hi: jax.random.uniform(ks[n], (SLOTS,), minval=lo, maxval=hi)
  probs = jnp.asarray(instance_probs[:SLOTS], jnp.float32)
  count = 1 + jax.random.choice(ks[0], SLOTS, p=probs / probs.sum())
  active = (jnp.arange(SLOTS) < count) & (defect_class >= 0)
  fuzzy = u(1, 0.0, 1.0) < ranges.fuzzy_ball_prob
  c = defect_class
  radius = jnp.where(c == _ID["knot"], jnp.where(fuzzy, u(2, 5.0, 14.0), u(2, 2.0, 5.0)),
                     jnp.where(c == _ID["oil_stain"], u(2, 10.0, 40.0), u(2, 3.0, 12.0)))
  margin = jnp.minimum(0.03 * w, 60.0)
  return {
      "active": active,
      "cx": u(3, margin, w - margin),
      "cy": u(4, 0.15 * h, 0.85 * h),
      "radius": radius,
      "aspect": u(5, 0.5, 1.0),
      "angle": u(6, 0.0, 3.14159),
      "half_x": jnp.where(u(7, 0.0, 1.0) < 0.5, float(w), u(8, 0.15 * w, 0.6 * w)),  # picks
      "half_y": jnp.where(u(9, 0.0, 1.0) < 0.6, float(h), u(10, 0.3 * h, h)),       # ends
      "lean": u(11, -0.12, 0.12),         # crease slope (pixels across per row)
      "crease_width": u(12, 2.0, 8.0),
      "strength": u(13, 0.0, 1.0),
      "notch_depth": u(12, 8.0, 50.0),    # same draw as crease_width: never the same class
      "seed": jax.random.bits(ks[13], (SLOTS,), jnp.uint32),
  }


def defect_fields(inst: Params, defect_class, fabric: Params, image: Params, geo: Params,
                  sp: Params, width: int) -> tuple[Params, Params, jax.Array]:
  """(mods for `render.shade`, post-shade fields, scores [SLOTS, H, W]) of the active slots.

  Scores are minus a distance in pixels to each instance's core, so the instance a changed
  pixel belongs to is the nearest one, wherever blur spread the change.
  """
  b = lambda a: a[:, None, None]
  x, y = geo["x"][None], geo["y"][None]
  c = defect_class
  active = b(inst["active"])
  dx, dy = x - b(inst["cx"]), y - b(inst["cy"])
  ca, sa = jnp.cos(inst["angle"]), jnp.sin(inst["angle"])
  ex = (b(ca) * dx + b(sa) * dy) / b(inst["radius"])
  ey = (-b(sa) * dx + b(ca) * dy) / b(inst["radius"] * inst["aspect"])
  r = jnp.sqrt(ex * ex + ey * ey)
  theta = jnp.arctan2(ey, ex)
  seed = b(inst["seed"])
  # Irregular outlines: radius modulated along the angle; fibres poke out radially.
  lobes = 1.0 + 0.35 * (2.0 * hashing.value_noise_1d(seed, 0, (theta + 3.1416) * 1.6) - 1.0)
  fibres = jnp.clip((hashing.value_noise_1d(seed + 1, 1, (theta + 3.1416) * 14.0) - 0.62)
                    * 3.0, 0.0, 1.0)
  r_eff = r / lobes
  lump = jnp.clip((1.0 - r_eff) * b(inst["radius"]) * 0.8 + 0.5, 0.0, 1.0)
  hair = fibres * jnp.clip(1.9 - r_eff, 0.0, 1.0) * (r_eff > 0.9)
  blob_dist = jnp.maximum(r_eff - 1.0, 0.0) * b(inst["radius"])
  # Bands in yarn coordinates: a weft pick (j) across the strip, a warp end (i) along it.
  pitch_u, pitch_v = fabric["pitch"][0], fabric["pitch"][1]
  j0 = jnp.floor(image["offset"][1] + (b(inst["cy"]) - geo["y"].shape[0] / 2.0) / pitch_v)
  i0 = jnp.floor(image["offset"][0] + (b(inst["cx"]) - width / 2.0) / pitch_u)
  fray = 6.0 * hashing.uniform2(seed + 2, geo["i"][None], 0)
  pick_out = jnp.maximum(jnp.abs(dx) - b(inst["half_x"]) - fray, 0.0)
  pick = (geo["j"][None] == j0) & (pick_out <= 0.0) & active
  pick_dist = jnp.abs(geo["j"][None] - j0) * pitch_v + pick_out
  end_out = jnp.maximum(jnp.abs(dy) - b(inst["half_y"]) - fray, 0.0)
  end = (geo["i"][None] == i0) & (end_out <= 0.0) & active
  end_dist = jnp.abs(geo["i"][None] - i0) * pitch_u + end_out
  # A crease: a line along the warp with a small lean and bend; ridge on one side, shadow on the
  # other.
  bend = 3.0 * jnp.sin(3.1416 * y / geo["y"].shape[0])
  d_line = dx - b(inst["lean"]) * dy - bend
  cw = b(inst["crease_width"])
  ridge = jnp.exp(-((d_line - 0.5 * cw) / cw) ** 2) - 0.7 * jnp.exp(-((d_line + 0.5 * cw) / cw) ** 2)
  crease_dist = jnp.maximum(jnp.abs(d_line) - cw, 0.0)
  # Cut selvage: a notch into the edge band near the slot's row.
  d_edge = _edge_coordinate(geo["x"], width, sp)[None] - sp["edge_gap"]
  notch_span = 0.5 * b(inst["radius"]) * 4.0 + 8.0
  notch_prof = b(inst["notch_depth"]) * jnp.clip(1.0 - jnp.abs(dy) / notch_span, 0.0, 1.0) * (
      0.8 + 0.4 * hashing.uniform2(seed + 3, 0, geo["y"].astype(jnp.int32)[None]))
  is_cut = sp["selvage"] & (hashing.uniform2(inst["seed"][0], 7, 7)
                            < sp["cut_selvage_prob"])
  notch = (d_edge < notch_prof) & (d_edge > -4.0) & (jnp.abs(dy) < notch_span) & active
  notch_dist = jnp.maximum(d_edge - notch_prof, 0.0) + jnp.maximum(jnp.abs(dy) - notch_span, 0.)

  is_ = lambda name: c == _ID[name]
  cut = is_("broken_end") & is_cut
  scores = jnp.where(is_("broken_yarn"), -pick_dist,
                     jnp.where(is_("broken_end"), jnp.where(cut, -notch_dist, -end_dist),
                               jnp.where(is_("white_stripe"), -crease_dist, -blob_dist)))
  scores = jnp.where(active, scores, -1e9)
  win = jax.nn.one_hot(jnp.argmax(scores, 0), SLOTS, axis=0, dtype=jnp.float32)
  pick_any = jnp.any(pick, 0).astype(jnp.float32)
  end_any = jnp.any(end, 0).astype(jnp.float32)
  blob = jnp.sum((jnp.maximum(lump, 0.7 * hair)) * win * active, 0)
  strength = inst["strength"][0]
  zero = jnp.zeros_like(pick_any)
  mods = {"warp_gone": jnp.where(is_("broken_end") & ~is_cut, end_any, zero),
          "weft_gone": jnp.where(is_("broken_yarn"), pick_any, zero),
          "light": zero, "tint": zero, "tint_rgb": jnp.ones((3,)), "knot": zero,
          "knot_shade": zero, "shadow": zero, "dark": zero, "dark_strength": 0.0}
  texture = hashing.value_noise(inst["seed"][0], geo["x"] / 1.3, geo["y"] / 1.3)
  lighter = hashing.uniform2(inst["seed"][0], 5, 5) < 0.3
  oil = jnp.sum(jnp.clip((1.0 - r) * 1.6, 0.0, 1.0) * win * active, 0)
  post = {
      # Fibrous lump (knot): its own tone with fibre texture, replacing the weave.
      "lump": jnp.where(is_("knot"), blob, zero),
      "lump_tone": jnp.where(lighter, 1.25, 0.7) * (0.85 + 0.3 * texture),
      # Contamination (color_spot): an irregular spot, mostly darker.
      "spot": jnp.where(is_("color_spot"), blob, zero),
      "spot_gain": jnp.where(strength < 0.85, 0.35 + 0.35 * strength, 1.3),
      "oil": jnp.where(is_("oil_stain"), oil * (0.2 + 0.25 * strength), zero),
      "crease": jnp.where(is_("white_stripe"), jnp.sum(ridge * win * active, 0)
                          * (0.25 + 0.3 * strength), zero),
      "notch": jnp.where(cut, jnp.any(notch, 0).astype(jnp.float32), zero),
  }
  return mods, post, scores


def _apply_post(cloth, post: Params):
  """The defects that sit on top of the woven structure (after `render.shade`)."""
  mean = jnp.mean(cloth)
  lump = post["lump"][..., None]
  cloth = cloth * (1.0 - lump) + mean * post["lump_tone"][..., None] * lump
  spot = post["spot"][..., None]
  cloth = cloth * (1.0 - spot + spot * post["spot_gain"])
  cloth = cloth * (1.0 - post["oil"][..., None])
  return cloth * (1.0 + post["crease"][..., None])


def render_strip(root: jax.Array, fabric_id, image_index, defect_class, preset
                 ) -> dict[str, jax.Array]:
  """One line-scan strip in the `fabgen.data.sample` format; `defect_class` -1 = defect-free."""
  ranges = preset.linescan
  h, w = preset.shape
  fabric_id = jnp.asarray(fabric_id, jnp.int32)
  image_index = jnp.asarray(image_index, jnp.int32)
  defect_class = jnp.asarray(defect_class, jnp.int32)
  fkey = identity.fabric_key(root, fabric_id)
  ikey = identity.image_key(root, fabric_id, image_index)
  fabric = identity.fabric_params(fkey, preset)
  image = identity.image_params(ikey, fabric)
  sp = strip_params(jax.random.fold_in(fkey, 77), ranges)
  per_strip = strip_params(jax.random.fold_in(ikey, 77), ranges)
  for k in ("selvage", "selvage_right", "edge_gap", "row_flicker", "motion_blur"):
    sp[k] = per_strip[k]  # where the edge is and how the roll moved change strip by strip
  sp["cut_selvage_prob"] = ranges.cut_selvage_prob
  geo = _irregular_floats(render_lib.geometry(fabric, image, (h, w)), fabric["seed"],
                          sp["float_irregularity"])
  yarn = render_lib.yarns(fabric, geo, 1, False)
  hair = _hairiness(geo, fabric["seed"], sp["hairiness"])[..., None]
  no_notch = jnp.zeros((h, w), jnp.float32)
  clean_cloth = _selvage(render_lib.shade(fabric, geo, yarn) * hair, geo, sp, w, no_notch)
  exposure = image["brightness"] / jnp.maximum(jnp.mean(clean_cloth), 0.02)
  image = dict(image, exposure=image["exposure"] * exposure)
  clean = _camera(clean_cloth, geo, fabric, image, sp, w)
  dkey = identity.defect_key(root, fabric_id, image_index, jnp.maximum(defect_class, 0))
  inst = instance_params(dkey, defect_class, (h, w), preset.instance_probs, ranges)
  mods, post, scores = defect_fields(inst, defect_class, fabric, image, geo, sp, w)
  cloth = _apply_post(render_lib.shade(fabric, geo, yarn, mods) * hair, post)
  defect = _camera(_selvage(cloth, geo, sp, w, post["notch"]), geo, fabric, image, sp, w)
  changed = jnp.max(jnp.abs(defect - clean), axis=-1) * 255.0 > 2.0
  changed = changed & (defect_class >= 0)
  label = jnp.argmax(scores, axis=0).astype(jnp.int32) + 1
  kept, record = labels_lib.single_class_labels(changed, label, defect_class, fabric_id,
                                                preset.min_component_area)
  q = lambda v: jnp.round(v * 255.0).astype(jnp.uint8)
  return {"image": jnp.repeat(jnp.where(kept[..., None], q(defect), q(clean)), 3, axis=-1),
          **record}
