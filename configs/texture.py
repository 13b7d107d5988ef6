"""A texture network for the stage-1 condition, trained on FabricSim (no downloaded weights).

  fabgen train --config configs/texture.py:tiny --workdir /tmp/texture_tiny     # CPU, ~1 min
  fabgen train --config configs/texture.py --workdir runs/texture               # simple, 64px
  fabgen train --config configs/stage1.py:tiny --config.condition.features_checkpoint \
      /tmp/texture_tiny --workdir /tmp/stage1_tiny       # stage 1 conditions on it

The stage-1 configs name a texture config as `train:configs/texture.py:<variant>`: the checkpoint
is then trained once into the fabgen cache (`$FABGEN_CACHE`, default ~/.cache/fabgen) and reused
(`fabgen.texture.features`). Variants: tiny (the stage-1 tiny conditioner's layout: VGG19 to
relu3_1 at width 1/8, 16px crops of FabricSim tiny fabrics), default (to relu4_1 at full width,
64px crops of FabricSim simple fabrics). The fabrics come from their own FabricSim seed, so
they are not the fabrics stage 1 trains or is evaluated on.
"""

from fabgen.platform import config as config_lib
from fabgen.platform import sharding as sharding_lib


def get_config(arg=None):
  """`arg`: "tiny" or empty, plus key=value options (e.g. "tiny,steps=100")."""
  o = config_lib.parse_arg(arg, variant="default", steps=0, batch=0)
  if o.variant not in ("tiny", "default"):
    raise ValueError(f"configs/texture.py: unknown variant {o.variant!r}; use tiny or default")
  tiny = o.variant == "tiny"
  c = config_lib.base_config()
  c.task = "texture"
  c.seed = 0
  c.total_steps = o.steps or (300 if tiny else 20_000)
  c.batch_size = o.batch or (32 if tiny else 64)

  m = c.model
  # The stage-1 conditioner's network: taps, width and Gram features must match its config.
  m.taps = ("relu1_1", "relu2_1", "relu3_1") if tiny else (
      "relu1_1", "relu2_1", "relu3_1", "relu4_1")
  m.width_scale = 0.125 if tiny else 1.0
  m.pool = 16 if tiny else 32      # Gram pooled to pool x pool blocks (0 = full Gram)
  m.kind = "triangle"
  m.init_seed = 0                  # the random VGG the training starts from

  d = c.data
  d.preset = "tiny" if tiny else "simple"
  d.sim_seed = 1                   # FabricSim seed of the training fabrics (stage-1 data: 0)
  d.num_fabrics = 32 if tiny else 256
  d.images_per_fabric = 6 if tiny else 16
  d.eval_images_per_fabric = 2
  d.patch_size = 16 if tiny else 64

  c.optim.lr = 3e-3 if tiny else 1e-3
  c.optim.end_lr = 3e-4 if tiny else 1e-4
  c.optim.weight_decay = 1e-4

  c.checkpoint.every_steps = c.total_steps
  c.checkpoint.asynchronous = False
  c.log_every_steps = 25 if tiny else 200
  c.summary_every_steps = 0        # evaluate at the end
  c.sharding_rules = list(sharding_lib.CONV_GAN_RULES)  # see fabgen/platform/sharding.py
  return c
