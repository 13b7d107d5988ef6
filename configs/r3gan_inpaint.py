"""The single-stage R3GAN inpainting generator G(z, background, mask, class) (method `r3gan`).

  fabgen train --config configs/r3gan_inpaint.py:tiny --workdir /tmp/r3gan_tiny   # CPU, minutes
  fabgen train --config configs/r3gan_inpaint.py:64 --workdir runs/r3gan64
  fabgen synthesize --method r3gan --checkpoint runs/r3gan64 --backgrounds ... --num 1000 --out o/

Variants: tiny (32x32 windows, CPU tests), 64, 128. Trained with the stage-1 recipe: RpGAN + R1
+ R2 (`objective=nsgan` switches to the paper's log-loss for the ablation).
"""

import ml_collections


def _base():
  """The platform's common fields (mesh, checkpointing, logging) when available."""
  try:
    from fabgen.platform.config import base_config  # pylint: disable=g-import-not-at-top
    return base_config()
  except ImportError:
    return ml_collections.ConfigDict()


def get_config(arg=None):
  """`arg`: comma-separated variant and key=value options, e.g. "tiny,objective=nsgan"."""
  opts = dict(kv.split("=", 1) if "=" in kv else ("variant", kv)
              for kv in (arg or "64").split(",") if kv)
  variant = opts.get("variant", "64")
  config = _base()
  config.task = "r3gan_inpaint"
  config.seed = 0
  size = {"tiny": 32, "64": 64, "128": 128}[variant]
  config.image_size = size                   # side of the window G paints into
  config.batch_size = 8 if variant == "tiny" else 32
  config.num_steps = 200 if variant == "tiny" else 100_000
  config.ema_half_life = 500 if variant == "tiny" else 10_000  # in images

  config.model = ml_collections.ConfigDict()
  config.model.widths = (16, 32) if variant == "tiny" else (32, 64, 128, 256)[: 3 + (size > 64)]
  config.model.d_widths = (16, 32) if variant == "tiny" else (32, 64, 128)
  config.model.blocks = 1 if variant == "tiny" else 2
  config.model.noise_channels = 2 if variant == "tiny" else 4  # z, as spatial noise maps

  config.loss = ml_collections.ConfigDict()
  config.loss.objective = opts.get("objective", "rpgan")
  config.loss.margin = 2 if variant == "tiny" else 3   # G paints inside dilate(mask, margin)
  config.loss.seam_radius = 2 if variant == "tiny" else 3
  config.loss.seam_weight = 4.0
  config.loss.r1_gamma = 1.0
  config.loss.r2_gamma = 1.0

  config.optim = ml_collections.ConfigDict()
  config.optim.lr_g = 2e-4
  config.optim.lr_d = 2e-4
  config.optim.b2 = 0.99

  config.data = ml_collections.ConfigDict()
  config.data.source = opts.get("source", "fabricsim:simple:train")
  config.data.max_records = 64 if variant == "tiny" else 4000
  config.data.max_per_class = 16 if variant == "tiny" else 512
  return config
