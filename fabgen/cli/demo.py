"""The whole pipeline on FabricSim, on a CPU, in minutes: `fabgen demo --workdir DIR`.

Trains the small detector on source fabrics, tiny stage-1 and stage-2 GANs and the single-stage
R3GAN inpainter, synthesizes defects for a held-out fabric with each method, fine-tunes the
detector on each set, and prints the before/after per-class F-measure table (as measured).
Pictures (real vs synthesized defects, detections) and the table land in DIR. It is the
adaptation protocol with configs/demo.py; rerunning resumes. `--config.x=y` overrides it.
"""

from __future__ import annotations

import argparse
import os

from fabgen.cli import adapt as adapt_cli

DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs", "demo.py")


TAKES_CONFIG_OVERRIDES = True  # `--config.a.b=v` reach run() as args.overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
  adapt_cli.add_arguments(parser, default_config=DEMO_CONFIG)


def run(args: argparse.Namespace) -> int:
  print("fabgen demo: adaptation protocol on FabricSim 'simple' (configs/demo.py); progress "
        "below, table at the end", flush=True)
  return adapt_cli.run_config(args, "demo")
