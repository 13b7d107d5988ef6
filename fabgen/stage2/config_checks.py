"""Checks of the stage-2 configs (fusion, inpainter) that the platform's `validate` cannot know.

A bad value must fail when the task is built, with the key and the value named, not as a shape
error deep inside a traced step: widths that do not fit the crop size, an unknown objective, a
group width that does not divide the hidden width.
"""

from __future__ import annotations

import ml_collections

from fabgen.gan import losses as gan_losses
from fabgen.nn import grouped_conv


def _positive_int(config, key):
  node = config
  for part in key.split("."):
    if part not in node:
      raise ValueError(f"config.{key} is missing (start from configs/fusion.py or "
                       f"configs/inpainter.py)")
    node = node[part]
  if not isinstance(node, int) or isinstance(node, bool) or node <= 0:
    raise ValueError(f"config.{key}={node!r} must be a positive int")
  return node


def _widths(config, key, size):
  widths = tuple(config.model[key])
  if not widths or any(not isinstance(w, int) or w <= 0 for w in widths):
    raise ValueError(f"config.model.{key}={widths!r} must be a non-empty tuple of positive ints")
  if size % 2 ** (len(widths) - 1):
    raise ValueError(f"config.model.{key} has {len(widths)} levels, so config.image_size={size} "
                     f"must be divisible by {2 ** (len(widths) - 1)}")
  hidden_multiple = config.model.expansion
  for w in widths:
    if (w * hidden_multiple) % config.model.group_width:
      raise ValueError(f"config.model.group_width={config.model.group_width} does not divide the "
                       f"hidden width {w * hidden_multiple} of config.model.{key} entry {w}")
  return widths


def _common(config: ml_collections.ConfigDict) -> None:
  size = _positive_int(config, "image_size")
  for key in ("model.blocks", "model.expansion", "model.group_width", "ema_half_life",
              "data.max_records", "data.max_per_class"):
    _positive_int(config, key)
  _widths(config, "widths", size)
  _widths(config, "d_widths", size)
  if config.model.conv_impl not in grouped_conv.IMPLS:
    raise ValueError(f"config.model.conv_impl={config.model.conv_impl!r}; use one of "
                     f"{', '.join(grouped_conv.IMPLS)}")
  if config.loss.objective not in gan_losses.LOSSES:
    raise ValueError(f"config.loss.objective={config.loss.objective!r}; use one of "
                     f"{', '.join(gan_losses.LOSSES)}")
  for key in ("seam_radius", "seam_weight", "r1_gamma", "r2_gamma"):
    if config.loss[key] < 0:
      raise ValueError(f"config.loss.{key}={config.loss[key]!r} must be >= 0")
  if not isinstance(config.data.source, str) or not config.data.source:
    raise ValueError(f"config.data.source={config.data.source!r} must name a data source "
                     f"(an open_source spec)")


def validate_fusion(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the key of the first bad fusion-config value."""
  _common(config)
  if config.loss.l1_weight < 0:
    raise ValueError(f"config.loss.l1_weight={config.loss.l1_weight!r} must be >= 0")
  if config.model.reach_radius < 0:
    raise ValueError(f"config.model.reach_radius={config.model.reach_radius!r} must be >= 0")
  if config.data.margin < 0:
    raise ValueError(f"config.data.margin={config.data.margin!r} must be >= 0")


def validate_inpainter(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the key of the first bad inpainter-config value."""
  _common(config)
  _positive_int(config, "model.noise_channels")
  _positive_int(config, "model.mask_bank_size")
  if config.loss.margin < 0:
    raise ValueError(f"config.loss.margin={config.loss.margin!r} must be >= 0")
