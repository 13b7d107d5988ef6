"""Smaller-than-tiny DefectFill / diffusion configs and synthetic reference crops for unit tests."""

import numpy as np
import pytest

from fabgen.platform import config as config_lib


def shrink(c, size=16):
  """U-Net 8/16, VAE 8/16 (f=2), text 16 wide x 1 layer: compiles in seconds."""
  with c.unlocked():
    c.model.unet.block_out_channels = (8, 16)
    c.model.unet.attention_heads = (2, 2)
    c.model.unet.cross_attention_dim = 16
    c.model.unet.norm_num_groups = 4
    c.model.vae.block_out_channels = (8, 16)
    c.model.vae.norm_num_groups = 4
    c.model.text.hidden_size = 16
    c.model.text.intermediate_size = 32
    c.model.text.num_hidden_layers = 1
    c.model.text.max_length = 8
    c.data.image_size = size
    c.batch_size = 2
  return c


def synthetic_crops(n=4, size=16, seed=0):
  """Striped 'fabric' crops with a dark square defect; masks mark the square."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  images, masks = [], []
  for _ in range(n):
    base = 120 + 60 * ((xx // 2) % 2)
    img = np.repeat(base[..., None], 3, -1).astype(np.float32)
    y0, x0 = rng.integers(2, size - 8, 2)
    m = np.zeros((size, size), np.float32)
    m[y0:y0 + 5, x0:x0 + 5] = 1
    img[m > 0] = 30
    images.append(np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8))
    masks.append(m)
  return np.stack(images), np.stack(masks), np.full((n,), 2, np.int32)


@pytest.fixture
def defectfill_config():
  def make(mode="lora", **extra):
    c = config_lib.load_config(f"configs/defectfill.py:tiny,mode={mode},class_name=knot")
    c = shrink(c)
    with c.unlocked():
      for k, v in extra.items():
        node = c
        *path, last = k.split(".")
        for p in path:
          node = node[p]
        node[last] = v
    return c
  return make
