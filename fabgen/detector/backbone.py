"""ResNet-18/34-like convolutional backbone, trained from scratch or loaded from a local file.

Basic residual blocks (two 3x3 convs) in four stages of strides 4, 8, 16 and 32. GroupNorm
instead of BatchNorm: the train step stays a pure function of (params, batch) with no running
statistics to thread through it, and results do not depend on how the batch is sharded, which is
what lets sharded training equal unsharded training exactly. Returns the stride 4..32 feature
maps C2..C5; the hybrid encoder takes C3..C5, the segmentation head C2 and C4.

`load_weights` reads a safetensors file whose keys are this module's parameter paths joined by
"." (e.g. "stages.0.0.conv1.kernel"), the format `save_weights` writes: a user who has trained a
backbone elsewhere converts it once into that layout.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flax import nnx

from fabgen.platform import sharding as sharding_lib


def group_norm(channels: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
  """GroupNorm with up to 8 groups that divide `channels`."""
  groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
  return nnx.GroupNorm(channels, num_groups=groups, rngs=rngs)


class ConvNorm(nnx.Module):
  """Conv -> GroupNorm -> optional ReLU: the unit every conv stack here is built from."""

  def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
               act: bool = True, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding="SAME",
                         kernel_dilation=dilation, use_bias=False, rngs=rngs)
    self.norm = group_norm(cout, rngs)
    self.act = act

  def __call__(self, x):
    x = self.norm(self.conv(x))
    return jax.nn.relu(x) if self.act else x


class BasicBlock(nnx.Module):
  """Two 3x3 convs with an identity (or 1x1 projection) shortcut."""

  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = ConvNorm(cin, cout, 3, stride, rngs=rngs)
    self.conv2 = ConvNorm(cout, cout, 3, 1, act=False, rngs=rngs)
    # Zero-init the last norm's scale so each block starts as the identity (stable from scratch).
    self.conv2.norm.scale.set_value(jnp.zeros_like(self.conv2.norm.scale.get_value()))
    self.shortcut = (ConvNorm(cin, cout, 1, stride, act=False, rngs=rngs)
                     if stride != 1 or cin != cout else None)

  def __call__(self, x):
    skip = x if self.shortcut is None else self.shortcut(x)
    return sharding_lib.constrain(jax.nn.relu(self.conv2(self.conv1(x)) + skip),
                                  "batch", None, None, None)


class ResNet(nnx.Module):
  """Stem (stride 4) + four stages; `depths` (2,2,2,2) is ResNet-18's, (3,4,6,3) ResNet-34's."""

  def __init__(self, widths: Sequence[int], depths: Sequence[int], *, rngs: nnx.Rngs):
    if len(widths) != 4 or len(depths) != 4:
      raise ValueError(f"backbone needs 4 stage widths and depths, got {widths} / {depths}")
    self.stem1 = ConvNorm(3, widths[0], 3, 2, rngs=rngs)
    self.stem2 = ConvNorm(widths[0], widths[0], 3, 1, rngs=rngs)
    stages = []
    cin = widths[0]
    for i, (w, d) in enumerate(zip(widths, depths)):
      blocks = []
      for j in range(d):
        blocks.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, rngs=rngs))
        cin = w
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.widths = tuple(widths)

  def __call__(self, x) -> list[jax.Array]:
    """x [B,H,W,3] normalized -> [C2 (H/4), C3 (H/8), C4 (H/16), C5 (H/32)]."""
    x = self.stem2(self.stem1(x))
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    features = []
    for stage in self.stages:
      for block in stage:
        x = block(x)
      features.append(x)
    return features


def _flat(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    name = f"{prefix}.{k}" if prefix else str(k)
    if isinstance(v, dict):
      out.update(_flat(v, name))
    else:
      out[name] = v
  return out


def save_weights(params: dict, path: str) -> None:
  """Writes backbone params (a pure dict) as safetensors with dotted keys."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  save_file({k: np.asarray(v) for k, v in _flat(params).items()}, path)


def load_weights(params: dict, path: str) -> dict:
  """Returns `params` with every leaf replaced by the tensor of the same key in `path`.

  Missing keys and shape mismatches are errors naming the key and the file, so a checkpoint for
  another architecture never half-loads silently.
  """
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    tensors = load_file(path)
  except (OSError, Exception) as e:  # safetensors raises its own error types
    raise ValueError(f"cannot read backbone weights {path!r}: {e}") from e
  flat = _flat(params)
  missing = sorted(set(flat) - set(tensors))
  if missing:
    raise ValueError(f"backbone weights {path!r} lack keys {missing[:5]} "
                     f"({len(missing)} missing of {len(flat)})")
  for k, v in flat.items():
    if tuple(tensors[k].shape) != tuple(v.shape):
      raise ValueError(f"backbone weights {path!r}: key {k!r} has shape {tensors[k].shape}, "
                       f"the model needs {tuple(v.shape)}")

  def rebuild(tree, prefix=""):
    out = {}
    for k, v in tree.items():
      name = f"{prefix}.{k}" if prefix else str(k)
      out[k] = rebuild(v, name) if isinstance(v, dict) else jnp.asarray(tensors[name], v.dtype)
    return out

  return rebuild(params)
