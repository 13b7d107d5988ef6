"""DGT: defect generation and transfer with the DIS segmenter and the DFC open-set classifier.

  fabgen train --config configs/dgt.py:tiny --workdir /tmp/dgt_tiny        # CPU, a few minutes
  fabgen train --config configs/dgt.py:64 --workdir runs/dgt64
  fabgen compile --config configs/dgt.py:64 --mesh data=8 --platform cpu
  fabgen synthesize --method dgt --checkpoint runs/dgt64 --backgrounds ... --num 1000 --out o/
  fabgen openset --config configs/openset.py:tiny                        # the open-set protocol
  python -m benchmarks.bench_dgt --variant tiny

Variants: tiny (32x32 crops of FabricSim `tiny` renders: tests and CPUs), 64, 128 (crops of
`complex` renders). Options: source (a fabricsim spec), classes (known classes, '+'-joined
names), steps, batch, reading (masked | literal). The eight loss weights a1..a8 of the note are
`loss.weights.*`; any can be 0 (`--config.loss.weights.cls_real=0`) for the ablation.
"""

import ml_collections

from fabgen.platform import config as config_lib
from fabgen.platform import sharding as sharding_lib

VARIANTS = ("tiny", "64", "128")


def get_config(arg=None):
  """`arg`: variant plus key=value options, e.g. "tiny,steps=20,classes=knot+oil_stain"."""
  o = config_lib.parse_arg(arg, variant="64", source="", classes="", steps=0, batch=0,
                           reading="masked")
  if o.variant not in VARIANTS:
    raise ValueError(f"configs/dgt.py: unknown variant {o.variant!r}; use {', '.join(VARIANTS)}")
  tiny = o.variant == "tiny"
  c = config_lib.base_config()
  c.task = "dgt"
  c.seed = 0
  c.image_size = {"tiny": 32, "64": 64, "128": 128}[o.variant]  # crop side around the defect
  c.total_steps = o.steps or (60 if tiny else 50_000)
  c.batch_size = o.batch or (8 if tiny else 32)

  d = c.data
  d.source = o.source or ("fabricsim:tiny:train:0" if tiny else "fabricsim:complex:train:0")
  # Known classes (local index = position); () = every class of the source's preset. The
  # open-set protocol names a subset and holds the others out.
  d.classes = tuple(o.classes.split("+")) if o.classes else ()
  d.num_records = 96 if tiny else 8000   # (N, D, M) frames rendered for training

  m = c.model
  m.g_widths = (16, 32) if tiny else (32, 64, 128, 256)     # encoder-decoder levels (2x each)
  m.dis_widths = (16, 32) if tiny else (32, 64, 128)        # DIS reconstruction U-Net
  m.dis_head_width = 16 if tiny else 32                     # DIS segmentation head on [x, r, |x-r|]
  m.dfc_widths = (16, 32, 32) if tiny else (32, 64, 128, 256)  # DFC strided convs
  m.mask_bank_size = 32 if tiny else 1024                   # real shapes kept for synthesis

  s = c.smoothing = ml_collections.ConfigDict()
  s.sigma_min = 0.5      # random Gaussian width of G(k_d), G(k_n), pixels
  s.sigma_max = 1.5 if tiny else 3.0
  s.w_min = 0.8          # random weights w_d, w_n
  s.w_max = 1.0

  lo = c.loss
  lo.reading = o.reading  # masked (default, documented in fabgen/dgt/losses.py) | literal
  w = lo.weights = ml_collections.ConfigDict()
  w.fore = 10.0           # a1 L_fore^con
  w.back = 10.0           # a2 L_back^con
  w.mix = 5.0             # a3 L_mix
  w.seg_fake = 0.5        # a4 L_fake^seg     (DIS on X_fake)
  w.seg_real_fore = 0.5   # a5 L_real_fore^seg (DIS after a look-ahead step on fakes, on D)
  w.seg_real_back = 0.5   # a6 L_real_back^seg
  w.cls_fake = 0.5        # a7 L_fake^cls     (DFC on X_fake)
  w.cls_real = 0.5        # a8 L_real^cls     (DFC after a look-ahead step on fakes, on D)
  lo.lookahead_lr = 0.1   # eta of the differentiable SGD step behind a5, a6, a8
  lo.dis_recon = 1.0      # DIS's own update: reconstruction weight
  lo.dis_fake = 0.5       # ... and weight of the fake-image segmentation term
  lo.dfc_fake = 0.5       # DFC's own update: weight of cross-entropy on fakes
  lo.nan_at_step = -1     # fault injection for the NaN-stop test; -1 never

  op = c.optim
  op.lr_g = 2e-3 if tiny else 2e-4
  op.lr_dis = 2e-3 if tiny else 2e-4
  op.lr_dfc = 2e-3 if tiny else 2e-4
  op.b1 = 0.5
  op.b2 = 0.99

  f = c.dfc = ml_collections.ConfigDict()  # OpenMax (used after training)
  f.tail_size = 10 if tiny else 20   # largest distances per class the Weibull is fitted to
  f.alpha = 2 if tiny else 3         # top-ranked classes whose scores are recalibrated
  f.threshold = 0.5                  # below this top probability: unknown
  f.distance = "euclidean"           # euclidean | eucos

  c.checkpoint.every_steps = 20 if tiny else 2000
  c.log_every_steps = 5 if tiny else 100
  c.fsdp_min_size = 256 if tiny else 2 ** 14
  c.sharding_rules = list(sharding_lib.CONV_GAN_RULES)  # see fabgen/platform/sharding.py
  return c
