"""FabricSim: a procedural woven-fabric + defect generator with exact instance masks.

  sim = FabricSim("simple", seed=0)
  sample = sim.record("train", 0)          # fabgen.data.sample format, numpy
  batch = sim.render_batch(f, i, c)         # jit(vmap) in-graph generation

Modules: `weaves` (repeat tables), `hashing` (counter-based noise), `identity` (fabric and frame
parameters from threefry keys), `render` (cloth shading + camera), `defects` (the six classes),
`presets` (simple / complex / tiny), `simulator` (the data set API), `contact_sheet` (pictures).
"""

from fabgen.data.fabricsim.presets import PRESETS, SPLITS, Preset, get_preset
from fabgen.data.fabricsim.simulator import FabricSim, render_image

__all__ = ["FabricSim", "PRESETS", "Preset", "SPLITS", "get_preset", "render_image"]
