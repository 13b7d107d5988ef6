"""DFC's open-set layer: OpenMax (Bendale & Boult 2016) over the classifier's logit vectors.

Fit, once after training: for each known class j, the mean logit vector mu_j of the training
samples of class j that the classifier gets right, their distances to mu_j, and a Weibull fit
(`weibull.fit`) of the `tail_size` largest distances: how far a genuine class-j sample can lie.

Recalibrate a test logit vector v: rank the classes by v; for the top `alpha` ranks i = 1..alpha,
with rank weight r_i = (alpha - i + 1) / alpha, the class-j score becomes
v_j (1 - r_i W_j.cdf(d(v, mu_j))) and the removed mass goes to an "unknown" score
v_0 = sum_j v_j r_i W_j.cdf(...). A softmax over [v_0, v_1..v_S] gives P(unknown) and the class
probabilities; a sample is "unknown" when P(unknown) is the largest or the top probability is
below `threshold` (Bendale & Boult's rule; the note: "low match to every class means unknown").

The baseline is the plain softmax with the same threshold (`softmax_predict`).
Distances: "euclidean", or "eucos" = euclidean / eucos_scale + cosine distance, the mix the
OpenMax authors used for ImageNet logits (scale 200 there; a config value here).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fabgen.dgt import weibull

UNKNOWN = -1
DISTANCES = ("euclidean", "eucos")


def distance(v: np.ndarray, mean: np.ndarray, kind: str, eucos_scale: float = 200.0):
  """Distances [N] of rows of v [N, S] to one mean [S]."""
  eu = np.linalg.norm(v - mean, axis=-1)
  if kind == "euclidean":
    return eu
  if kind == "eucos":
    cos = np.sum(v * mean, -1) / np.maximum(np.linalg.norm(v, axis=-1) * np.linalg.norm(mean),
                                            1e-12)
    return eu / eucos_scale + (1.0 - cos)
  raise ValueError(f"config.dfc.distance={kind!r}; use one of {DISTANCES}")


def _softmax(x):
  z = x - np.max(x, -1, keepdims=True)
  e = np.exp(z)
  return e / np.sum(e, -1, keepdims=True)


@dataclasses.dataclass
class OpenMax:
  """Per-class means and Weibull models; `alpha`, `threshold`, `distance` as configured."""
  means: np.ndarray              # [S, S]
  models: list                   # S Weibull fits
  alpha: int
  threshold: float
  distance: str = "euclidean"
  eucos_scale: float = 200.0

  @classmethod
  def fit(cls, logits, labels, tail_size: int, alpha: int, threshold: float,
          distance_kind: str = "euclidean", eucos_scale: float = 200.0) -> "OpenMax":
    """Fits from training logits [N, S] and labels [N] (0..S-1)."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    s = logits.shape[1]
    if not 1 <= alpha <= s:
      raise ValueError(f"config.dfc.alpha={alpha} must be in [1, {s}] (the known classes)")
    if tail_size < 2:
      raise ValueError(f"config.dfc.tail_size={tail_size} must be at least 2")
    correct = np.argmax(logits, -1) == labels
    means, models = [], []
    for j in range(s):
      rows = logits[(labels == j) & correct]
      if len(rows) < 2:  # the classifier gets (almost) none of class j right: use all of them
        rows = logits[labels == j]
      if len(rows) < 2:
        raise ValueError(f"OpenMax fit: class {j} has {len(rows)} training samples; need 2")
      mean = rows.mean(0)
      d = np.sort(distance(rows, mean, distance_kind, eucos_scale))[-tail_size:]
      d = np.maximum(d, 1e-6 * max(float(d.max()), 1e-12))  # a zero distance has no log
      if np.ptp(d) == 0:
        d = d * (1.0 + 1e-3 * np.arange(len(d)))
      means.append(mean)
      models.append(weibull.fit(d))
    return cls(np.stack(means), models, int(alpha), float(threshold), distance_kind,
               float(eucos_scale))

  def probabilities(self, logits) -> np.ndarray:
    """[N, S+1] OpenMax probabilities; column 0 is "unknown", column j+1 is class j."""
    v = np.asarray(logits, np.float64)
    n, s = v.shape
    ranks = np.argsort(-v, axis=-1)
    revised = v.copy()
    for i in range(self.alpha):
      weight = (self.alpha - i) / self.alpha
      cls = ranks[:, i]
      d = np.empty(n)
      for j in np.unique(cls):
        rows = cls == j
        d[rows] = distance(v[rows], self.means[j], self.distance, self.eucos_scale)
      w = np.array([self.models[j].cdf(d[k]) for k, j in enumerate(cls)]) * weight
      revised[np.arange(n), cls] = v[np.arange(n), cls] * (1.0 - w)
    unknown = np.sum(v - revised, -1, keepdims=True)
    return _softmax(np.concatenate([unknown, revised], -1))

  def predict(self, logits):
    """(labels in {-1 unknown, 0..S-1}, unknown score = P(unknown)) per row."""
    p = self.probabilities(logits)
    top = np.argmax(p, -1)
    pred = np.where((top == 0) | (np.max(p, -1) < self.threshold), UNKNOWN, top - 1)
    return pred, p[:, 0]

  def to_dict(self) -> dict:
    return {"means": self.means.tolist(), "weibull": [m.to_dict() for m in self.models],
            "alpha": self.alpha, "threshold": self.threshold, "distance": self.distance}


def softmax_predict(logits, threshold: float):
  """Baseline: (labels, unknown score = 1 - max softmax); unknown when max < threshold."""
  p = _softmax(np.asarray(logits, np.float64))
  top = np.max(p, -1)
  return np.where(top < threshold, UNKNOWN, np.argmax(p, -1)), 1.0 - top
