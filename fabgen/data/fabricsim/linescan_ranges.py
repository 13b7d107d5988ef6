"""Domain-randomisation ranges of FabricSim's line-scan look, as plain config values.

A detector trained on simulated strips transfers only if the real camera's look lies inside the
ranges it was trained on, so every property a line-scan image varies in is a (low, high)
uniform range here (drawn per fabric unless noted) rather than a constant in the renderer.
Widen a range to cover a new line, narrow it to match one; `fabricsim/linescan.py` reads them.
The defaults bracket the AITEX description (greyscale 4096x256 strips, fine weaves with a yarn
period of a few pixels, a line-scan camera over a lit roll).
"""

from __future__ import annotations

import dataclasses

Range = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class LineScanRanges:
  """What a line-scan strip may look like (see the module docstring)."""
  width: int = 4096                        # strip length along the camera line, pixels
  column_gain: Range = (0.005, 0.04)       # per-column pixel gain spread (PRNU), fraction
  banding: Range = (0.0, 0.06)             # amplitude of low-frequency column banding
  band_period: Range = (60.0, 900.0)       # pixels between bands along the line
  row_flicker: Range = (0.0, 0.012)        # per-line gain jitter (lamp ripple), fraction
  line_falloff: Range = (0.0, 0.25)        # light falloff towards the ends of the line
  motion_blur: Range = (0.0, 2.0)          # box blur along the scan (rows), pixels
  float_irregularity: Range = (0.0, 0.08)  # share of weave cells whose float is flipped
  hairiness: Range = (0.02, 0.14)          # contrast of loose surface fibres
  selvage_prob: float = 0.3                # per strip: the fabric's edge is in view
  selvage_width: Range = (40.0, 160.0)     # pixels of selvage weave
  edge_gap: Range = (0.0, 220.0)           # pixels of background beyond the selvage
  background: Range = (0.03, 0.15)         # grey level beyond the fabric edge
  fuzzy_ball_prob: float = 0.5             # a knot is a fuzzy ball (else a nep)
  cut_selvage_prob: float = 0.6            # a broken end on a strip with a selvage cuts it

  def __post_init__(self):
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if isinstance(v, tuple) and not (len(v) == 2 and v[0] <= v[1]):
        raise ValueError(f"LineScanRanges.{f.name} must be (low, high) with low <= high, "
                         f"got {v}")
      if f.name.endswith("_prob") and not 0.0 <= v <= 1.0:
        raise ValueError(f"LineScanRanges.{f.name} must be in [0, 1], got {v}")
    if self.width < 64:
      raise ValueError(f"LineScanRanges.width must be >= 64, got {self.width}")
