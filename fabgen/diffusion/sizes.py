"""Model sizes of the latent inpainting variants (tiny, 64, sd2), shared by both configs."""

import ml_collections

VARIANTS = ("tiny", "64", "sd2")


def model_config(variant: str, pretrained: str = "", remat: bool = False):
  """The `model` block of configs/diffusion.py and configs/defectfill.py for `variant`."""
  m = ml_collections.ConfigDict()
  m.pretrained = pretrained   # a diffusers folder: sizes (and, in DefectFill, weights) from it
  m.remat = remat             # gradient checkpointing of every U-Net ResNet/transformer block
  m.lora_rank = 0
  m.lora_alpha = 0.0
  tiny, sd2 = variant == "tiny", variant == "sd2"
  m.unet = ml_collections.ConfigDict(dict(
      in_channels=9, out_channels=4,
      block_out_channels=(16, 32) if tiny else (64, 128, 256) if not sd2 else
      (320, 640, 1280, 1280),
      attention_heads=(2, 4) if tiny else (2, 4, 8) if not sd2 else (5, 10, 20, 20),
      cross_attention=(True, False) if tiny else (True, True, False) if not sd2 else
      (True, True, True, False),
      layers_per_block=1 if tiny else 2,
      cross_attention_dim=32 if tiny else 256 if not sd2 else 1024,
      norm_num_groups=8 if tiny else 32, norm_eps=1e-5))
  m.vae = ml_collections.ConfigDict(dict(
      block_out_channels=(16, 32, 32) if tiny else (32, 64, 128, 128) if not sd2 else
      (128, 256, 512, 512),
      layers_per_block=1 if tiny else 2, latent_channels=4, norm_num_groups=8 if tiny else 32,
      scaling_factor=0.18215 if sd2 else 0.5))
  m.text = ml_collections.ConfigDict(dict(
      hidden_size=32 if tiny else 256 if not sd2 else 1024,
      intermediate_size=64 if tiny else 1024 if not sd2 else 4096,
      num_hidden_layers=2 if tiny else 4 if not sd2 else 23,
      num_attention_heads=2 if tiny else 4 if not sd2 else 16,
      hidden_act="gelu", layer_norm_eps=1e-5, max_length=16 if tiny else 77))
  m.schedule = ml_collections.ConfigDict(dict(
      num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
      beta_schedule="scaled_linear", prediction_type="epsilon", steps_offset=1))
  return m
