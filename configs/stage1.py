"""Stage 1: the texture-conditioned R3GAN defect generator (Gram of VGG19 features -> patch+mask).

  fabgen train --config configs/stage1.py:tiny --workdir /tmp/stage1_tiny         # CPU, minutes
  fabgen train --config configs/stage1.py:64 --workdir runs/stage1_64             # GPU / TPU
  fabgen train --config configs/stage1.py:128,vgg=/data/vgg19.safetensors --workdir runs/s1_128
  fabgen train --config configs/stage1.py:64,loss=hinge,r2=False --workdir runs/ablate_hinge
  python -m benchmarks.bench_stage1                                  # incl. :r3gan_compare
  python -m benchmarks.bench_r3gan_compare                           # vs the official R3GAN step

Variants: tiny (16px patches, narrow nets, a width-1/8 VGG trained by fabgen on FabricSim
fabrics, `configs/texture.py:tiny`: tests and CPUs), 64, 128,
r3gan_compare (one-to-one with the official R3GAN step measured side by side on the CPU, issue
19: unconditional 64x64, 3 raw output channels, G widths [256, 256, 256, 128, 64] from 4x4 up and
D the reverse, group width 16 (cardinality 2 x width / 16), 2 blocks per stage, expansion 2,
noise 64, batch 16, RpGAN + R1 + R2 every step, Adam, EMA, no augmentation (p starts at 0 in the
reference); `benchmarks/bench_r3gan_compare.py` times it against the reference),
r3gan_ffhq64 (the official FFHQ-64 preset: G widths [768, 768, 768, 768, 384] and D the
reverse, cardinality [96, 96, 96, 96, 48] = group width 16, batch 256, augmentation 0 -> 0.3).
Both r3gan_* variants: gamma 2 -> 0.2, lr 2e-4 -> 5e-5, beta2 0.9 -> 0.99, EMA half-life
0 -> 500k images, all cosine over 20M images. Differences left: resampling borders are
edge-replicated (the reference zero-pads), everything runs in f32 (the reference runs its
low-resolution stages in fp16), and fabgen's augmentation set lacks the reference's hue,
luma-flip and cutout. Options: loss
in {rpgan, nsgan, hinge, wgan}, r1, r2, gamma, lazy_interval, ema, vgg (a torchvision VGG19 state
dict as .safetensors/.npz/.pth), texture (auto | random | a configs/texture.py workdir |
train:configs/texture.py:<variant>), augment (auto | on | off), source, steps, batch.

Grids (`fabgen.gan.grid_task`): gammas and/or seeds, ';'-separated, train every member of
gammas x seeds side by side in one compiled program (vmap), with per-member metrics
(`g_loss/gamma=0.5`), evaluations (`samples/<label>/`) and one checkpoint holding them all:
  fabgen train --config 'configs/stage1.py:tiny,gammas=0.5;1;2' --workdir /tmp/s1_gammas
  fabgen train --config configs/stage1.py:tiny --config.grid.seeds='(0,1,2)' --workdir /tmp/s1_seeds
Member (g, s) is the single run with loss.gamma=g, seed=s on the same batches (input order from
`seed`). Empty (the default) = one ordinary run.
"""

import ml_collections

from fabgen.gan import augment as augment_lib
from fabgen.platform import config as config_lib
from fabgen.platform import sharding as sharding_lib


def get_config(arg=None):
  """`arg`: variant plus key=value options, e.g. "tiny,loss=hinge,gamma=0.5"."""
  o = config_lib.parse_arg(arg, variant="64", loss="rpgan", r1=True, r2=True, gamma=0.0,
                           lazy_interval=1, ema=True, vgg="", texture="auto", source="", steps=0,
                           batch=0, background=False, augment="auto", gammas="", seeds="")
  if o.variant not in ("tiny", "64", "128", "r3gan_compare", "r3gan_ffhq64"):
    raise ValueError(f"configs/stage1.py: unknown variant {o.variant!r}; use tiny, 64, 128, "
                     f"r3gan_compare or r3gan_ffhq64")
  tiny = o.variant == "tiny"
  compare = o.variant.startswith("r3gan_")  # the official R3GAN architecture and recipe
  size = {"tiny": 16, "128": 128}.get(o.variant, 64)
  c = config_lib.base_config()
  c.task = "stage1"
  c.seed = 0
  c.patch_size = size
  c.total_steps = o.steps or (150 if tiny else 200_000)
  # r3gan_compare: the batch of the CPU side-by-side (issue 19); r3gan_ffhq64: the official
  # FFHQ-64 global batch (8 GPUs x 32)
  c.batch_size = o.batch or {"tiny": 8, "r3gan_compare": 16,
                             "r3gan_ffhq64": 256}.get(o.variant, 64)

  m = c.model
  m.conditional = not compare          # r3gan_*: unconditional, as the paper's
  m.noise_dim = 16 if tiny else 64
  if tiny:
    m.g_widths, m.d_widths = (32, 32, 16), (16, 32, 32)
  elif size == 64:
    m.g_widths, m.d_widths = (256, 256, 256, 128, 64), (64, 128, 256, 256, 256)
  else:
    m.g_widths, m.d_widths = (256, 256, 256, 256, 128, 64), (64, 128, 256, 256, 256, 256)
  if o.variant == "r3gan_ffhq64":  # the official preset: 3/4 x (1024, 1024, 1024, 1024, 512)
    m.g_widths = (768, 768, 768, 768, 384)
    m.d_widths = tuple(reversed(m.g_widths))
  m.blocks = 1 if tiny else 2          # residual blocks per stage (int or one per stage)
  m.expansion = 2                      # inverted bottleneck: hidden = expansion * width
  m.group_width = 8 if tiny else 16    # channels per 3x3 group (cardinality = hidden / this)
  m.embed_dim = 32 if tiny else 128    # G's condition embedding (concat to z) and D's projection
  m.gram_dim = 32 if tiny else 128     # learned embedding of the Gram features
  m.class_dim = 8 if tiny else 32      # learned embedding of the defect class
  m.cond_hidden = 64 if tiny else 512  # hidden width of the Gram-feature MLP
  m.num_classes = 6                    # global class ids (fabgen.data.classes)
  m.background_input = o.background    # G also sees the defect-free crop (extra channels)
  m.mask_to_d = "hard"                 # D sees masks > 0.5 (straight-through); "soft" = raw sigmoid
  m.mask_channel = not compare         # G paints a mask and D judges it (R3GAN itself: no mask)
  m.squash_output = not compare        # tanh on G's RGB (R3GAN itself: raw outputs)
  # grouped conv formulation: auto | xla | custom | einsum | matmul | per_group. tiny: einsum,
  # measured fastest at 8-channel groups (bench_stage1 --variants tiny: 69 ms/step vs 159 ms
  # custom, 806 ms xla). per_group (one dense conv per group) is faster alone but not beside the
  # PyTorch side-by-side (fabgen.nn.grouped_conv's docstring): auto.
  m.conv_impl = "einsum" if tiny else "auto"
  # Recompute each residual block in the backward pass (nnx.remat) instead of keeping its
  # activations: the R1/R2 double backward's temporaries shrink (README: Scale, memory).
  m.remat = False

  c.condition = ml_collections.ConfigDict()
  cd = c.condition
  cd.taps = ("relu1_1", "relu2_1", "relu3_1") if tiny else (
      "relu1_1", "relu2_1", "relu3_1", "relu4_1")
  cd.pool = 16 if tiny else 32     # Grams pooled to at most pool x pool channel blocks
  cd.kind = "triangle"             # "triangle" (upper triangle) or "diag"
  cd.weights = o.vgg               # torchvision VGG19 state dict (.safetensors/.npz/.pth)
  # A texture network fabgen trained (fabgen.texture): a `configs/texture.py` workdir, or
  # "train:configs/texture.py:<variant>" = that config trained once into the fabgen cache.
  # "" (and no `weights`) = fixed random filters. tiny: the trained one (conditioning check
  # 0.63 with random filters -> see README); 64/128: a VGG19 file when given.
  if o.texture == "auto":
    cd.features_checkpoint = "" if o.vgg else "train:configs/texture.py:tiny" if tiny else ""
  else:
    cd.features_checkpoint = "" if o.texture == "random" else o.texture
  cd.seed = 0                      # of the random filters
  cd.width_scale = 0.125 if tiny else 1.0

  lo = c.loss
  lo.kind = o.loss                 # rpgan | nsgan | hinge | wgan
  lo.r1 = o.r1                     # zero-centred penalty on real
  lo.r2 = o.r2                     # ... and on fake (R3GAN needs both)
  lo.gamma = o.gamma or (1.0 if tiny else 2.0 if size == 64 else 4.0)  # gamma/2 * (R1 + R2)
  lo.gamma_end_ratio = 0.1         # gamma is cosine-annealed to this fraction
  lo.lazy_interval = o.lazy_interval  # >1: penalties every k steps with weight k * gamma

  op = c.optim
  op.lr, op.end_lr = (1e-3, 2e-4) if tiny else (2e-4, 5e-5)
  op.b2_start, op.b2_end = 0.9, 0.99
  op.schedule_steps = 0            # length of the cosine schedules; 0 = total_steps
  if compare:                      # R3GAN: every schedule spans 20M images
    op.schedule_steps = 20_000_000 // c.batch_size

  # ADA-style augmentation of all D inputs (fabgen.gan.augment), as R3GAN trains its small-data
  # configs; auto = on for 64/128/r3gan_ffhq64, off for the 16px tiny (CPU tests) and for
  # r3gan_compare (the reference step it is timed against starts at p = 0).
  c.augment = ml_collections.ConfigDict()
  if o.augment not in ("auto", "on", "off"):
    raise ValueError(f"configs/stage1.py: augment={o.augment!r}; use auto, on or off")
  auto_augment = not (tiny or o.variant == "r3gan_compare")
  c.augment.enabled = auto_augment if o.augment == "auto" else o.augment == "on"
  c.augment.p_start, c.augment.p_end = 0.0, 0.3   # cosine over optim.schedule_steps
  c.augment.transforms = augment_lib.DEFAULT

  c.ema = ml_collections.ConfigDict()
  c.ema.enabled = o.ema
  c.ema.half_life = 500 if tiny else 500_000  # images
  # "r3gan": the half-life itself ramps 0 -> half_life on the schedules' cosine (R3GAN);
  # "ramp": half-life <= ramp * images seen (StyleGAN), kept for tiny's 150-step runs.
  c.ema.schedule = "ramp" if tiny else "r3gan"
  c.ema.ramp = 0.05

  d = c.data
  d.source = o.source or ("fabricsim:tiny:train" if tiny else "fabricsim:simple:train")
  d.eval_source = "" if tiny else d.source.replace(":train", ":test")
  d.max_records = 24 if tiny else 100_000
  d.max_per_class = 0              # 0 = no cap
  d.class_ids = ()                 # () = every class the source has

  c.eval = ml_collections.ConfigDict()
  c.eval.num_fabrics = 4           # sample grid rows (distinct fabrics)
  c.eval.num_draws = 6             # sample grid columns (noise draws)
  c.eval.kid_samples = 64 if tiny else 2000
  c.eval.batch = 16 if tiny else 64

  c.grid = ml_collections.ConfigDict()
  c.grid.gammas = _grid_values(o.gammas, "gammas", float)  # R1/R2 weights; () = loss.gamma
  c.grid.seeds = _grid_values(o.seeds, "seeds", int)       # init/noise seeds; () = seed

  c.checkpoint.every_steps = 50 if tiny else 5000
  c.log_every_steps = 10 if tiny else 100
  c.summary_every_steps = 0 if tiny else 5000
  c.sharding_rules = list(sharding_lib.CONV_GAN_RULES)  # see fabgen/platform/sharding.py
  return c


def _grid_values(text: str, key: str, kind) -> tuple:
  """"0.5;1;2" -> (0.5, 1.0, 2.0); ';' because ',' separates the config arguments."""
  values = []
  for item in filter(None, (t.strip() for t in text.split(";"))):
    try:
      number = float(item)
    except ValueError:
      raise ValueError(f"configs/stage1.py: config argument {key}={text!r}: {item!r} is not a "
                       f"number") from None
    if kind is int and not number.is_integer():
      raise ValueError(f"configs/stage1.py: config argument {key}={text!r}: {item!r} is not an "
                       f"int")
    values.append(kind(number))
  return tuple(values)


def get_sweep(hyper, study="loss"):
  """Grids `launch/sweep.py configs/stage1.py:64 --study loss|scale --workdir W` expands.

  loss: the D/G objective x which zero-centred penalties (R3GAN's RpGAN + R1 + R2, R1 only,
  none), 9 runs. scale: the global batch with the learning rate scaled by its square root from
  the production 64 @ 2e-4, 4 runs (batch must divide the mesh's data x fsdp).
  """
  if study == "loss":
    return hyper.product([
        hyper.sweep("config.loss.kind", ["rpgan", "nsgan", "hinge"]),
        hyper.zipit([hyper.sweep("config.loss.r1", [True, True, False]),
                     hyper.sweep("config.loss.r2", [True, False, False])]),
    ])
  if study == "scale":
    batches = [32, 64, 128, 256]
    lrs = [float(f"{2e-4 * (b / 64) ** 0.5:.3g}") for b in batches]
    return hyper.zipit([hyper.sweep("config.batch_size", batches),
                        hyper.sweep("config.optim.lr", lrs)])
  raise ValueError(f"configs/stage1.py: get_sweep study={study!r}; use loss or scale")
