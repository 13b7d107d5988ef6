"""Resuming a workdir: the current config must be the one its checkpoint was trained with.

A resumed run restores weights, optimizer state and the input position, then keeps training
with the *current* config. If that config changed the model, the data, the class list or the
schedule, the run would silently continue a different experiment (or restore weights into a
head whose class order changed). So the trainer compares the checkpoint's saved config with the
current one, key by key, before restoring:

  * keys that only say how the run executes (logging cadence, checkpoint cadence, mesh and
    sharding, profiling, prefetch, the compilation cache) may change freely: a run saved on 8
    devices resumes on 1;
  * any other difference is refused with every differing key named, saved and current value;
  * `config.resume_allow_changes` (comma-separated keys or `section.` prefixes, `*` for all)
    allows a deliberate change, e.g. `--config.resume_allow_changes=total_steps` to extend a
    schedule;
  * keys a fresh run resolves from its data when left empty (`data.class_ids` of stage 1) take
    the saved value on resume when the current one is empty.

After the check, the workdir's `config.json` is rewritten (atomically) with the config the run
continues under, so it never goes stale.
"""

from __future__ import annotations

from typing import Any

import ml_collections

# How a run executes, not what it computes: free to change between a save and a resume.
EXECUTION_KEYS = ("log_every_steps", "summary_every_steps", "progress_every_steps",
                  "compilation_cache_dir", "data_prefetch", "data_threads", "data_buffer",
                  "fsdp_min_size", "sharding_rules", "logical_axis_rules",
                  "resume_allow_changes", "data.on_unreadable")
EXECUTION_PREFIXES = ("checkpoint.", "profile.", "mesh.")
# Filled in by a fresh run from its data when left empty (see fabgen/stage1/task.py warm_start).
RESOLVED_AT_START = ("data.class_ids",)


class ConfigMismatchError(ValueError):
  """The current config differs from the checkpoint's in keys that change the experiment."""


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
  """{"a.b": value} for every leaf; sequences compared as tuples (JSON gives lists back)."""
  items = config.items() if hasattr(config, "items") else []
  out = {}
  for key, value in items:
    name = f"{prefix}{key}"
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(flatten(value, name + "."))
    else:
      out[name] = _normal(value)
  return out


def _normal(value):
  if isinstance(value, (list, tuple)):
    return tuple(_normal(v) for v in value)
  return value


def _allowed(key: str, allow: tuple[str, ...]) -> bool:
  if key in EXECUTION_KEYS or key.startswith(EXECUTION_PREFIXES):
    return True
  return "*" in allow or any(key == a or (a.endswith(".") and key.startswith(a)) for a in allow)


def allow_list(config) -> tuple[str, ...]:
  text = config.get("resume_allow_changes", "") or ""
  return tuple(a.strip() for a in str(text).split(",") if a.strip())


def differences(saved, current) -> list[tuple[str, Any, Any]]:
  """(key, saved value, current value) for every leaf that differs; `<absent>` when missing."""
  a, b = flatten(saved), flatten(current)
  missing = "<absent>"
  return [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
          if a.get(k, missing) != b.get(k, missing)]


def adopt_resolved(saved, current: ml_collections.ConfigDict) -> None:
  """Copies keys a fresh run resolved (empty in `current`, set in `saved`) into `current`."""
  flat = flatten(saved)
  for key in RESOLVED_AT_START:
    section, _, leaf = key.rpartition(".")
    node = current
    for part in section.split(".") if section else []:
      node = node.get(part) if hasattr(node, "get") else None
    if node is None or leaf not in node or key not in flat:
      continue
    if not node[leaf] and flat[key]:
      with node.ignore_type():
        node[leaf] = type(node[leaf])(flat[key]) if isinstance(node[leaf], (list, tuple)) \
            else flat[key]


def check_resume(saved, current: ml_collections.ConfigDict, where: str) -> list[str]:
  """Raises `ConfigMismatchError` naming every refused key; returns the allowed changes.

  `where` names the checkpoint in the message. Call before restoring the state.
  """
  adopt_resolved(saved, current)
  allow = allow_list(current)
  refused, allowed = [], []
  for key, old, new in differences(saved, current):
    if key == "resume_allow_changes":
      continue
    (allowed if _allowed(key, allow) else refused).append(f"{key}: {old!r} -> {new!r}")
  if refused:
    raise ConfigMismatchError(
        f"{where} was trained with another config; resuming would continue a different "
        f"experiment. Differing keys (saved -> current):\n  " + "\n  ".join(refused) +
        "\nUse a new workdir, restore the saved values, or allow a deliberate change with "
        "--config.resume_allow_changes=" + ",".join(r.split(":")[0] for r in refused))
  return allowed
