"""Counter-based noise: integer hashes of (seed, position) -> uniform floats, in jax.numpy.

Per-pixel randomness (fibre noise, slubs, sensor noise) is drawn by hashing integer lattice
coordinates with a per-image uint32 seed rather than with `jax.random` for every pixel: it is an
order of magnitude cheaper on a CPU, needs no key splitting inside the renderer, and is still a
pure function of (seed, coordinates), so a pixel never depends on batch layout or process count.
The seeds themselves come from threefry keys (see `identity.py`).
"""

from __future__ import annotations

import jax.numpy as jnp

_GOLDEN = jnp.uint32(0x9E3779B9)
_PRIME2 = jnp.uint32(0x85EBCA77)
_INV24 = 1.0 / (1 << 24)


def mix32(x):
  """A 32-bit avalanche mix (the 'lowbias32' finaliser): every input bit flips ~half the output."""
  x = x.astype(jnp.uint32)
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def hash2(seed, a, b):
  """uint32 hash of a seed and two integer coordinates (negative coordinates wrap)."""
  a = jnp.asarray(a).astype(jnp.int32).astype(jnp.uint32)
  b = jnp.asarray(b).astype(jnp.int32).astype(jnp.uint32)
  h = mix32(jnp.asarray(seed, jnp.uint32) + a * _GOLDEN)
  return mix32(h + b * _PRIME2)


def uniform2(seed, a, b):
  """Uniform [0, 1) float32 from a seed and two integer coordinates."""
  return (hash2(seed, a, b) >> 8).astype(jnp.float32) * _INV24


def _smooth(t):
  return t * t * (3.0 - 2.0 * t)


def value_noise(seed, x, y):
  """Smooth value noise in [0, 1) at float coordinates: bilinear blend of hashed lattice values."""
  ix, iy = jnp.floor(x), jnp.floor(y)
  fx, fy = _smooth(x - ix), _smooth(y - iy)
  ix, iy = ix.astype(jnp.int32), iy.astype(jnp.int32)
  v00 = uniform2(seed, ix, iy)
  v10 = uniform2(seed, ix + 1, iy)
  v01 = uniform2(seed, ix, iy + 1)
  v11 = uniform2(seed, ix + 1, iy + 1)
  top = v00 + (v10 - v00) * fx
  bottom = v01 + (v11 - v01) * fx
  return top + (bottom - top) * fy


def value_noise_1d(seed, lane, t):
  """Smooth 1-D value noise along `t`, independent per integer `lane` (2 hashes, not 4)."""
  it = jnp.floor(t)
  ft = _smooth(t - it)
  it = it.astype(jnp.int32)
  v0 = uniform2(seed, lane, it)
  v1 = uniform2(seed, lane, it + 1)
  return v0 + (v1 - v0) * ft


def triangular_noise(seed, a, b):
  """Zero-mean, unit-variance noise from ONE hash: the sum of its two 16-bit halves."""
  h = hash2(seed, a, b)
  lo = (h & jnp.uint32(0xFFFF)).astype(jnp.float32)
  hi = (h >> 16).astype(jnp.float32)
  return (lo + hi - 65535.0) * (2.449489743 / 65536.0)  # sqrt(6): var of U+U-1 is 1/6
