"""Tiny synthetic stage-1 data (two fabrics, blob defects) and a micro config, for fast tests."""

import numpy as np

from fabgen.platform import config as config_lib
from fabgen.stage1 import data as data_lib


def texture(fabric: int, size: int, rng) -> np.ndarray:
  """Fabric 0: red vertical stripes; fabric 1: blue checks (plus noise)."""
  yy, xx = np.mgrid[:size, :size]
  if fabric % 2 == 0:
    base = (np.sin(xx * 1.6) > 0)[..., None] * np.array([150, 30, 30]) + 60
  else:
    base = (((xx // 3) + (yy // 3)) % 2)[..., None] * np.array([30, 40, 160]) + 50
  return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def records(n: int, size: int = 24, seed: int = 0):
  """n sample-format records, alternating fabrics; one dark (class 0) or bright (class 1) blob."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    fabric, cls = i % 2, (i // 2) % 2
    img = texture(fabric, size, rng).astype(np.float32)
    cy, cx = rng.integers(5, size - 5, 2)
    yy, xx = np.mgrid[:size, :size]
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= 4
    img[blob] = img[blob] * 0.3 if cls == 0 else 255 - (255 - img[blob]) * 0.3
    inst = blob.astype(np.int32)
    out.append({"image": img.astype(np.uint8), "instance_mask": inst,
                "instance_class": np.array([cls, -1, -1, -1], np.int32),
                "fabric_id": np.int32(fabric)})
  return out


class ListSource:
  """The minimal reader interface (len, [i], name) over in-memory records."""

  name = "list"

  def __init__(self, recs):
    self.recs = recs

  def __len__(self):
    return len(self.recs)

  def __getitem__(self, i):
    return self.recs[i]


def config(**loss):
  """configs/stage1.py:tiny shrunk further: 8px patches, 2-stage nets, a 2-tap random VGG."""
  c = config_lib.load_config("configs/stage1.py:tiny")
  c.patch_size = 8
  c.batch_size = 4
  c.model.g_widths = (16, 8)
  c.model.d_widths = (8, 16)
  c.model.noise_dim = 8
  c.model.embed_dim = c.model.gram_dim = 16
  c.model.cond_hidden = 32
  c.condition.taps = ("relu1_1", "relu2_1")
  c.condition.features_checkpoint = ""  # fixed random filters: no texture network to train
  c.eval.kid_samples = 16
  c.eval.batch = 8
  c.eval.num_fabrics = 2
  c.eval.num_draws = 3
  for k, v in loss.items():
    c.loss[k] = v
  return c


def patch_set(task, n: int):
  ps = data_lib.build_patches(records(n), task.config.patch_size)
  ps.cond = task.conditioner.batched(ps.clean)
  return ps


def batch(ps, b: int):
  idx = np.arange(b)
  return {"patch": ps.patches[idx], "mask": ps.masks[idx], "clean": ps.clean[idx],
          "cond": ps.cond[idx], "class_id": ps.class_ids[idx]}
