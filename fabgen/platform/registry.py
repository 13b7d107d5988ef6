"""Name -> Task class, so a config picks its model family by `config.task`.

Entries are import paths, resolved on use, so that importing the platform does not import every
model (and the CLI starts fast).
"""

from __future__ import annotations

import importlib

TASKS: dict[str, str] = {
    "reference": "fabgen.platform.reference_task:ReferenceTask",
    "stage1": "fabgen.stage1.task:Stage1Task",
    "fusion": "fabgen.stage2.task:FusionTask",
    "r3gan_inpaint": "fabgen.stage2.single_stage_task:SingleStageTask",
    "detector": "fabgen.detector.task:DetectorTask",
    "texture": "fabgen.texture.task:TextureTask",
}


def get_task_class(name: str):
  """Returns the Task class registered as `name`, naming the known ones when it is not."""
  try:
    path = TASKS[name]
  except KeyError:
    raise ValueError(f"config.task={name!r} is not a known task; known: {sorted(TASKS)}") from None
  module_name, attr = path.split(":")
  return getattr(importlib.import_module(module_name), attr)
