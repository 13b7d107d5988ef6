"""The texture network (`configs/texture.py`, `fabgen.texture`) trains through the platform,
is cached by its config, and is what the stage-1 conditioner loads; the full-Gram option.

FabricSim rendering is replaced by procedural fabrics (stripes / checks of different colours and
periods) so the test costs seconds; the e2e conditioning check trains on FabricSim itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.platform import config as config_lib
from fabgen.stage1 import condition as condition_lib
from fabgen.texture import features as texture_lib
from fabgen.texture import task as texture_task

TAPS = ("relu1_1", "relu2_1")


def _fake_pool(preset, sim_seed, num_fabrics, first_image, num_images):
  """[F, N, 32, 32, 3]: fabric f = stripes or checks with its own period and colour."""
  del preset
  size = 32
  yy, xx = np.mgrid[:size, :size]
  out = np.zeros((num_fabrics, num_images, size, size, 3), np.uint8)
  for f in range(num_fabrics):
    period = 2 + f % 4
    colour = np.array([60 + 40 * (f % 3), 60 + 30 * (f % 5), 200 - 40 * (f % 4)])
    for j in range(num_images):
      rng = np.random.default_rng([sim_seed, f, first_image + j])
      phase = rng.integers(period)
      base = ((xx + phase) // period) % 2 if f % 2 else (((xx + phase) // period
                                                            + yy // period) % 2)
      img = base[..., None] * colour + 30 + rng.normal(0, 8, (size, size, 3))
      out[f, j] = np.clip(img, 0, 255)
  return out


def _spec(steps=40):
  return (f"configs/texture.py:tiny,steps={steps}", [
      "model.taps=('relu1_1','relu2_1')", "data.num_fabrics=8", "data.images_per_fabric=4",
      "data.patch_size=16", "batch_size=16", "log_every_steps=1"])


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("FABGEN_CACHE", str(tmp_path / "cache"))
  monkeypatch.setattr(texture_task, "render_pool", _fake_pool)
  trained = []
  real_train = texture_lib._train  # pylint: disable=protected-access
  monkeypatch.setattr(texture_lib, "_train",
                      lambda config, workdir: trained.append(workdir) or real_train(config,
                                                                                    workdir))
  return trained


def test_texture_network_learns_is_cached_and_feeds_the_conditioner(cache, monkeypatch):
  name, overrides = _spec()
  monkeypatch.setattr(texture_lib, "_texture_config",
                      lambda spec: config_lib.get(name, overrides))
  workdir = texture_lib.resolve(f"train:{name}")
  assert len(cache) == 1
  assert texture_lib.resolve(f"train:{name}") == workdir and len(cache) == 1  # reused
  params, stats, config, _ = texture_lib.load_vgg(workdir)
  assert set(params) == {"conv1_1", "conv1_2", "conv2_1"} and config.task == "texture"

  import json
  import os
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  evals = [r for r in rows if "eval/accuracy" in r][-1]
  assert losses[-1] < 0.5 * losses[0], losses
  assert evals["eval/accuracy"] > 0.5 and evals["eval/nearest_fabric"] > 0.5, evals  # chance 1/8

  cond = condition_lib.GramFeatures(TAPS, 16, "triangle", None, 0, 0.125,
                                    checkpoint=f"train:{name}")
  assert cond.pretrained and len(cache) == 1
  pool = _fake_pool("", 1, 8, 0, 4)[:, :, :16, :16].reshape(-1, 16, 16, 3)
  feats = cond.batched(pool)
  assert feats.shape == (32, cond.dim)
  # standardised with the training crops' running statistics: unit scale, roughly centred
  assert np.abs(feats.mean(0)).mean() < 0.5 and 0.3 < feats.std() < 3.0, (feats.mean(0),
                                                                            feats.std())
  assert cond.description.startswith("texture:")
  with pytest.raises(ValueError, match="trained on taps"):
    _ = condition_lib.GramFeatures(("relu1_1",), 16, "triangle", None, 0, 0.125,
                                   checkpoint=f"train:{name}").params
  with pytest.raises(ValueError, match="both name the feature network"):
    condition_lib.GramFeatures(TAPS, 16, "triangle", "w.npz", 0, 0.125, checkpoint=workdir)
  with pytest.raises(FileNotFoundError, match="is not a directory"):
    texture_lib.resolve(str(workdir) + "-missing")


def test_full_gram_option_keeps_every_channel_pair():
  pooled = condition_lib.GramFeatures(("relu1_1", "relu2_1"), 4, "triangle", None, 0, 0.125)
  full = condition_lib.GramFeatures(("relu1_1", "relu2_1"), 0, "triangle", None, 0, 0.125)
  # widths 8 and 16: pooled to 4x4 blocks -> 10 + 10 entries; full -> 36 + 136
  assert pooled.dim == 20 and full.dim == 36 + 136
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  g = pooled.grams(x)["relu2_1"]
  iu = np.triu_indices(16)
  np.testing.assert_allclose(full(x)[:, 36:], jnp.sqrt(g[:, iu[0], iu[1]] + 1e-8), rtol=1e-5)
  with pytest.raises(ValueError, match="condition.pool=-1"):
    condition_lib.GramFeatures(("relu1_1",), -1)
