"""The protocol over several held-out target fabrics and seeds, resumable, then aggregated.

  fabgen adapt-aggregate --config configs/adapt.py:medium --workdir runs/agg \\
      --fabrics 40,41,42 --seeds 0,1

Each (fabric, seed) unit is one ordinary protocol run in `<workdir>/fabric<F>_seed<S>/`; a unit
whose `table.json` exists has finished and is skipped, and an interrupted unit resumes stage by
stage (`protocol.run_stage`). The seed is the FabricSim data seed, the model seeds and the
synthesis seed (`platform_backend.PlatformBackend`), so two seeds are two independent draws of
sources, targets and training.

Units of one seed share the stages that never see the target (`SHARED_STAGES`: the source
detector, its source-validation score, the generators, the control fine-tune): the first
fabric's finished stage folders are linked into the next fabric's workdir, where the protocol
finds their result.json and skips them. Same sources, same seed: training them again would only
cost time. What depends on the target (synthesis, method fine-tunes, every target evaluation)
runs per unit. At the end `aggregate.aggregate` turns the units' reports into
`<workdir>/aggregate.{md,json}`.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Mapping, Sequence

import ml_collections

from fabgen.adapt import aggregate as aggregate_lib
from fabgen.adapt import protocol
from fabgen.adapt import table as table_lib

SHARED_STAGES = ("detector_source", "eval_source_val", "stage1", "fusion", "inpainter",
                 "finetune_control")
SOURCE_VAL = "source detector on source validation, mean F"
NO_ADAPT = "no adaptation on the target, mean F"


def unit_name(fabric: int, seed: int) -> str:
  return f"fabric{fabric}_seed{seed}"


def unit_done(unit_dir: str) -> bool:
  return os.path.isfile(os.path.join(unit_dir, "table.json"))


def share_stages(first_dir: str, unit_dir: str) -> list[str]:
  """Links `first_dir`'s finished target-independent stages into `unit_dir`; returns them."""
  os.makedirs(unit_dir, exist_ok=True)
  linked = []
  for stage in SHARED_STAGES:
    src, dst = os.path.join(first_dir, stage), os.path.join(unit_dir, stage)
    if os.path.isfile(os.path.join(src, protocol.RESULT)) and not os.path.lexists(dst):
      os.symlink(os.path.abspath(src), dst, target_is_directory=True)
      linked.append(stage)
  return linked


def reuse_stages(baseline_unit: str, unit_dir: str) -> list[str]:
  """Links every finished stage of `baseline_unit` that `unit_dir` lacks; returns them.

  An ablation (one switch changed) then reruns only what the switch reaches: each linked stage
  whose recorded inputs differ is moved aside (the link, never the baseline's folder) and runs
  again (`stage_inputs.run_checked`); the rest is the baseline's, computed once.
  """
  os.makedirs(unit_dir, exist_ok=True)
  linked = []
  if not os.path.isdir(baseline_unit):
    return linked
  for stage in sorted(os.listdir(baseline_unit)):
    src, dst = os.path.join(baseline_unit, stage), os.path.join(unit_dir, stage)
    if (".replaced-" not in stage and os.path.isfile(os.path.join(src, protocol.RESULT))
        and not os.path.lexists(dst)):
      os.symlink(os.path.realpath(src), dst, target_is_directory=True)
      linked.append(stage)
  return linked


def run_units(config: ml_collections.ConfigDict, workdir: str, fabrics: Sequence[int],
              seeds: Sequence[int], run_one: Callable[[ml_collections.ConfigDict, str], object],
              log: Callable[[str], None] = print, reuse: str | None = None) -> list[str]:
  """Runs every missing (fabric, seed) unit with `run_one(config, unit_dir)`; returns unit dirs.

  `reuse`: a baseline aggregate workdir whose units' finished stages are linked in first (after
  the seed's own shared stages), for ablations (`reuse_stages`).
  """
  if not fabrics or not seeds:
    raise ValueError(f"adapt-aggregate needs at least one fabric and one seed, got fabrics="
                     f"{list(fabrics)} seeds={list(seeds)}")
  units = []
  for seed in seeds:
    first = None
    for fabric in fabrics:
      unit_dir = os.path.join(workdir, unit_name(fabric, seed))
      units.append(unit_dir)
      if unit_done(unit_dir):
        log(f"[{unit_name(fabric, seed)}] finished earlier, skipped")
      else:
        if first is not None:
          linked = share_stages(first, unit_dir)
          if linked:
            log(f"[{unit_name(fabric, seed)}] shares {', '.join(linked)} with "
                f"{os.path.basename(first)}")
        if reuse:
          linked = reuse_stages(os.path.join(reuse, unit_name(fabric, seed)), unit_dir)
          if linked:
            log(f"[{unit_name(fabric, seed)}] reuses {len(linked)} stages of {reuse} "
                f"(rerun where this config changes their inputs)")
        cfg = ml_collections.ConfigDict(config.to_dict())
        cfg.target_fabric, cfg.seed = int(fabric), int(seed)
        log(f"[{unit_name(fabric, seed)}] running the protocol")
        run_one(cfg, unit_dir)
      first = first or unit_dir
  return units


def collect(unit_dirs: Sequence[str]) -> tuple[dict, dict]:
  """(unit -> reports, unit -> extra numbers) from finished units' table.json."""
  units, extra = {}, {}
  for d in unit_dirs:
    path = os.path.join(d, "table.json")
    if not os.path.isfile(path):
      continue
    with open(path, encoding="utf-8") as f:
      table = json.load(f)
    name = os.path.basename(d)
    units[name] = table["reports"]
    classes = list(table["reports"][protocol.NO_ADAPTATION]["classes"])
    scores = aggregate_lib.unit_scores(table["reports"], classes)
    extra[name] = {NO_ADAPT: scores[protocol.NO_ADAPTATION]["mean"]}
    if table.get("source_val"):
      val = aggregate_lib.unit_scores({"v": table["source_val"]}, classes)["v"]
      extra[name][SOURCE_VAL] = val["mean"]
  return units, extra


def write_aggregate(workdir: str, unit_dirs: Sequence[str], title: str,
                    compare_to: str | None = None) -> dict:
  """Aggregates the finished units into `<workdir>/aggregate.{json,md}`; returns the aggregate.

  `compare_to`: another aggregate workdir (the baseline of an ablation); each row both have gets
  its paired difference (this run - that one) over the units both finished.
  """
  units, extra = collect(unit_dirs)
  agg = aggregate_lib.aggregate(units, protocol.CONTROL, extra=extra,
                                baseline=protocol.NO_ADAPTATION)
  md = aggregate_lib.markdown(agg, title)
  if compare_to:
    other, _ = collect([os.path.join(compare_to, os.path.basename(d)) for d in unit_dirs])
    agg["against"] = {"workdir": compare_to,
                      **aggregate_lib.against(units, other, agg["classes"])}
    md += "\n" + aggregate_lib.against_markdown(agg["against"])
  write_json = protocol._write_json  # pylint: disable=protected-access
  write_json(os.path.join(workdir, "aggregate.json"), agg)
  with open(os.path.join(workdir, "aggregate.md"), "w", encoding="utf-8") as f:
    f.write(md)
  return {"aggregate": agg, "markdown": md}


def parse_ints(text: str, what: str) -> list[int]:
  """"40,41,42" -> [40, 41, 42], with an error naming the flag."""
  try:
    return [int(t) for t in text.split(",") if t.strip()]
  except ValueError:
    raise ValueError(f"--{what} must be comma-separated integers, got {text!r}") from None


def describe(agg: Mapping) -> str:
  """One line per method: its paired difference against the control (for logs)."""
  return "; ".join(f"{row}: {100 * d['mean']:+.1f} (95% CI {table_lib.pct(d['lo'])} .. "
                   f"{table_lib.pct(d['hi'])})" for row, d in agg["paired"].items())
