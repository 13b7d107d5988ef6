"""VGG19 loading from torchvision-named state dicts, parity with a numpy reference, Gram maths."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from fabgen.nn import gram as gram_lib
from fabgen.nn import vgg

TAPS = ("relu1_1", "relu2_1")


def _state_dict(seed=0):
  """Random values under torchvision's key names (features.0 / 2 / 5), plus a classifier key."""
  rng = np.random.default_rng(seed)
  sd = {}
  for idx, cin, cout in ((0, 3, 64), (2, 64, 64), (5, 64, 128)):
    sd[f"features.{idx}.weight"] = (rng.standard_normal((cout, cin, 3, 3)) * 0.1).astype(np.float32)
    sd[f"features.{idx}.bias"] = (rng.standard_normal(cout) * 0.1).astype(np.float32)
  sd["classifier.0.weight"] = np.zeros((4, 4), np.float32)  # ignored
  return sd


def _np_conv_relu(x, w_oihw, b):
  """Independent reference: direct 3x3 SAME cross-correlation in OIHW, then ReLU."""
  n, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h, w, w_oihw.shape[0]))
  for i in range(3):
    for j in range(3):
      out += np.einsum("nhwc,oc->nhwo", xp[:, i:i + h, j:j + w], w_oihw[:, :, i, j])
  return np.maximum(out + b, 0)


def _np_reference(sd, images):
  x = (images.astype(np.float64) - vgg.IMAGENET_MEAN) / vgg.IMAGENET_STD
  r11 = _np_conv_relu(x, sd["features.0.weight"], sd["features.0.bias"])
  r12 = _np_conv_relu(r11, sd["features.2.weight"], sd["features.2.bias"])
  n, h, w, c = r12.shape
  pooled = r12.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
  r21 = _np_conv_relu(pooled, sd["features.5.weight"], sd["features.5.bias"])
  return {"relu1_1": r11, "relu2_1": r21}


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_loaded_vgg_matches_numpy_reference(tmp_path, ext):
  sd = _state_dict()
  path = str(tmp_path / f"vgg19{ext}")
  if ext == ".npz":
    np.savez(path, **sd)
  else:
    save_file(sd, path)
  params = vgg.load_params(path, TAPS)
  images = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
  got = vgg.features(params, images, TAPS)
  ref = _np_reference(sd, images)
  for t in TAPS:
    np.testing.assert_allclose(got[t], ref[t], rtol=1e-4, atol=1e-4)
  # Gram matrices against the design brief's formula in numpy
  grams = gram_lib.grams(params, images, TAPS)
  for t in TAPS:
    f = ref[t]
    n, h, w, c = f.shape
    psi = f.reshape(n, h * w, c).transpose(0, 2, 1)
    np.testing.assert_allclose(grams[t], psi @ psi.transpose(0, 2, 1) / (c * h * w),
                               rtol=1e-4, atol=1e-6)
  assert vgg.describe(path) == f"vgg19:vgg19{ext}"


def test_missing_and_misshapen_keys_are_named(tmp_path):
  sd = _state_dict()
  del sd["features.5.bias"]
  with pytest.raises(KeyError, match=r"features\.5\.bias.*conv2_1"):
    vgg.params_from_state_dict(sd, TAPS)
  sd = _state_dict()
  sd["features.2.weight"] = sd["features.2.weight"][:, :32]
  path = str(tmp_path / "bad.npz")
  np.savez(path, **sd)
  with pytest.raises(ValueError, match=r"bad\.npz.*features\.2\.weight.*\(64, 32, 3, 3\)"):
    vgg.load_params(path, TAPS)
  with pytest.raises(FileNotFoundError, match="nowhere.npz"):
    vgg.load_params(str(tmp_path / "nowhere.npz"), TAPS)
  with pytest.raises(ValueError, match="relu9_1"):
    vgg.random_params(("relu9_1",))


def test_random_default_is_fixed_and_texture_sensitive():
  a = vgg.random_params(TAPS, seed=0, width_scale=0.25)
  b = vgg.random_params(TAPS, seed=0, width_scale=0.25)
  np.testing.assert_array_equal(a["conv2_1"]["kernel"], b["conv2_1"]["kernel"])
  assert a["conv2_1"]["kernel"].shape == (3, 3, 16, 32)
  assert "random(seed=0" in vgg.describe(None, 0, 0.25)
  # stripes vs. checks: Gram distance between different textures exceeds that between two
  # shifted crops of the same texture
  yy, xx = np.mgrid[:16, :20]
  stripes = (np.sin(xx * 1.3) > 0).astype(np.float32)[..., None].repeat(3, -1)
  checks = ((xx // 3 + yy // 3) % 2).astype(np.float32)[..., None].repeat(3, -1)
  imgs = np.stack([stripes[:, :16], stripes[:, 4:20], checks[:, :16]])
  g = gram_lib.grams(a, imgs, TAPS)
  first = {k: v[:1] for k, v in g.items()}
  same = gram_lib.gram_distance({k: v[1:2] for k, v in g.items()}, first)
  other = gram_lib.gram_distance({k: v[2:3] for k, v in g.items()}, first)
  assert float(same[0]) < 0.5 * float(other[0])
