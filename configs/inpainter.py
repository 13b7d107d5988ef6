"""The single-stage R3GAN inpainting generator G(z, background, mask, class) (method `inpainter`).

  fabgen train --config configs/inpainter.py:tiny --workdir /tmp/inpainter_tiny     # CPU, ~1 min
  fabgen train --config configs/inpainter.py:64 --workdir runs/inpainter64
  fabgen synthesize --method inpainter --checkpoint runs/inpainter64 \
      --backgrounds ... --num 1000 --out o/
  python -m benchmarks.bench_stage2

Variants: tiny (32x32 windows of `fabricsim:tiny:train`: tests and CPUs), 64, 128. Trained with
the stage-1 recipe: RpGAN + R1 + R2 (`objective=nsgan|hinge|wgan` for the ablation). Options:
objective, source (any `open_source` spec), steps, batch.
"""

import ml_collections

from fabgen.platform import config as config_lib
from fabgen.platform import sharding as sharding_lib

VARIANTS = ("tiny", "64", "128")


def get_config(arg=None):
  """`arg`: variant plus key=value options, e.g. "tiny,objective=nsgan,steps=20"."""
  o = config_lib.parse_arg(arg, variant="64", objective="rpgan", source="", steps=0, batch=0)
  if o.variant not in VARIANTS:
    raise ValueError(f"configs/inpainter.py: unknown variant {o.variant!r}; use "
                     f"{', '.join(VARIANTS)}")
  tiny = o.variant == "tiny"
  size = {"tiny": 32, "64": 64, "128": 128}[o.variant]
  c = config_lib.base_config()
  c.task = "inpainter"
  c.seed = 0
  c.image_size = size                        # side of the window G paints into
  c.total_steps = o.steps or (40 if tiny else 100_000)
  c.batch_size = o.batch or (8 if tiny else 32)
  c.ema_half_life = 500 if tiny else 10_000  # in images

  m = c.model
  m.widths = (16, 32) if tiny else (32, 64, 128, 256)[: 3 + (size > 64)]  # G, per 2x level
  m.d_widths = (16, 32) if tiny else (32, 64, 128)   # patch D, logit map at 1/2^(n-1) res.
  m.blocks = 1 if tiny else 2          # R3GAN residual blocks per level
  m.expansion = 2                      # inverted bottleneck: hidden = expansion * width
  m.group_width = 8 if tiny else 16    # channels per grouped-3x3 group
  # Grouped-conv formulation: auto | xla | custom | einsum. tiny: einsum, measured faster at
  # 8-channel groups on CPU (bench_stage2 tiny fusion: compile 10 s vs 14 s, step 233 vs 283 ms).
  m.conv_impl = "einsum" if tiny else "auto"
  m.noise_channels = 2 if tiny else 4  # z, as spatial noise maps
  m.mask_bank_size = 32 if tiny else 1024  # real defect shapes kept in the state for synthesis

  lo = c.loss
  lo.objective = o.objective           # rpgan (R3GAN, default) | nsgan | hinge | wgan
  lo.margin = 2 if tiny else 3         # G paints inside dilate(mask, margin)
  lo.seam_radius = 2 if tiny else 3    # half-width of the seam band, px
  lo.seam_weight = 4.0                 # extra D weight on the seam band (weight = 1 + this)
  lo.r1_gamma = 1.0                    # R1 / R2 weights; applied when objective == rpgan
  lo.r2_gamma = 1.0

  op = c.optim
  op.lr_g = 1e-3 if tiny else 2e-4
  op.lr_d = 1e-3 if tiny else 2e-4
  op.b2 = 0.99
  # objective=rpgan trains with R3GAN's schedules (fabgen.gan.recipe), cosine over
  # schedule_steps (0 = total_steps): lr -> lr * end_lr_ratio, beta2 b2_start -> b2, R1/R2
  # weights -> loss.gamma_end_ratio of theirs, EMA half-life 0 -> ema_half_life (ema_schedule
  # "r3gan"; "ramp" = StyleGAN's). The paper's nsgan keeps constant lr and beta2.
  op.end_lr_ratio = 0.25
  op.b2_start = 0.9
  op.schedule_steps = 0
  lo.gamma_end_ratio = 0.1
  c.ema_schedule = "r3gan"

  d = c.data
  d.source = o.source or ("fabricsim:tiny:train" if tiny else "fabricsim:simple:train")
  d.max_records = 24 if tiny else 4000
  d.max_per_class = 16 if tiny else 512

  # A vmapped grid of runs in one program (fabgen.gan.grid_task): gamma sets loss.r1_gamma and
  # loss.r2_gamma (objective rpgan only); () = the single run's value / seed.
  c.grid = ml_collections.ConfigDict()
  c.grid.gammas = ()
  c.grid.seeds = ()

  c.checkpoint.every_steps = 20 if tiny else 2000
  c.log_every_steps = 5 if tiny else 100
  c.fsdp_min_size = 256 if tiny else 2 ** 14
  c.sharding_rules = list(sharding_lib.CONV_GAN_RULES)  # see fabgen/platform/sharding.py
  return c
