"""The platform's reference task: a small conv classifier on procedural gratings.

  fabgen train --config configs/reference.py:tiny --workdir /tmp/ref_tiny      # CPU, seconds
  fabgen train --config configs/reference.py --workdir runs/ref --config.mesh.fsdp=2
  fabgen compile --config configs/reference.py --mesh data=8                  # AOT memory check

Variants: tiny (16px, 2 conv widths 8/16, what the platform tests run), default (32px), big
(64px, wide: for benchmarks on accelerators). `get_sweep()` lists a learning-rate grid that
`launch/sweep.py` expands into commands.
"""

from fabgen.platform import config as config_lib


def get_config(arg=None):
  """`arg`: "tiny", "big" or empty, plus key=value options (e.g. "tiny,steps=30")."""
  opts = config_lib.parse_arg(arg, variant="default", steps=0, batch=0)
  variant = opts.variant
  if variant not in ("tiny", "default", "big"):
    raise ValueError(f"configs/reference.py: unknown variant {variant!r}; use tiny, default, big")
  tiny, big = variant == "tiny", variant == "big"
  c = config_lib.base_config()
  c.task = "reference"
  c.seed = 0
  c.total_steps = opts.steps or (20 if tiny else 2000)
  c.batch_size = opts.batch or (8 if tiny else 64 if not big else 256)
  c.ema_half_life = 64 if tiny else 2000  # in images

  c.model.widths = (8, 16) if tiny else (32, 64, 128) if not big else (128, 256, 512, 512)
  c.model.num_classes = 4

  c.data.image_size = 16 if tiny else 32 if not big else 64
  c.data.channels = 3
  c.data.num_examples = 256 if tiny else 50_000

  c.optim.lr = 1e-2 if tiny else 3e-3
  c.optim.end_lr = 3e-4
  c.optim.b2 = 0.99
  c.optim.clip_norm = 1.0

  c.loss.nan_at_step = -1  # fault injection for the platform's NaN-stop test

  c.checkpoint.every_steps = 10 if tiny else 500
  c.log_every_steps = 1 if tiny else 50
  c.summary_every_steps = 10 if tiny else 500
  c.fsdp_min_size = 256 if tiny else 2 ** 14
  if big:
    c.precision.compute_dtype = "bfloat16"
  return c


def get_sweep(hyper):
  """Learning rate x number of classes (hyper.product / hyper.sweep, as big_vision sweeps)."""
  return hyper.product([
      hyper.sweep("config.optim.lr", [1e-3, 3e-3]),
      hyper.sweep("config.model.num_classes", [4, 8]),
  ])
