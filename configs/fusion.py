"""Stage 2: the defect-fusion network T against the seam-weighted discriminator D_T.

  fabgen train --config configs/fusion.py:tiny --workdir /tmp/fusion_tiny   # CPU, minutes
  fabgen train --config configs/fusion.py:64 --workdir runs/fusion64
  fabgen train --config configs/fusion.py:128,objective=rpgan --workdir runs/fusion128_rpgan

Variants: tiny (32x32 crops, CPU tests), 64, 128. `objective=rpgan` switches the paper's
log-loss to RpGAN + R1 + R2; `donors=<stage1 workdir>` uses stage-1 patches instead of real crops.
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
  """`arg`: comma-separated variant and key=value options, e.g. "tiny,objective=rpgan"."""
  opts = dict(kv.split("=", 1) if "=" in kv else ("variant", kv)
              for kv in (arg or "64").split(",") if kv)
  variant = opts.get("variant", "64")
  config = _base()
  config.task = "fusion"
  config.seed = 0
  size = {"tiny": 32, "64": 64, "128": 128}[variant]
  config.image_size = size                      # side of the crops T sees (and fuses)
  config.batch_size = 8 if variant == "tiny" else 32
  config.num_steps = 200 if variant == "tiny" else 50_000
  config.ema_half_life = 500 if variant == "tiny" else 10_000  # in images

  config.model = ml_collections.ConfigDict()
  config.model.widths = (16, 32) if variant == "tiny" else (32, 64, 128, 256)[: 3 + (size > 64)]
  config.model.d_widths = (16, 32) if variant == "tiny" else (32, 64, 128)
  config.model.blocks = 1 if variant == "tiny" else 2

  config.loss = ml_collections.ConfigDict()
  config.loss.objective = opts.get("objective", "nsgan")  # paper default; or "rpgan"
  config.loss.seam_radius = 2 if variant == "tiny" else 3  # half-width of the seam band, px
  config.loss.seam_weight = 4.0       # extra D weight on the seam band (weight = 1 + this)
  config.loss.l1_weight = 10.0        # keeps T(x) = x away from the window
  config.loss.r1_gamma = 1.0          # used by rpgan only
  config.loss.r2_gamma = 1.0

  config.optim = ml_collections.ConfigDict()
  config.optim.lr_t = 2e-4
  config.optim.lr_d = 2e-4
  config.optim.b2 = 0.99

  config.data = ml_collections.ConfigDict()
  config.data.source = opts.get("source", "fabricsim:simple:train")
  config.data.max_records = 64 if variant == "tiny" else 4000
  config.data.max_per_class = 16 if variant == "tiny" else 512
  config.data.margin = 2 if variant == "tiny" else 3  # window = dilate(defect mask, margin)
  config.data.donors = opts.get("donors", "real")      # "real" or a stage-1 workdir
  return config
