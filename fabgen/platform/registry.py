"""Name -> Task class, and the one place a task is built from its config.

A config picks its model family by `config.task`. Entries are import paths, resolved on use, so
that importing the platform does not import every model (and the CLI starts fast); a new model
family adds one line to `TASKS`. `build_task(config)` is what the trainer, the ahead-of-time
compiler, checkpoint restoring and the benchmarks call: a config with a non-empty `grid`
(`grid.gammas` / `grid.seeds`) builds the vmapped grid of that task (`fabgen.gan.grid_task`),
so `config.task` (and every checkpoint written with it) keeps naming the model family.
"""

from __future__ import annotations

import importlib

import ml_collections

TASKS: dict[str, str] = {
    "reference": "fabgen.platform.reference_task:ReferenceTask",
    "stage1": "fabgen.stage1.task:Stage1Task",
    "fusion": "fabgen.stage2.fusion_task:FusionTask",
    "inpainter": "fabgen.stage2.inpainter_task:InpainterTask",
    "detector": "fabgen.detector.task:DetectorTask",
    "diffusion": "fabgen.diffusion.pretrain_task:DiffusionTask",
    "defectfill": "fabgen.diffusion.defectfill_task:DefectFillTask",
    "dgt": "fabgen.dgt.task:DGTTask",
    "texture": "fabgen.texture.task:TextureTask",
}

GRID_TASK = "fabgen.gan.grid_task:GridTask"


def _resolve(path: str):
  module_name, attr = path.split(":")
  return getattr(importlib.import_module(module_name), attr)


def get_task_class(name: str):
  """Returns the Task class registered as `name`, naming the known ones when it is not."""
  try:
    path = TASKS[name]
  except KeyError:
    raise ValueError(f"config.task={name!r} is not a known task; known: {sorted(TASKS)}") from None
  return _resolve(path)


def is_grid(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` asks for a grid of runs (non-empty `grid.gammas` or `grid.seeds`)."""
  return "grid" in config and bool(config.grid.get("gammas") or config.grid.get("seeds"))


def build_task(config: ml_collections.ConfigDict):
  """The Task `config` describes: `TASKS[config.task](config)`, or a grid of it."""
  task_cls = get_task_class(config.task)
  if is_grid(config):
    return _resolve(GRID_TASK)(config, task_cls)
  return task_cls(config)
