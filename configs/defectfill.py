"""DefectFill few-shot fine-tune (task "defectfill") of a latent inpainting model on one defect.

  fabgen train --config configs/diffusion.py:tiny --workdir /tmp/diff_tiny
  fabgen train --config configs/defectfill.py:tiny,init_from=/tmp/diff_tiny,class_name=knot \
      --workdir /tmp/df_knot
  fabgen synthesize --method defectfill --checkpoint /tmp/df_knot \
      --backgrounds fabricsim:tiny:target_good --num 16 --out /tmp/df_synth
  # with SD-2-inpainting on disk (sizes and weights read from the folder):
  fabgen train --config configs/defectfill.py:sd2,pretrained=/data/sd2-inpainting,class_name=knot \
      --workdir runs/df_knot_sd2

Variants follow configs/diffusion.py (tiny, 64, sd2). Options: init_from (a `diffusion` workdir),
pretrained (a diffusers folder), class_name, num_refs, source, fabric (-1 = any), mode (lora |
full), steps, batch. Defaults are the published recipe: LoRA rank 8 alpha 16 on the U-Net
attention and the text tower, lr 2e-4 (U-Net) / 4e-5 (text), 100 warm-up steps, batch 4,
lambda 0.5 / 0.2 / 0.05, alpha 0.3.
"""

import ml_collections

from fabgen.diffusion.sizes import VARIANTS, model_config
from fabgen.platform import config as config_lib


def get_config(arg=None):
  o = config_lib.parse_arg(arg, variant="64", init_from="", pretrained="", class_name="knot",
                           num_refs=0, source="", fabric=-1, mode="lora", steps=0, batch=0,
                           remat=False)
  if o.variant not in VARIANTS:
    raise ValueError(f"configs/defectfill.py: unknown variant {o.variant!r}")
  if o.mode not in ("lora", "full"):
    raise ValueError(f"configs/defectfill.py: mode={o.mode!r}; use lora or full")
  tiny = o.variant == "tiny"
  c = config_lib.base_config()
  c.task = "defectfill"
  c.seed = 0
  c.total_steps = o.steps or (30 if tiny else 2000)
  c.batch_size = o.batch or 4
  c.model = model_config(o.variant, o.pretrained, o.remat)
  c.model.init_from = o.init_from
  c.model.lora_rank = 8 if o.mode == "lora" else 0
  c.model.lora_alpha = 16.0 if o.mode == "lora" else 0.0

  d = c.data
  d.source = o.source or ("fabricsim:tiny:train" if tiny else "fabricsim:simple:train")
  d.class_name = o.class_name
  d.num_refs = o.num_refs or (4 if tiny else 8)   # reference defects (few-shot)
  d.image_size = 32 if tiny else 64 if o.variant == "64" else 512
  d.max_records = 48 if tiny else 2000
  d.fabric = None if o.fabric < 0 else o.fabric

  lo = c.loss
  lo.l_def, lo.l_obj, lo.l_attn = 0.5, 0.2, 0.05
  lo.alpha = 0.3                  # M' = M + alpha (1 - M)
  lo.object_name = "fabric"       # "a [object] with [V*]"

  op = c.optim
  op.lr_unet = 2e-4 if not tiny else 2e-3
  op.lr_text = 4e-5 if not tiny else 4e-4
  op.warmup_steps = 100 if not tiny else 3

  c.sampling = ml_collections.ConfigDict()
  c.sampling.steps = 10 if tiny else 50     # DDIM steps
  c.sampling.guidance = 7.5                 # classifier-free guidance scale
  c.sampling.candidates = 2 if tiny else 8  # Low-Fidelity Selection: K samples, keep one
  c.checkpoint.every_steps = 10 if tiny else 500
  c.log_every_steps = 1 if tiny else 50
  c.summary_every_steps = -1
  c.fsdp_min_size = 2 ** 14
  # As configs/diffusion.py: attention projections split over heads when mesh.tensor > 1, the
  # rest fsdp (the frozen VAE and text encoder too: sd2's text encoder alone is 340M params).
  c.sharding_rules = [
      (r"(to_q|to_k|to_v|q_proj|k_proj|v_proj)/kernel$", (None, "heads")),
      (r"(to_out/0|out_proj)/kernel$", ("heads", None)),
      (r".*", "fsdp"),
  ] if o.variant != "tiny" else []
  if o.variant == "sd2":
    c.precision.compute_dtype = "bfloat16"
  return c
