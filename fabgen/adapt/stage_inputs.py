"""What each adaptation stage was computed from, recorded, and compared before a stage is skipped.

`fabgen adapt` resumes by skipping stages that have a `result.json`. Without more, rerunning a
copied workdir with `--config.target_fabric=41` reprinted fabric 40's table: every stage was
"done". Here each stage's inputs are the config keys it reads plus the inputs of the stages it
consumes (transitively), so a change reaches exactly the stages it affects:

  target_fabric=41  -> target, synth_*, finetune_* (not the control), eval_* rerun; the source
                       detector, the generators and the control fine-tune are reused.

A stage whose recorded inputs differ (or that has none recorded, from an older fabgen) is moved
aside to `<stage>.replaced-<n>/` (never deleted: it may be hours of training) and runs again
from an empty folder, so a training workdir cannot resume stale checkpoints and a synthesis
cannot extend a set painted on another fabric. The log names the keys that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable

from fabgen.adapt import protocol
from fabgen.platform import config_guard
from fabgen.platform import files

INPUTS = "inputs.json"
_WORLD = ("preset", "seed")  # every stage's data comes from the FabricSim preset and seed


def _section(config, key: str):
  node = config
  for part in key.split("."):
    node = node[part]
  return node.to_dict() if hasattr(node, "to_dict") else node


def _generators(config, method: str) -> tuple[str, ...]:
  extra = config.get("extra_generators", {})
  return tuple(extra[method]) if method in extra else tuple(protocol.GENERATORS.get(method, ()))


def _real_target(config) -> bool:
  return bool(config.get("target", {}).get("good", ""))


def _real_sources(config) -> bool:
  s = config.get("sources", {})
  return bool(s.get("real", "")) or not s.get("fabricsim", True)


def dependencies(config, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(config keys the stage reads, stages whose results it consumes).

  A real target (`target.good`) adds the `target` section to the target stage's keys, real
  sources add `sources` to every stage's; FabricSim-only runs keep the keys they always had, so
  their workdirs resume unchanged.
  """
  keys, upstream = _dependencies(config, name)
  if _real_sources(config):
    keys = ("sources",) + keys
  if name == "target" and _real_target(config):
    keys = keys + ("target",)
  return keys, upstream


def _dependencies(config, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
  if name == "target":
    return _WORLD + ("target_fabric", "synth.num_backgrounds", "eval.limit"), ()
  if name == "detector_source":
    return _WORLD + ("detector",), ()
  if name == "fusion" and config.get("fusion_donors", "stage1") == "stage1":
    # T trains on stage-1 donors: a retrained stage 1 means a retrained T.
    return _WORLD + ("generators.fusion", "fusion_donors"), ("stage1",)
  if name == "defectfill":  # fine-tunes of the pre-trained diffusion stage
    return _WORLD + ("generators.defectfill",), ("diffusion",)
  if name in config.generators:
    return _WORLD + (f"generators.{name}",) + (("fusion_donors",) if name == "fusion" else ()), ()
  if name == "eval_source_val":
    return ("eval",), ("detector_source",)
  if name.startswith("eval_"):
    what = name[len("eval_"):]
    upstream = "detector_source" if what == "source" else f"finetune_{what}"
    return ("eval",), ("target", upstream)
  if name == "finetune_control":
    return _WORLD + ("finetune", "detector"), ("detector_source",)
  if name.startswith("finetune_"):
    return _WORLD + ("finetune", "detector"), ("detector_source", f"synth_{name[9:]}")
  if name.startswith("synth_"):
    method = name[len("synth_"):]
    # The box-size ablation is recorded only when switched on: earlier workdirs resume as they are.
    sizes = (("multistage_boxes",) if method == "multistage"
             and config.get("multistage_boxes", "real") != "real" else ())
    return _WORLD + ("synth",) + sizes, ("target",) + _generators(config, method)
  raise ValueError(f"adapt stage {name!r} has no known inputs (fabgen/adapt/stage_inputs.py)")


def inputs_of(config, name: str) -> dict[str, Any]:
  """The stage's own config values and, per consumed stage, that stage's inputs (nested)."""
  keys, upstream = dependencies(config, name)
  out: dict[str, Any] = {"config": {k: _section(config, k) for k in keys}}
  if name.startswith("synth_"):
    out["method"] = name[len("synth_"):]
  out["after"] = {u: inputs_of(config, u) for u in upstream}
  return json.loads(json.dumps(out, sort_keys=True, default=list))


def digest(inputs: dict) -> str:
  return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _replace_stage(workdir: str, name: str) -> str:
  folder = os.path.join(workdir, name)
  n = 1
  while os.path.lexists(f"{folder}.replaced-{n}"):
    n += 1
  os.replace(folder, f"{folder}.replaced-{n}")
  return f"{folder}.replaced-{n}"


def run_checked(config, workdir: str, name: str, fn: Callable[[str], dict],
                log: Callable[[str], None]) -> dict:
  """`protocol.run_stage` that skips a finished stage only when its recorded inputs match."""
  inputs = inputs_of(config, name)
  folder = os.path.join(workdir, name)
  record = os.path.join(folder, INPUTS)
  if os.path.isdir(folder):
    protocol.stage_done(workdir, name)  # a corrupt result.json is an error naming it, as before
    recorded = files.read_json(record) if os.path.isfile(record) else None
    if recorded != inputs:
      if recorded is None:
        why = "no recorded inputs (an older run)"
      else:
        changed = [k for k, _, _ in config_guard.differences(recorded, inputs)]
        why = "inputs changed: " + ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
      moved = _replace_stage(workdir, name)
      log(f"[{name}] {why}; the old stage moved to {moved}, running it again")
  os.makedirs(folder, exist_ok=True)
  files.write_json_atomic(record, inputs, indent=1, sort_keys=True)
  return protocol.run_stage(workdir, name, fn, log)
