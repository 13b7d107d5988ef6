"""Latent inpainting diffusion pre-trained on FabricSim (task "diffusion"), SD-2 layout.

  fabgen train --config configs/diffusion.py:tiny --workdir /tmp/diff_tiny        # CPU, minutes
  fabgen train --config configs/diffusion.py:64 --workdir runs/diff64             # one GPU
  fabgen compile --config configs/diffusion.py:sd2 --mesh data=4,fsdp=4 --platform cpu
  python -m benchmarks.bench_diffusion --variant tiny

Variants: tiny (32px crops, VAE f=4, U-Net 16/32, 2 text layers: tests and CPUs), 64 (64px,
f=8, 64/128/256), sd2 (the SD-2-inpainting sizes: U-Net 320/640/1280/1280 with 5/10/20/20 heads
of 64 dims, cross-attention 1024, text 23 layers x 1024, VAE 128/256/512/512 - for `compile`,
benchmarks, or with `pretrained=<diffusers folder>` to read the real weights). Options: steps,
batch, source, pretrained, remat, bf16.
"""

from fabgen.diffusion.sizes import VARIANTS, model_config
from fabgen.platform import config as config_lib

def get_config(arg=None):
  """`arg`: variant plus key=value options, e.g. "tiny,steps=40"."""
  o = config_lib.parse_arg(arg, variant="64", steps=0, batch=0, source="", pretrained="",
                           remat=False, bf16=False)
  if o.variant not in VARIANTS:
    raise ValueError(f"configs/diffusion.py: unknown variant {o.variant!r}; use "
                     f"{', '.join(VARIANTS)}")
  tiny, sd2 = o.variant == "tiny", o.variant == "sd2"
  c = config_lib.base_config()
  c.task = "diffusion"
  c.seed = 0
  c.total_steps = o.steps or (40 if tiny else 200_000)
  c.batch_size = o.batch or (8 if tiny else 32)
  c.model = model_config(o.variant, o.pretrained, o.remat)

  d = c.data
  d.source = o.source or ("fabricsim:tiny:train" if tiny else "fabricsim:simple:train")
  d.image_size = 32 if tiny else 64 if not sd2 else 512   # crop side (pixels)
  d.max_records = 48 if tiny else 4000
  d.max_per_class = 64 if tiny else 2000

  lo = c.loss
  lo.rec_weight = 1.0        # VAE L1 reconstruction
  lo.kl_weight = 1e-4        # VAE KL (small: a near-deterministic autoencoder, as SD's)
  lo.p_defect_mask = 0.5     # inpaint the real defect mask, else RealFill random boxes
  lo.p_drop_prompt = 0.1     # unconditional prompt "" (for classifier-free guidance)

  op = c.optim
  op.lr = 2e-3 if tiny else 1e-4
  op.warmup_steps = 5 if tiny else 1000
  op.clip_norm = 1.0

  c.checkpoint.every_steps = 20 if tiny else 5000
  c.log_every_steps = 1 if tiny else 100
  c.summary_every_steps = -1 if tiny else 5000
  c.fsdp_min_size = 2 ** 14
  # Parameters fsdp-sharded (largest divisible dim), batch over (data, fsdp); with mesh.tensor
  # > 1 the attention projections split over heads (their output dim).
  c.sharding_rules = [
      (r"(to_q|to_k|to_v|q_proj|k_proj|v_proj)/kernel$", (None, "heads")),
      (r"(to_out/0|out_proj)/kernel$", ("heads", None)),
      (r".*", "fsdp"),
  ] if o.variant != "tiny" else []
  if o.bf16 or sd2:
    c.precision.compute_dtype = "bfloat16"
  return c
