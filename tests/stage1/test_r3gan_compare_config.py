"""`configs/stage1.py:r3gan_compare` is the R3GAN step of issue 19's CPU side-by-side, one to one
(widths 256,256,256,128,64, group width 16, 2 blocks per stage, noise 64, batch 16, RpGAN + R1 +
R2 every step, no augmentation); `r3gan_ffhq64` keeps the official FFHQ-64 preset."""

import jax
import numpy as np

from configs import stage1 as stage1_config
from fabgen.stage1 import model as model_lib

# Parameter counts of the same architecture written independently in PyTorch
# (benchmarks/r3gan_torch_reference.py prints them: g_params, d_params).
TORCH_REFERENCE_PARAMS = {"g": 2_358_976, "d": 2_342_848}


def _param_count(net) -> int:
  shapes = jax.eval_shape(net.init, jax.random.key(0))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def test_r3gan_compare_is_the_measured_official_setup():
  c = stage1_config.get_config("r3gan_compare")
  m = c.model
  assert m.g_widths == (256, 256, 256, 128, 64) and m.d_widths == (64, 128, 256, 256, 256)
  assert (m.group_width, m.blocks, m.expansion, m.noise_dim) == (16, 2, 2, 64)
  assert c.batch_size == 16 and c.patch_size == 64
  assert not m.conditional and not m.mask_channel and not m.squash_output
  assert c.loss.kind == "rpgan" and c.loss.r1 and c.loss.r2 and c.loss.lazy_interval == 1
  assert not c.augment.enabled
  g, d = model_lib.networks(m, 8)
  assert {"g": _param_count(g), "d": _param_count(d)} == TORCH_REFERENCE_PARAMS


def test_r3gan_ffhq64_keeps_the_official_preset():
  c = stage1_config.get_config("r3gan_ffhq64")
  assert c.model.g_widths == (768, 768, 768, 768, 384)
  assert c.model.d_widths == (384, 768, 768, 768, 768)
  assert c.batch_size == 256 and c.augment.enabled and not c.model.conditional
  assert c.optim.schedule_steps == 20_000_000 // 256
