"""Open-set protocol: DGT + DIS + DFC trained on k known FabricSim classes, tested on all six.

  fabgen openset --config configs/openset.py:tiny --workdir /tmp/openset   # 2-core CPU: ~35 min
  fabgen openset --config configs/openset.py --workdir runs/openset        # full size
  fabgen openset --config configs/openset.py:tiny,smoke --workdir /tmp/os  # wiring only (e2e test)

Three splits of four known and two unknown classes each; every class is unknown in one split.
DFC (OpenMax) and the softmax-threshold baseline sit side by side in the table. Options: smoke
(2 steps, 2 splits: wiring only), steps.
"""

import ml_collections

SPLITS = (("color_spot", "oil_stain", "knot", "broken_end"),      # unknown: broken_yarn, white_stripe
          ("oil_stain", "knot", "broken_yarn", "white_stripe"),   # unknown: color_spot, broken_end
          ("color_spot", "broken_end", "broken_yarn", "white_stripe"))  # unknown: oil_stain, knot


def get_config(arg=None):
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  o = config_lib.parse_arg(arg, variant="full", smoke=False, steps=0)
  if o.variant not in ("tiny", "full"):
    raise ValueError(f"configs/openset.py: unknown variant {o.variant!r}; use tiny or full")
  tiny = o.variant == "tiny"
  c = ml_collections.ConfigDict()
  c.splits = SPLITS[:2] if o.smoke else SPLITS
  c.dgt = ml_collections.ConfigDict()
  steps = o.steps or (2 if o.smoke else (150 if tiny else 20_000))
  c.dgt.spec = f"configs/dgt.py:{'tiny' if tiny else '64'},steps={steps}"
  c.dgt.overrides = (["data.num_records=48", "checkpoint.every_steps=1000",
                      "summary_every_steps=-1"] if o.smoke else
                     ["data.num_records=240", "summary_every_steps=-1"] if tiny else [])
  c.eval = ml_collections.ConfigDict()
  c.eval.source = "fabricsim:tiny:test:0" if tiny else "fabricsim:complex:test:0"
  c.eval.num_records = 36 if o.smoke else (180 if tiny else 3000)  # all six classes, cycled
  c.eval.batch_size = 36 if tiny else 64
  c.eval.softmax_threshold = 0.5  # baseline: unknown when the top softmax probability is below
  return c
