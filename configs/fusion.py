"""Stage 2: the defect-fusion network T against the seam-weighted discriminator D_T.

  fabgen train --config configs/fusion.py:tiny --workdir /tmp/fusion_tiny           # CPU, ~1 min
  fabgen train --config configs/fusion.py:64 --workdir runs/fusion64
  fabgen train --config configs/fusion.py:128,objective=rpgan --workdir runs/fusion128_rpgan
  fabgen train --config configs/fusion.py:64,donors=runs/stage1_64 --workdir runs/fusion64_s1
  fabgen train --config configs/fusion.py:tiny,objective=rpgan --config.grid.gammas='(0.5,2.0)' \
      --workdir /tmp/fusion_grid    # a vmapped grid of R1/R2 weights (fabgen.gan.grid_task)
  python -m benchmarks.bench_stage2

Variants: tiny (32x32 crops of `fabricsim:tiny:train`, narrow nets: tests and CPUs), 64, 128.
Options: objective in {nsgan (the paper's log-loss, default), rpgan, hinge, wgan} (rpgan adds
R1 + R2), donors, source (any `open_source` spec), steps, batch.

Donors: the paper trains T on stage-1 patches pasted into real defect windows, since that is
what T fuses at synthesis: `donors=<stage-1 workdir>` does so, and is what `fabgen adapt` passes
(configs/adapt.py `fusion_donors="stage1"`, the protocol's default). Standalone, with no stage-1
model at hand, the value is "real": real defect crops of other images, the ablation switch.
"""

import ml_collections

from fabgen.platform import config as config_lib
from fabgen.platform import sharding as sharding_lib

VARIANTS = ("tiny", "64", "128")


def get_config(arg=None):
  """`arg`: variant plus key=value options, e.g. "tiny,objective=rpgan,steps=20"."""
  o = config_lib.parse_arg(arg, variant="64", objective="nsgan", donors="real", source="",
                           steps=0, batch=0)
  if o.variant not in VARIANTS:
    raise ValueError(f"configs/fusion.py: unknown variant {o.variant!r}; use {', '.join(VARIANTS)}")
  tiny = o.variant == "tiny"
  size = {"tiny": 32, "64": 64, "128": 128}[o.variant]
  c = config_lib.base_config()
  c.task = "fusion"
  c.seed = 0
  c.image_size = size                         # side of the crops T sees (and fuses)
  c.total_steps = o.steps or (40 if tiny else 50_000)
  c.batch_size = o.batch or (8 if tiny else 32)
  c.ema_half_life = 500 if tiny else 10_000   # in images

  m = c.model
  m.widths = (16, 32) if tiny else (32, 64, 128, 256)[: 3 + (size > 64)]  # T, per 2x level
  m.d_widths = (16, 32) if tiny else (32, 64, 128)  # D_T, logit map at 1/2^(n-1) resolution
  m.blocks = 1 if tiny else 2        # R3GAN residual blocks per level
  m.expansion = 2                    # inverted bottleneck: hidden = expansion * width
  m.group_width = 8 if tiny else 16  # channels per grouped-3x3 group
  # Grouped-conv formulation: auto | xla | custom | einsum. tiny: einsum, measured faster at
  # 8-channel groups on CPU (bench_stage2 tiny fusion: compile 10 s vs 14 s, step 233 vs 283 ms).
  m.conv_impl = "einsum" if tiny else "auto"
  # T acts only inside dilate(window, reach_radius): = seam_radius, exactly what synthesis keeps
  # of T's output, so no change is discarded; larger (or 0 = anywhere) for the L1-only ablation.
  m.reach_radius = 2 if tiny else 3

  lo = c.loss
  lo.objective = o.objective         # nsgan (paper) | rpgan | hinge | wgan
  lo.seam_radius = 2 if tiny else 3  # half-width of the seam band, px
  lo.seam_weight = 4.0               # extra D weight on the seam band (weight = 1 + this)
  lo.l1_weight = 10.0                # keeps T(x) = x away from the window
  lo.r1_gamma = 1.0                  # R1 / R2 weights; applied when objective == rpgan
  lo.r2_gamma = 1.0

  op = c.optim
  op.lr_t = 2e-4
  op.lr_d = 2e-3 if tiny else 2e-4  # tiny: D must learn within the tests' 30 steps
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
  # ADA colour augmentation of D_T's inputs (fabgen.gan.augment); off by default (the paper has
  # none). Geometric transforms do not apply: D_T's logit map is tied to the window.
  c.augment = ml_collections.ConfigDict()
  c.augment.enabled = False
  c.augment.p_start, c.augment.p_end = 0.0, 0.3
  c.augment.transforms = ("brightness", "contrast", "saturation")

  d = c.data
  d.source = o.source or ("fabricsim:tiny:train" if tiny else "fabricsim:simple:train")
  d.max_records = 24 if tiny else 4000       # source records scanned for defect crops
  d.max_per_class = 16 if tiny else 512      # per class: real crops kept, stage-1 donors made
  d.margin = 2 if tiny else 3                # window = dilate(defect mask, margin)
  d.donors = o.donors                        # a stage-1 workdir (paper), or "real" (ablation)

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



def get_sweep(hyper, study="loss"):
  """Grids `launch/sweep.py configs/fusion.py:64 --study loss|scale --workdir W` expands.

  loss: the adversarial objective (the paper's nsgan, rpgan with R1/R2, hinge) x the seam-band
  weight of D (0 = none, 4 = default), 6 runs. scale: the global batch with the learning rate
  scaled by its square root from 32 @ the 64 variant's lr_t / lr_d, 3 runs.
  """
  if study == "loss":
    return hyper.product([
        hyper.sweep("config.loss.objective", ["nsgan", "rpgan", "hinge"]),
        hyper.sweep("config.loss.seam_weight", [0.0, 4.0]),
    ])
  if study == "scale":
    batches = [32, 64, 128]
    op = get_config("64").optim
    scaled = lambda lr: [float(f"{lr * (b / 32) ** 0.5:.3g}") for b in batches]  # noqa: E731
    return hyper.zipit([hyper.sweep("config.batch_size", batches),
                        hyper.sweep("config.optim.lr_t", scaled(op.lr_t)),
                        hyper.sweep("config.optim.lr_d", scaled(op.lr_d))])
  raise ValueError(f"configs/fusion.py: get_sweep study={study!r}; use loss or scale")
