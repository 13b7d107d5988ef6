"""Load diffusers / transformers weights (safetensors) into the NNX modules, checked key by key.

A diffusers folder holds `unet/`, `vae/`, `text_encoder/` (each `config.json` + safetensors) and
`tokenizer/` (`vocab.json`, `merges.txt`). Our parameter paths mirror the torch keys, so the map is
mechanical: `a/0/b/kernel` <-> `a.0.b.weight`; conv kernels OIHW -> HWIO, linear weights
transposed, norm `weight` -> `scale`, embedding `weight` -> `embedding`. Every tensor of the
abstract model must be in the file with the right shape, and every file tensor must be used: a
missing, misshapen or unexpected key is a `WeightLoadError` that names the key and the file.
LoRA parameters (`lora_a`/`lora_b`) are not in base checkpoints and keep their initial values.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import numpy as np
from flax import nnx

from fabgen.diffusion import layers as L
from fabgen.diffusion import text_encoder as text_lib
from fabgen.diffusion import unet as unet_lib
from fabgen.diffusion import vae as vae_lib


class WeightLoadError(ValueError):
  """A weight file does not fit the model: the message names the key and the file."""


_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}
# Older diffusers VAE checkpoints name the mid-block attention like this.
_LEGACY = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.",
           ".proj_attn.": ".to_out.0."}
_IGNORED_SUFFIXES = ("position_ids",)


def torch_key(path, prefix: str = "") -> str:
  """(`down_blocks`, 0, `resnets`, 1, `conv1`, `kernel`) -> `down_blocks.0.resnets.1.conv1.weight`."""
  *body, leaf = [str(p) for p in path]
  return prefix + ".".join(body + [_LEAF_TO_TORCH[leaf]])


def to_flax(tensor: np.ndarray, target_shape, leaf: str) -> np.ndarray:
  """Torch layout -> ours (the transposes of the module docstring)."""
  if leaf == "kernel" and tensor.ndim == 4:
    if len(target_shape) == 2:  # a 1x1 conv stored where we have a linear layer (old VAE)
      return tensor[:, :, 0, 0].T
    return tensor.transpose(2, 3, 1, 0)
  if leaf == "kernel" and tensor.ndim == 2:
    return tensor.T
  return tensor


def read_safetensors(folder: str) -> tuple[dict[str, np.ndarray], str]:
  """All tensors of a diffusers/transformers sub-folder (single or sharded safetensors)."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(folder):
    raise WeightLoadError(f"{folder}: no such weight folder")
  names = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
  if not names:
    raise WeightLoadError(f"{folder}: no *.safetensors file (pickled .bin weights are not read)")
  tensors = {}
  for name in names:
    try:
      tensors.update(load_file(os.path.join(folder, name)))
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
      raise WeightLoadError(f"{os.path.join(folder, name)}: cannot read ({e})") from e
  return {_legacy(k): v for k, v in tensors.items()}, ", ".join(
      os.path.join(folder, n) for n in names)


def _legacy(key: str) -> str:
  for old, new in _LEGACY.items():
    if "mid_block.attentions" in key and old in key:
      key = key.replace(old, new)
  return key


def assign(model: nnx.Module, tensors: Mapping[str, np.ndarray], source: str,
           prefix: str = "") -> nnx.Module:
  """Writes `tensors` (torch keys) into `model` in place after checking every key and shape."""
  state = nnx.state(model, nnx.Param)
  pure = nnx.to_pure_dict(state)
  flat, treedef = jax.tree_util.tree_flatten_with_path(pure)
  used, new_leaves = set(), []
  for path, leaf in flat:
    keys = [getattr(p, "key", getattr(p, "idx", None)) for p in path]
    if "lora_a" in keys or "lora_b" in keys:
      new_leaves.append(leaf)
      continue
    key = torch_key(keys, prefix)
    if key not in tensors:
      raise WeightLoadError(f"{source}: missing key {key!r} (model parameter "
                            f"{'/'.join(map(str, keys))}, shape {tuple(leaf.shape)})")
    value = to_flax(np.asarray(tensors[key]), leaf.shape, keys[-1])
    if tuple(value.shape) != tuple(leaf.shape):
      raise WeightLoadError(f"{source}: key {key!r} has shape {tuple(tensors[key].shape)}, the "
                            f"model expects {tuple(leaf.shape)} (as {keys[-1]}) for "
                            f"{'/'.join(map(str, keys))}")
    used.add(key)
    new_leaves.append(np.asarray(value, dtype=leaf.dtype))
  extra = sorted(k for k in tensors if k not in used and k.startswith(prefix)
                 and not k.endswith(_IGNORED_SUFFIXES))
  if extra:
    raise WeightLoadError(f"{source}: {len(extra)} unexpected key(s) the model has no place for, "
                          f"e.g. {extra[:3]} (is the config.json of this folder the right one?)")
  nnx.replace_by_pure_dict(state, jax.tree_util.tree_unflatten(treedef, new_leaves))
  nnx.update(model, state)
  return model


def read_config(folder: str) -> dict[str, Any]:
  return read_config_file(os.path.join(folder, "config.json"))


def read_config_file(path: str) -> dict[str, Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise WeightLoadError(f"{path}: missing (every diffusers sub-folder has a config.json)") from None


def unet_config(cfg: Mapping[str, Any], **extra) -> unet_lib.UNetConfig:
  """A diffusers UNet2DConditionModel config.json -> UNetConfig (SD-2 layout only)."""
  if not cfg.get("use_linear_projection", False):
    raise WeightLoadError("unet/config.json: use_linear_projection must be true (SD-2 layout)")
  n = len(cfg["block_out_channels"])
  heads = cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8)
  heads = tuple(heads) if isinstance(heads, (list, tuple)) else (heads,) * n
  lpb = cfg.get("layers_per_block", 2)
  if isinstance(lpb, (list, tuple)):
    if len(set(lpb)) != 1:
      raise WeightLoadError(f"unet/config.json: layers_per_block={lpb} must be uniform")
    lpb = lpb[0]
  return unet_lib.UNetConfig(
      in_channels=cfg.get("in_channels", 9), out_channels=cfg.get("out_channels", 4),
      block_out_channels=tuple(cfg["block_out_channels"]), attention_heads=heads,
      cross_attention=tuple("CrossAttn" in t for t in cfg["down_block_types"]),
      layers_per_block=lpb, cross_attention_dim=cfg["cross_attention_dim"],
      norm_num_groups=cfg.get("norm_num_groups", 32), norm_eps=cfg.get("norm_eps", 1e-5),
      **extra)


def vae_config(cfg: Mapping[str, Any]) -> vae_lib.VAEConfig:
  return vae_lib.VAEConfig(
      in_channels=cfg.get("in_channels", 3), out_channels=cfg.get("out_channels", 3),
      block_out_channels=tuple(cfg["block_out_channels"]),
      layers_per_block=cfg.get("layers_per_block", 2),
      latent_channels=cfg.get("latent_channels", 4),
      norm_num_groups=cfg.get("norm_num_groups", 32),
      scaling_factor=cfg.get("scaling_factor", 0.18215))


def text_config(cfg: Mapping[str, Any], **extra) -> text_lib.TextConfig:
  keys = [f.name for f in text_lib.TextConfig.__dataclass_fields__.values()
          if f.name not in ("lora_rank", "lora_alpha")]
  return text_lib.TextConfig(**{k: cfg[k] for k in keys if k in cfg}, **extra)


def load_unet(folder: str, **extra) -> unet_lib.UNet2DConditionModel:
  """`folder/unet` -> a loaded UNet2DConditionModel (`extra`: lora_rank, remat, ...)."""
  sub = os.path.join(folder, "unet")
  model = nnx.eval_shape(lambda: unet_lib.UNet2DConditionModel(
      unet_config(read_config(sub), **extra), rngs=L.KeyGen(0)))
  model = _materialise(model)
  tensors, source = read_safetensors(sub)
  return assign(model, tensors, source)


def load_vae(folder: str) -> vae_lib.AutoencoderKL:
  sub = os.path.join(folder, "vae")
  model = _materialise(nnx.eval_shape(lambda: vae_lib.AutoencoderKL(
      vae_config(read_config(sub)), rngs=L.KeyGen(0))))
  tensors, source = read_safetensors(sub)
  return assign(model, tensors, source)


def load_text_encoder(folder: str, **extra) -> text_lib.CLIPTextModel:
  sub = os.path.join(folder, "text_encoder")
  model = _materialise(nnx.eval_shape(lambda: text_lib.CLIPTextModel(
      text_config(read_config(sub), **extra), rngs=L.KeyGen(0))))
  tensors, source = read_safetensors(sub)
  if not any(k.startswith("text_model.") for k in tensors):  # transformers v5 drops the prefix
    tensors = {"text_model." + k: v for k, v in tensors.items()}
  return assign(model, tensors, source)


def _materialise(abstract: nnx.Module) -> nnx.Module:
  """Zeros for every parameter of an `eval_shape`d module (the loader overwrites them), except
  LoRA pairs, which get a real init so that a loaded LoRA model can be fine-tuned."""
  graphdef, state = nnx.split(abstract)
  def make(path, x):
    names = [str(getattr(p, "key", "")) for p in path]
    if "lora_a" in names:
      return jax.random.normal(jax.random.key(len(path)), x.shape, x.dtype) / x.shape[-1]
    return np.zeros(x.shape, x.dtype)
  state = jax.tree_util.tree_map_with_path(make, state)
  return nnx.merge(graphdef, state)
