"""The woven-fabric renderer: weave geometry, yarn shading, colour, then the camera.

Everything is a pure jax.numpy function of per-pixel coordinates, vectorised over the image, so
one image costs a few hundred flops per pixel with no per-yarn Python loop. The model, per pixel:

1. Geometry. Pixel (x, y) -> fabric coordinates (u, v) in yarn units (small rotation and skew,
   crimp waviness, a per-frame offset), warp end i = floor(u), weft pick j = floor(v). The weave
   repeat says which yarn is on top at (i, j) and whether its float continues to the next cell.
2. Yarns. Each yarn has a circular cross-section of jittered centre and width, thickened by slubs
   along its length; the top yarn covers the pixel where it is, the under yarn shows beside it
   (darker), and a shadowed gap shows where neither is. Shading is cylindrical (plus a side
   light), with fibre streaks and a twist texture along the yarn and a dip where a float ends.
3. Colour. Yarn-dyed stripe/check repeats choose each yarn's colour; a printed pattern tints the
   surface; defects (see `defects.py`) edit these fields through `mods`.
4. Camera (`camera`): lighting gradient, vignette, line-scan column gain, 3-tap blur, exposure and
   sensor noise. Noise depends only on the pixel and the frame seed, so a defect image and its
   defect-free twin share it exactly.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from fabgen.data.fabricsim import hashing
from fabgen.data.fabricsim import weaves

Params = dict[str, Any]

_TABLE, _PERIODS = weaves.weave_table()


def _weave_codes(weave):
  """[8, 8] int32 per weave cell: bit0 warp up, bit1/2 warp float continues to the previous/next
  pick, bit3/4 weft float continues to the previous/next end (cells beyond the period unused)."""
  up = jnp.asarray(_TABLE)[weave]
  pw, ph = jnp.asarray(_PERIODS)[weave][0], jnp.asarray(_PERIODS)[weave][1]
  j, i = jnp.meshgrid(jnp.arange(8), jnp.arange(8), indexing="ij")
  at = lambda jj, ii: up[jnp.mod(jj, ph), jnp.mod(ii, pw)]
  warp_up = at(j, i)
  return (warp_up + 2 * at(j - 1, i) + 4 * at(j + 1, i)
          + 8 * (1 - at(j, i - 1)) + 16 * (1 - at(j, i + 1))), pw, ph


def geometry(fabric: Params, image: Params, size: "int | tuple[int, int]") -> Params:
  """Fabric coordinates and weave state of every pixel (independent of any defect).

  `size`: a square side, or (height, width) for a strip.
  """
  h, w = (size, size) if isinstance(size, int) else size
  y, x = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                      indexing="ij")
  xc, yc = x - w / 2.0, y - h / 2.0
  c, s = jnp.cos(image["rotation"]), jnp.sin(image["rotation"])
  xr = c * xc + s * yc + fabric["skew"] * yc
  yr = -s * xc + c * yc
  pitch_u, pitch_v = fabric["pitch"][0], fabric["pitch"][1]
  v = yr / pitch_v + image["offset"][1]
  crimp = fabric["crimp"] * jnp.sin(v * (6.2831853 / 23.0) + x * 0.0021)
  u = xr / pitch_u + image["offset"][0] + crimp
  i, j = jnp.floor(u), jnp.floor(v)
  codes, pw, ph = _weave_codes(fabric["weave"])
  ii, jj = i.astype(jnp.int32), j.astype(jnp.int32)
  code = codes.reshape(-1)[jnp.mod(jj, ph) * 8 + jnp.mod(ii, pw)]
  return {"x": x, "y": y, "u": u, "v": v, "i": ii, "j": jj, "fu": u - i, "fv": v - j,
          "code": code}


def _stripe_index(lane, widths):
  """Palette entry (0..2) of a yarn in a stripe repeat of the given widths."""
  period = jnp.maximum(widths.sum(), 1)
  p = jnp.mod(lane, period)
  return (p >= widths[0]).astype(jnp.int32) + (p >= widths[0] + widths[1]).astype(jnp.int32)


def _print_alpha(fabric: Params, geo: Params):
  """Coverage of a printed motif (dots, waves or blotches) in cloth coordinates."""
  pu = geo["u"] * fabric["pitch"][0] / fabric["print_scale"]
  pv = geo["v"] * fabric["pitch"][1] / fabric["print_scale"]
  row = jnp.floor(pv)
  du = pu + 0.5 * jnp.mod(row, 2.0) - jnp.floor(pu + 0.5 * jnp.mod(row, 2.0)) - 0.5
  dv = pv - row - 0.5
  dots = jnp.clip((0.32 - jnp.sqrt(du * du + dv * dv)) * 12.0, 0.0, 1.0)
  waves = jnp.clip(3.0 * jnp.sin(6.2831853 * (pu + 0.35 * jnp.sin(6.2831853 * pv))) - 1.2, 0., 1.)
  blot = jnp.clip((hashing.value_noise(fabric["seed"] + 7, pu * 1.7, pv * 1.7) - 0.55) * 8.0,
                  0.0, 1.0)
  kind = fabric["print_kind"]
  return jnp.where(kind == 0, dots, jnp.where(kind == 1, waves, blot))


def yarns(fabric: Params, geo: Params, channels: int, with_print: bool) -> Params:
  """Per-pixel yarn fields that no defect changes: cross-sections, fibre texture, colours.

  Computed once per frame and shared by the defect-free and the defect render.
  """
  seed = fabric["seed"]
  i, j, fu, fv = geo["i"], geo["j"], geo["fu"], geo["fv"]
  # Jittered yarn centres and slub-thickened half widths, in yarn units.
  cu = 0.5 + fabric["jitter"] * (hashing.uniform2(seed, i, 1) - 0.5)
  cv = 0.5 + fabric["jitter"] * (hashing.uniform2(seed, j, 2) - 0.5)
  slen = fabric["slub_length"]
  hw_u = 0.5 * fabric["width"][0] * (1.0 + fabric["slub"] * (
      2.0 * hashing.value_noise_1d(seed + 3, i, geo["v"] / slen) - 1.0))
  hw_v = 0.5 * fabric["width"][1] * (1.0 + fabric["slub"] * (
      2.0 * hashing.value_noise_1d(seed + 4, j, geo["u"] / slen) - 1.0))
  du = (fu - cu) / hw_u
  dv = (fv - cv) / hw_v
  # Fibre streaks: 3 lanes across each yarn, each a 1-D noise along it.
  streak_u = hashing.value_noise_1d(seed + 5, i * 8 + jnp.floor((du + 1.0) * 1.5).astype(
      jnp.int32), geo["v"] * 2.2)
  streak_v = hashing.value_noise_1d(seed + 6, j * 8 + jnp.floor((dv + 1.0) * 1.5).astype(
      jnp.int32), geo["u"] * 2.2)
  warp_rgb = fabric["warp_palette"][_stripe_index(i, fabric["warp_widths"])][..., :channels]
  weft_rgb = fabric["weft_palette"][_stripe_index(j, fabric["weft_widths"])][..., :channels]
  if with_print:
    pa = (fabric["print_amount"] * _print_alpha(fabric, geo))[..., None]
    warp_rgb = warp_rgb * (1.0 - pa) + fabric["print_rgb"][:channels] * warp_rgb * 1.6 * pa
    weft_rgb = weft_rgb * (1.0 - pa) + fabric["print_rgb"][:channels] * weft_rgb * 1.6 * pa
  cloud = 1.0 + fabric["cloud"] * (2.0 * hashing.value_noise(seed + 6, geo["x"] / 11.0,
                                                              geo["y"] / 11.0) - 1.0)
  return {"du": du, "dv": dv, "hw_u": hw_u, "hw_v": hw_v, "streak_u": streak_u,
          "streak_v": streak_v, "warp_rgb": warp_rgb, "weft_rgb": weft_rgb, "cloud": cloud}


def shade(fabric: Params, geo: Params, yarn: Params, mods: Params | None = None):
  """Linear-light colour [H, W, channels] of the cloth before the camera, with optional defects.

  `yarn` comes from `yarns`. `mods` (from `defects.py`) holds per-pixel fields in [0, 1]:
  warp_gone / weft_gone (a yarn is missing here), light (white-stripe lift), tint / tint_rgb (dye
  spot), knot / knot_shade / shadow (a lump of yarn and its cast shadow), dark / dark_strength
  (oil).
  """
  code = geo["code"]
  up = (code & 1) == 1
  du, dv, hw_u, hw_v = yarn["du"], yarn["dv"], yarn["hw_u"], yarn["hw_v"]
  cov_u = jnp.clip((1.0 - jnp.abs(du)) * hw_u * fabric["pitch"][0] + 0.5, 0.0, 1.0)
  cov_v = jnp.clip((1.0 - jnp.abs(dv)) * hw_v * fabric["pitch"][1] + 0.5, 0.0, 1.0)
  warp_rgb, weft_rgb = yarn["warp_rgb"], yarn["weft_rgb"]
  if mods is not None:
    warp_gone, weft_gone = mods["warp_gone"], mods["weft_gone"]
    cov_u = cov_u * (1.0 - warp_gone)
    cov_v = cov_v * (1.0 - weft_gone)
    up = (up & (warp_gone < 0.5)) | ((weft_gone >= 0.5) & (warp_gone < 0.5))
  # Top yarn / under yarn, selected per pixel.
  d_top = jnp.where(up, du, dv)
  d_bot = jnp.where(up, dv, du)
  cov_top = jnp.where(up, cov_u, cov_v)
  cov_bot = jnp.where(up, cov_v, cov_u)
  local = jnp.where(up, geo["fv"], geo["fu"])
  along = jnp.where(up, geo["v"], geo["u"])
  streak = jnp.where(up, yarn["streak_u"], yarn["streak_v"])
  cont_prev = jnp.where(up, code & 2, code & 8) > 0
  cont_next = jnp.where(up, code & 4, code & 16) > 0
  # Cylindrical cross-section with a side light; fibre streaks and twist along the yarn.
  nz = jnp.sqrt(jnp.clip(1.0 - d_top * d_top, 0.0, 1.0))
  prof_top = 0.42 + 0.58 * nz - 0.1 * d_top
  twist = jnp.sin(6.2831853 * fabric["twist_freq"] * (along + 0.45 * d_top))
  fibre = 1.0 + fabric["fibre"] * (2.0 * streak - 1.0) + fabric["twist"] * twist
  a2, b2 = (1.0 - local) ** 2, local ** 2
  dip = 1.0 - 2.0 * fabric["dip"] * ((~cont_prev) * a2 * a2 + (~cont_next) * b2 * b2)
  s_top = prof_top * fibre * jnp.clip(dip, 0.2, 1.0)
  nzb = jnp.sqrt(jnp.clip(1.0 - d_bot * d_bot, 0.0, 1.0))
  s_bot = (0.5 + 0.5 * nzb) * fabric["under"]
  if mods is not None:
    lift = mods["light"][..., None]
    warp_rgb = warp_rgb + (0.97 - warp_rgb) * lift
    weft_rgb = weft_rgb + (0.97 - weft_rgb) * lift * 0.6
    tint = mods["tint"][..., None]
    channels = warp_rgb.shape[-1]
    warp_rgb = warp_rgb * (1.0 + (mods["tint_rgb"][:channels] - 1.0) * tint)
    weft_rgb = weft_rgb * (1.0 + (mods["tint_rgb"][:channels] - 1.0) * tint)
    # A missing yarn leaves a hole; the yarns crossing it float loose and catch more light.
    gone = jnp.maximum(warp_gone, weft_gone)
    s_top = s_top * (1.0 + 0.22 * gone)
    s_bot = s_bot * (1.0 + 0.2 * gone)
  top_rgb = jnp.where(up[..., None], warp_rgb, weft_rgb)
  bot_rgb = jnp.where(up[..., None], weft_rgb, warp_rgb)
  gap = fabric["gap"] * 0.5 * (top_rgb + bot_rgb)
  if mods is not None:
    gap = gap * (1.0 - 0.5 * gone)[..., None]
  ct, cb = cov_top[..., None], cov_bot[..., None]
  out = ct * top_rgb * s_top[..., None] + (1.0 - ct) * (cb * bot_rgb * s_bot[..., None]
                                                        + (1.0 - cb) * gap)
  out = out * yarn["cloud"][..., None]
  if mods is not None:
    knot = mods["knot"][..., None]
    lump = jnp.mean(warp_rgb, axis=-1, keepdims=True) * 0.15 + warp_rgb * 0.85
    out = out * (1.0 - knot) + lump * mods["knot_shade"][..., None] * knot
    out = out * (1.0 - mods["shadow"][..., None])
    dark = mods["dark"][..., None] * mods["dark_strength"]
    mean = jnp.mean(out, axis=-1, keepdims=True)
    out = (mean + (out - mean) * (1.0 + 1.2 * dark)) * (1.0 - dark)
  return out


def sensor(fabric: Params, image: Params, geo: Params, channels: int, line_scan: bool) -> Params:
  """Per-frame light profile and unit sensor noise, shared by a frame's clean and defect renders."""
  size = geo["x"].shape[0]
  xn, yn = geo["x"] / size - 0.5, geo["y"] / size - 0.5
  light = 1.0 + image["light"][0] * xn * 2.0 - fabric["vignette"] * (xn * xn + yn * yn) * 2.0
  if line_scan:  # a line-scan strip is lit uniformly along the motion; gain varies per column
    light = light * (1.0 + fabric["prnu"] * (2.0 * hashing.uniform2(
        fabric["seed"] + 9, geo["x"].astype(jnp.int32), 0) - 1.0))
  else:
    light = light + image["light"][1] * yn * 2.0
  xi, yi = geo["x"].astype(jnp.int32), geo["y"].astype(jnp.int32)
  seed = image["seeds"][0]
  noise = jnp.stack([hashing.triangular_noise(seed + c, xi, yi) for c in range(channels)], -1)
  return {"gain": (light * image["exposure"])[..., None], "noise": noise}


def camera(img, fabric: Params, sens: Params):
  """What the sensor records: light falloff, optics blur, exposure and noise; float in [0, 1]."""
  img = img * sens["gain"]
  w = fabric["blur"]
  pad = jnp.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
  img = (1 - 2 * w) * pad[1:-1] + w * (pad[:-2] + pad[2:])
  img = (1 - 2 * w) * img[:, 1:-1] + w * (img[:, :-2] + img[:, 2:])
  # Shot noise grows with the signal: sigma scales from 0.6x (dark) to 1.2x (bright).
  return jnp.clip(img + sens["noise"] * fabric["noise"] * (0.6 + 0.6 * jnp.clip(img, 0.0, 1.0)),
                  0.0, 1.0)
