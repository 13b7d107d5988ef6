"""Parity with diffusers / transformers through committed tiny fixtures (no torch needed).

The fixtures are built by `make_fixtures.py` (the `diffusion-parity` extra); here fabgen loads the
diffusers-layout folder and must reproduce the saved reference outputs within 1e-4.
"""

import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from fabgen.diffusion import loader
from fabgen.diffusion import schedulers as sched
from fabgen.diffusion import tokenizer as tok_lib

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
  return dict(np.load(os.path.join(FIX, "reference.npz")))


def test_fixtures_stay_small():
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(FIX) for f in fs)
  assert total < 1024 * 1024


def test_tokenizer_matches_transformers(ref):
  tok = tok_lib.CLIPTokenizer.from_folder(os.path.join(FIX, "tokenizer"))
  prompts = ["A photo of a knot", "a fabric with oil stain!", "defect"]
  np.testing.assert_array_equal(tok(prompts), ref["token_ids"])


def test_text_encoder(ref):
  model = loader.load_text_encoder(FIX)
  out = nnx.jit(lambda m, ids: m(ids))(model, jnp.asarray(ref["token_ids"]))
  np.testing.assert_allclose(out, ref["text_hidden"], atol=TOL, rtol=0)


def test_unet(ref):
  model = loader.load_unet(FIX)
  fwd = nnx.jit(lambda m, x, t, c: m(x, t, c)[0])  # one compile beats op-by-op dispatch
  eps = fwd(model, jnp.asarray(ref["unet_x"]), jnp.asarray(ref["unet_t"]),
            jnp.asarray(ref["unet_ctx"]))
  assert np.abs(ref["unet_eps"]).max() > 0.1  # the comparison is not against zeros
  np.testing.assert_allclose(eps, ref["unet_eps"], atol=TOL, rtol=0)


def test_vae_encode_decode(ref):
  model = loader.load_vae(FIX)
  mean, logvar, decoded = nnx.jit(lambda m, x: (*m.encode(x), m.decode(m.encode(x)[0])))(
      model, jnp.asarray(ref["vae_x"]))
  np.testing.assert_allclose(mean, ref["vae_mean"], atol=TOL, rtol=0)
  np.testing.assert_allclose(logvar, ref["vae_logvar"], atol=TOL, rtol=0)
  np.testing.assert_allclose(decoded, ref["vae_decoded"], atol=TOL, rtol=0)


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_ddim_steps(ref, pred):
  s = sched.Schedule(prediction_type=pred)
  np.testing.assert_array_equal(sched.ddim_timesteps(s, 10), ref[f"ddim_{pred}_timesteps"])
  for i, t in enumerate(ref[f"ddim_{pred}_step_ts"]):
    prev = sched.ddim_step(s, jnp.asarray(ref[f"ddim_{pred}_model_output"]), int(t),
                           jnp.asarray(ref[f"ddim_{pred}_sample"]), 10)
    np.testing.assert_allclose(prev, ref[f"ddim_{pred}_prev"][i], atol=TOL, rtol=0)


def test_ddpm_noise_and_velocity(ref):
  s = sched.Schedule.from_dict({"prediction_type": "epsilon", "clip_sample": False})
  t = jnp.asarray(ref["ddpm_t"])
  x0, noise = jnp.asarray(ref["ddpm_x0"]), jnp.asarray(ref["ddpm_noise"])
  np.testing.assert_allclose(sched.add_noise(s, x0, noise, t), ref["ddpm_noisy"], atol=TOL)
  np.testing.assert_allclose(sched.velocity(s, x0, noise, t), ref["ddpm_velocity"], atol=TOL)


def _copy_with(tmp_path, edit):
  dst = tmp_path / "sd"
  shutil.copytree(FIX, dst)
  path = dst / "vae" / "diffusion_pytorch_model.safetensors"
  tensors = load_file(str(path))
  edit(tensors)
  save_file(tensors, str(path))
  return str(dst)


def test_loader_names_missing_key(tmp_path):
  folder = _copy_with(tmp_path, lambda t: t.pop("decoder.conv_out.bias"))
  with pytest.raises(loader.WeightLoadError, match=r"missing key 'decoder\.conv_out\.bias'"):
    loader.load_vae(folder)


def test_loader_names_misshapen_key(tmp_path):
  def edit(t):
    t["encoder.conv_in.weight"] = np.zeros((8, 3, 5, 5), np.float32)
  folder = _copy_with(tmp_path, edit)
  with pytest.raises(loader.WeightLoadError, match=r"'encoder\.conv_in\.weight' has shape"):
    loader.load_vae(folder)


def test_loader_names_unexpected_key(tmp_path):
  def edit(t):
    t["encoder.extra.weight"] = np.zeros((2,), np.float32)
  folder = _copy_with(tmp_path, edit)
  with pytest.raises(loader.WeightLoadError, match="encoder.extra.weight"):
    loader.load_vae(folder)
