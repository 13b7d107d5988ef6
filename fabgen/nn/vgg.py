"""VGG19 feature extractor with taps, loadable from a torchvision VGG19 state dict.

The stage-1 condition is the Gram matrix of VGG features of defect-free texture (Gatys et al.).
Weights are the torchvision `vgg19` state dict (`features.{i}.weight` OIHW, `features.{i}.bias`),
read from a local `.pth` (needs torch), `.safetensors` or `.npz` file with the same key names;
classifier keys are ignored, every conv key up to the deepest tap is required with its exact shape.

No pretrained weights can be downloaded here, so the default is a *fixed random-filter* VGG19
(He-normal filters from a fixed seed). Gram matrices of random multi-scale filters still describe
texture (Ustyuzhaninov et al., "Texture synthesis using shallow convolutional networks with random
filters", 2016): they capture local co-occurrence statistics at every scale, just not the
semantic features of ImageNet training. Every run reports which one it used (`describe`).

Inputs are images in [0, 1], NHWC; they are normalised with the ImageNet mean/std torchvision's
weights expect. `width_scale` < 1 shrinks every layer (random filters only) for tests and CPUs.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# (name, torchvision features index) of every conv; "pool" entries are 2x2 max pools.
LAYERS: tuple[tuple[str, int | None], ...] = (
    ("conv1_1", 0), ("conv1_2", 2), ("pool", None),
    ("conv2_1", 5), ("conv2_2", 7), ("pool", None),
    ("conv3_1", 10), ("conv3_2", 12), ("conv3_3", 14), ("conv3_4", 16), ("pool", None),
    ("conv4_1", 19), ("conv4_2", 21), ("conv4_3", 23), ("conv4_4", 25), ("pool", None),
    ("conv5_1", 28), ("conv5_2", 30), ("conv5_3", 32), ("conv5_4", 34),
)
WIDTHS = {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}
DEFAULT_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _convs_needed(taps: Sequence[str]) -> list[tuple[str, int]]:
  for t in taps:
    if not t.startswith("relu") or f"conv{t[4:]}" not in dict(LAYERS):
      raise ValueError(f"unknown VGG19 tap {t!r}; taps are relu1_1 ... relu5_4")
  last = max(i for i, (n, _) in enumerate(LAYERS) if n in {f"conv{t[4:]}" for t in taps})
  return [(n, idx) for n, idx in LAYERS[:last + 1] if n != "pool"]


def _width(name: str, width_scale: float) -> int:
  return max(1, int(round(WIDTHS[name[4]] * width_scale)))


def random_params(taps: Sequence[str] = DEFAULT_TAPS, seed: int = 0,
                  width_scale: float = 1.0) -> dict:
  """Fixed He-normal random filters (the default when no weights file is given)."""
  params, cin = {}, 3
  rng = np.random.default_rng(seed)
  for name, _ in _convs_needed(taps):
    cout = _width(name, width_scale)
    std = np.sqrt(2.0 / (9 * cin))
    params[name] = {"kernel": (rng.standard_normal((3, 3, cin, cout)) * std).astype(np.float32),
                    "bias": np.zeros((cout,), np.float32)}
    cin = cout
  return params


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Arrays of a torchvision state dict stored as .pth / .pt, .safetensors or .npz."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"VGG19 weights file {path!r} does not exist")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".safetensors":
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    return dict(load_file(path))
  if ext == ".npz":
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  if ext in (".pth", ".pt"):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError(f"reading {path!r} needs torch; convert it to .safetensors or .npz "
                        f"with the same key names, or install torch") from None
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() for k, v in sd.items()}
  raise ValueError(f"VGG19 weights file {path!r}: unknown extension {ext!r} "
                   f"(expected .pth, .pt, .safetensors or .npz)")


def params_from_state_dict(state_dict: Mapping[str, np.ndarray],
                           taps: Sequence[str] = DEFAULT_TAPS, source: str = "state dict") -> dict:
  """torchvision keys (OIHW) -> {"conv1_1": {"kernel": HWIO, "bias"}}; names bad keys."""
  params, cin = {}, 3
  for name, idx in _convs_needed(taps):
    cout = WIDTHS[name[4]]
    for suffix, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
      key = f"features.{idx}.{suffix}"
      if key not in state_dict:
        raise KeyError(f"{source}: missing key {key!r} ({name}) for VGG19 taps {tuple(taps)}")
      if tuple(state_dict[key].shape) != shape:
        raise ValueError(f"{source}: key {key!r} ({name}) has shape "
                         f"{tuple(state_dict[key].shape)}, expected {shape}")
    w = np.asarray(state_dict[f"features.{idx}.weight"], np.float32)
    params[name] = {"kernel": np.transpose(w, (2, 3, 1, 0)),
                    "bias": np.asarray(state_dict[f"features.{idx}.bias"], np.float32)}
    cin = cout
  return params


def load_params(path: str | None, taps: Sequence[str] = DEFAULT_TAPS, seed: int = 0,
                width_scale: float = 1.0) -> dict:
  """Weights from `path`, or the fixed random filters when `path` is empty/None."""
  if not path:
    return random_params(taps, seed, width_scale)
  return params_from_state_dict(read_state_dict(path), taps, source=path)


def describe(path: str | None, seed: int = 0, width_scale: float = 1.0) -> str:
  """What a run's metrics report as its Gram feature network."""
  if path:
    return f"vgg19:{os.path.basename(path)}"
  return f"vgg19:random(seed={seed},width={width_scale:g})"


def features(params: Mapping, images: jax.Array, taps: Sequence[str] = DEFAULT_TAPS) -> dict:
  """{tap: [B, H_j, W_j, C_j]} activations for images [B, H, W, 3] in [0, 1]."""
  # In the filters' dtype: bf16 filters (a mixed-precision policy's cast) compute in bf16.
  dtype = jnp.asarray(params["conv1_1"]["kernel"]).dtype
  x = ((images.astype(jnp.float32) - IMAGENET_MEAN) / IMAGENET_STD).astype(dtype)
  wanted, out = set(taps), {}
  last = {n for n, _ in _convs_needed(taps)}
  for name, _ in LAYERS:
    if not last:
      break
    if name == "pool":
      b, h, w, c = x.shape
      x = jnp.max(x[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c), (2, 4))
      continue
    p = params[name]
    x = jax.lax.conv_general_dilated(x, jnp.asarray(p["kernel"]), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]
    x = jax.nn.relu(x)
    last.discard(name)
    if f"relu{name[4:]}" in wanted:
      out[f"relu{name[4:]}"] = x
  return out
