"""Experiment configs: load `configs/x.py:variant`, apply `--config.a.b=v`, lock and validate.

One ml_collections file per experiment, big_vision style: `get_config(arg)` receives the text
after the colon, and config files parse it with `parse_arg(arg, variant="64", runlocal=False)`.
Every config starts from `base_config()`, which documents the fields the platform itself reads.
The loaded config is locked, so a misspelt key (in a file, an override or a task) fails loudly
with its name instead of silently creating a new field.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from typing import Any, Sequence

import ml_collections

from fabgen.platform import registry

MESH_AXES = ("data", "fsdp", "tensor")


class ConfigError(ValueError):
  """A config that cannot be loaded, overridden or validated; the message names the key."""


def base_config() -> ml_collections.ConfigDict:
  """The fields every experiment has; task configs start from this and add model/data/optim/loss."""
  c = ml_collections.ConfigDict()
  c.task = ""                 # registry name of the Task class (fabgen.platform.registry.TASKS)
  c.seed = 0                  # one seed: init, per-step rngs (fold_in(step)), input order
  c.total_steps = 1000        # optimisation steps of the whole run (resume continues to here)
  c.batch_size = 32           # GLOBAL batch, split over processes and the (data, fsdp) axes

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1            # data-parallel replicas; -1 = all devices left over
  c.mesh.fsdp = 1             # parameter (ZeRO-3 style) sharding; batch is split over it too
  c.mesh.tensor = 1           # tensor (model) parallelism, used by sharding_rules

  # (param-path regex, tactic) pairs, first match wins. A tactic is "replicate", "fsdp" (shard
  # the largest dim divisible by the fsdp size) or a tuple with one entry per dim, each None, a
  # mesh axis or a logical axis name translated by `logical_axis_rules`.
  c.sharding_rules = []
  c.logical_axis_rules = [("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"),
                          ("heads", "tensor"), ("channels", "tensor")]
  c.fsdp_min_size = 2 ** 14   # leaves smaller than this stay replicated under the fsdp default

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 1000  # also written at the end and on SIGTERM/SIGINT
  c.checkpoint.keep = 3            # newest checkpoints kept on disk
  c.checkpoint.asynchronous = True  # write in the background while training continues
  # Resuming compares the checkpoint's config with this one and refuses changes to the model,
  # data, classes or schedule (fabgen/platform/config_guard.py). Comma-separated keys or
  # "section." prefixes listed here may differ deliberately (e.g. "total_steps"); "*" = any.
  c.resume_allow_changes = ""

  c.data_prefetch = 2         # batches a background thread prepares ahead (0 = none)
  c.data_threads = 0          # grain reader threads per process (0 = min(CPU count, 8))
  c.data_buffer = 0           # batches grain reads ahead (0 = 2 x data_threads)

  c.log_every_steps = 50      # scalars to TensorBoard + metrics.jsonl, NaN check always per step
  c.summary_every_steps = 0   # task.evaluate (sample grids, KID...); 0 = only at the end, -1 never
  c.progress_every_steps = 0  # ReportProgress (steps/s, ETA); 0 = use log_every_steps

  c.profile = ml_collections.ConfigDict()
  c.profile.first_step = 0    # >0: trace `num_steps` steps from here with the JAX profiler
  c.profile.num_steps = 5

  # Persistent XLA compilation cache shared by runs (and processes) of the same step; "" = off.
  c.compilation_cache_dir = ""

  c.precision = ml_collections.ConfigDict()
  c.precision.compute_dtype = "float32"  # "bfloat16" on accelerators
  c.precision.param_dtype = "float32"    # params and optimizer state stay f32

  c.model = ml_collections.ConfigDict()
  c.data = ml_collections.ConfigDict()
  # A file that only a full decode finds broken: "skip" leaves it out (counted, logged, in
  # metrics and input_report.json) or "error" stops the run naming it (data/readers/skips.py).
  c.data.on_unreadable = "skip"
  c.optim = ml_collections.ConfigDict()
  c.loss = ml_collections.ConfigDict()
  return c


def _coerce(text: str, default: Any, key: str) -> Any:
  """Parses `text` as the type of `default` (bool/int/float/str/tuple/list/None)."""
  if isinstance(default, bool):
    low = text.lower()
    if low in ("1", "true", "yes", "on", ""):
      return True
    if low in ("0", "false", "no", "off"):
      return False
    raise ConfigError(f"{key}: expected a bool, got {text!r}")
  if isinstance(default, (int, float)) and not isinstance(default, bool):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise ConfigError(f"{key}: expected a {type(default).__name__}, got {text!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f"{key}: expected a {type(default).__name__}, got {text!r}")
    if isinstance(default, int) and not float(value).is_integer():
      raise ConfigError(f"{key}: expected an int, got {text!r}")
    return type(default)(value)
  if isinstance(default, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if default is None:
      return text  # unknown type: keep the string
    raise ConfigError(f"{key}: cannot parse {text!r} as a {type(default).__name__}") from None
  if isinstance(default, (tuple, list)):
    if not isinstance(value, (tuple, list)):
      value = (value,)
    return type(default)(value)
  return value


def parse_arg(arg: str | None, *, lazy: bool = False, **spec) -> ml_collections.ConfigDict:
  """`"tiny,steps=20"` -> ConfigDict(variant="tiny", steps=20, ...) typed by `spec`'s defaults.

  Tokens are comma-separated `key=value` pairs; a bare token is `True` for a bool key and the
  value of the first key of `spec` otherwise (so `:tiny` picks the variant). Unknown keys are an
  error naming them, unless `lazy`, in which case they are kept as strings.
  """
  out = ml_collections.ConfigDict(dict(spec))
  first = next(iter(spec), None)
  for token in (arg or "").split(","):
    token = token.strip()
    if not token:
      continue
    key, has_value, text = token.partition("=")
    if not has_value:
      if key in spec and isinstance(spec[key], bool):
        out[key] = True
        continue
      if first is None:
        raise ConfigError(f"config argument {token!r}: this config takes no arguments")
      key, text = first, token
    if key not in spec:
      if lazy:
        out[key] = text
        continue
      raise ConfigError(f"config argument {key!r} is not known; known: {sorted(spec)}")
    out[key] = _coerce(text, spec[key], f"config argument {key}")
  return out


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`"configs/x.py:arg"` -> `get_config(arg)` of that file (unlocked)."""
  path, _, arg = spec.partition(":")
  if not path.endswith(".py"):
    raise ConfigError(f"config {spec!r}: expected a path to a .py file, optionally ':variant'")
  if not os.path.exists(path):
    raise ConfigError(f"config file {path!r} does not exist")
  name = "fabgen_config_" + re.sub(r"\W", "_", os.path.abspath(path))
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path!r} has no get_config(arg=None)")
  config = module.get_config(arg) if arg else module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config returned {type(config).__name__}, not a ConfigDict")
  return config


def load_module(path: str):
  """The config file as a module (for `get_sweep()`)."""
  module_spec = importlib.util.spec_from_file_location("fabgen_sweep_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """Applies `a.b=value` strings in place; the key must exist and the value must parse as its type."""
  for item in overrides:
    key, has_value, text = item.partition("=")
    key = key.removeprefix("--config.").removeprefix("config.")
    if not has_value:
      raise ConfigError(f"override {item!r}: expected key=value")
    parent, _, leaf = key.rpartition(".")
    node = config
    for part in parent.split(".") if parent else []:
      if part not in node:
        raise ConfigError(f"override {key!r}: no config key {part!r} (in {_keys(node)})")
      node = node[part]
      if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"override {key!r}: {part!r} is not a section")
    if leaf not in node:
      raise ConfigError(f"override {key!r}: no config key {leaf!r}; did you mean one of "
                        f"{_close(leaf, list(node.keys()))}?")
    with node.ignore_type():
      node[leaf] = _coerce(text, node[leaf], f"--config.{key}")
  return config


def _keys(node):
  return sorted(node.keys())


def _close(name, names):
  import difflib  # pylint: disable=g-import-not-at-top
  return difflib.get_close_matches(name, names, n=3, cutoff=0.5) or sorted(names)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the platform's common fields; errors name the key and the bad value."""
  for key in ("task", "seed", "total_steps", "batch_size", "mesh", "checkpoint",
              "log_every_steps", "precision"):
    if key not in config:
      raise ConfigError(f"config has no {key!r}; start task configs from "
                        f"fabgen.platform.config.base_config()")
  if config.task not in registry.TASKS:
    raise ConfigError(f"config.task={config.task!r} is not a known task; known: "
                      f"{sorted(registry.TASKS)}")
  positive = {"total_steps": config.total_steps, "batch_size": config.batch_size,
              "log_every_steps": config.log_every_steps,
              "checkpoint.every_steps": config.checkpoint.every_steps,
              "checkpoint.keep": config.checkpoint.keep}
  for key, value in positive.items():
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ConfigError(f"config.{key}={value!r} must be a positive int")
  for axis in MESH_AXES:
    value = config.mesh.get(axis, 1)
    if not isinstance(value, int) or (value < 1 and value != -1):
      raise ConfigError(f"config.mesh.{axis}={value!r} must be a positive int or -1 (= rest)")
  if sum(config.mesh.get(a, 1) == -1 for a in MESH_AXES) > 1:
    raise ConfigError(f"config.mesh: at most one axis may be -1, got {config.mesh.to_dict()}")
  for key in ("compute_dtype", "param_dtype"):
    value = config.precision[key]
    if value not in ("float32", "bfloat16", "float16"):
      raise ConfigError(f"config.precision.{key}={value!r}: use float32, bfloat16 or float16")
  for i, rule in enumerate(config.get("sharding_rules", [])):
    if not isinstance(rule, (tuple, list)) or len(rule) != 2:
      raise ConfigError(f"config.sharding_rules[{i}]={rule!r}: expected (regex, tactic)")
    try:
      re.compile(rule[0])
    except re.error as e:
      raise ConfigError(f"config.sharding_rules[{i}]: bad regex {rule[0]!r}: {e}") from None


def get(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Load + override + validate + lock: what `fabgen train` runs on a `--config` argument."""
  config = load_config(spec)
  apply_overrides(config, overrides)
  validate(config)
  config.lock()
  return config
