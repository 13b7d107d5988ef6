"""Maximum-likelihood Weibull fit (shape, scale, fixed location) and its CDF, in numpy.

OpenMax-style open-set classifiers model the largest distances of correct training samples to
their class mean with a Weibull distribution (extreme value theory: the maximum of many
distances follows a GEV law, whose bounded-below form is Weibull). The fit is small (tail sizes
of tens of points per class), runs once after training, on the host.

The location is fixed (default 0: distances are non-negative) and shape k and scale lam solve the
likelihood equations. With x normalised by its largest value (scale invariance; avoids overflow
of x^k), k is the root of the increasing function

  g(k) = sum x^k ln x / sum x^k - 1/k - mean(ln x),

found by safeguarded Newton steps in log k (bisection fallback), and lam = (mean x^k)^(1/k).
`tests/dgt/test_weibull.py` checks it against `scipy.stats.weibull_min.fit(x, floc=loc)`.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Weibull:
  shape: float
  scale: float
  loc: float = 0.0

  def cdf(self, x) -> np.ndarray:
    z = np.maximum(np.asarray(x, np.float64) - self.loc, 0.0) / self.scale
    return 1.0 - np.exp(-z ** self.shape)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def fit(samples, loc: float = 0.0, tol: float = 1e-10, max_iter: int = 200) -> Weibull:
  """ML fit of shape and scale to `samples` (> loc) with the location fixed at `loc`."""
  x = np.asarray(samples, np.float64).ravel() - loc
  if x.size < 2:
    raise ValueError(f"Weibull fit needs at least 2 samples, got {x.size}")
  if not np.all(np.isfinite(x)) or np.any(x <= 0):
    raise ValueError(f"Weibull fit needs finite samples above loc={loc}; min is "
                     f"{float(np.min(x) + loc)}")
  top = float(np.max(x))
  u = x / top
  logu = np.log(u)
  if np.ptp(logu) < 1e-12:
    raise ValueError("Weibull fit: all samples are equal; the shape is unbounded")
  mean_log = float(np.mean(logu))

  def g_and_slope(k):
    w = u ** k
    s0, s1, s2 = np.sum(w), np.sum(w * logu), np.sum(w * logu * logu)
    g = s1 / s0 - 1.0 / k - mean_log
    return g, (s2 * s0 - s1 * s1) / (s0 * s0) + 1.0 / (k * k)

  lo, hi = 1e-3, 1.0
  while g_and_slope(hi)[0] < 0:  # g increases in k; bracket the root
    lo, hi = hi, hi * 2.0
    if hi > 1e6:
      raise ValueError("Weibull fit: shape diverges (samples nearly constant)")
  k = 0.5 * (lo + hi) if lo > 1e-3 else hi / 2.0
  for _ in range(max_iter):
    g, slope = g_and_slope(k)
    if g > 0:
      hi = k
    else:
      lo = k
    step = k - g / slope
    k_new = step if lo < step < hi else 0.5 * (lo + hi)
    if abs(k_new - k) <= tol * k:
      k = k_new
      break
    k = k_new
  scale = float(top * float(np.mean(u ** k)) ** (1.0 / k))
  return Weibull(shape=float(k), scale=scale, loc=float(loc))
