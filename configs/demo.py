"""`fabgen demo`: the adaptation protocol on FabricSim `simple`, sized for a 2-core CPU.

  fabgen demo --workdir demo_out          # what `make demo` runs
  fabgen demo --workdir demo_out --config.methods='("cutpaste",)'

Trains the small detector on the source fabrics, tiny stage-1 / stage-2 / single-stage GANs,
synthesizes defects for one held-out fabric with each method, fine-tunes, and prints the
before/after per-class F-measure table. It is `configs/adapt.py:demo`; edit sizes there.
"""

import importlib.util
import os


def get_config(arg=None):
  del arg
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adapt.py")
  spec = importlib.util.spec_from_file_location("fabgen_configs_adapt", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("demo")
