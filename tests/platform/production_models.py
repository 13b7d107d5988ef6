"""Every production model family as (task, synthetic batch), for the precision and sharding tests.

A batch here is random arrays of the shapes and dtypes the family's input pipeline yields, so a
test can trace, lower or run a train step without rendering or reading any data. Each family
has a `tiny_task(**precision)` (the smallest real config of that task, small enough for a CPU
step) and a `production(variant)` config name whose parameters the golden-spec test reads from
abstract shapes only.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from fabgen.platform import config as config_lib

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _u8(rng, *shape):
  return rng.integers(0, 256, shape, dtype=np.uint8)


def _mask(rng, b, s):
  m = np.zeros((b, s, s), np.float32)
  m[:, s // 4: s // 2, s // 4: s // 2] = 1.0
  return m


def stage1(precision="float32"):
  sys.path.insert(0, os.path.join(_TESTS, "stage1"))
  import stage1_fixtures as fx  # pylint: disable=g-import-not-at-top
  from fabgen.stage1 import task as task_lib  # pylint: disable=g-import-not-at-top
  c = fx.config()
  c.batch_size = 8
  c.precision.compute_dtype = precision
  task = task_lib.Stage1Task(c)
  rng = np.random.default_rng(0)
  b, s = c.batch_size, c.patch_size
  batch = {"patch": _u8(rng, b, s, s, 3), "mask": _mask(rng, b, s).astype(np.uint8),
           "clean": _u8(rng, b, s, s, 3),
           "cond": rng.normal(size=(b, task.conditioner.dim)).astype(np.float32),
           "class_id": rng.integers(0, 2, (b,)).astype(np.int32)}
  return task, batch


def _stage2(module, precision, objective):
  from fabgen.platform import registry  # pylint: disable=g-import-not-at-top
  c = config_lib.load_config(f"configs/{module}.py:tiny,objective={objective}")
  c.image_size = 16
  c.batch_size = 8
  c.precision.compute_dtype = precision
  if module == "inpainter":
    c.model.mask_bank_size = 8
  task = registry.get_task_class(c.task)(c)
  rng = np.random.default_rng(0)
  b, s = c.batch_size, c.image_size
  if module == "fusion":
    batch = {"x": _u8(rng, b, s, s, 3), "y": _u8(rng, b, s, s, 3), "window": _mask(rng, b, s)}
  else:
    batch = {"y": _u8(rng, b, s, s, 3), "mask": _mask(rng, b, s),
             "class_id": rng.integers(0, 6, (b,)).astype(np.int32)}
  return task, batch


def fusion(precision="float32"):
  return _stage2("fusion", precision, "rpgan")


def inpainter(precision="float32"):
  return _stage2("inpainter", precision, "rpgan")


def detector(precision="float32"):
  sys.path.insert(0, os.path.join(_TESTS, "detector"))
  import detector_fixtures as fx  # pylint: disable=g-import-not-at-top
  from fabgen.detector import task as task_lib  # pylint: disable=g-import-not-at-top
  c = fx.tiny_config(batch_size=8)
  c.precision.compute_dtype = precision
  return task_lib.DetectorTask(c), fx.stack_records(fx.synthetic_records(8, size=c.image_size))


def dgt(precision="float32"):
  from fabgen.dgt import task as task_lib  # pylint: disable=g-import-not-at-top
  c = config_lib.load_config("configs/dgt.py:tiny")
  c.batch_size = 8
  c.precision.compute_dtype = precision
  task = task_lib.DGTTask(c)
  rng = np.random.default_rng(0)
  b, s = c.batch_size, c.image_size
  batch = {"clean": _u8(rng, b, s, s, 3), "image": _u8(rng, b, s, s, 3),
           "mask": _mask(rng, b, s), "label": rng.integers(0, task.num_classes, (b,))
           .astype(np.int32)}
  return task, batch


def defectfill(precision="float32"):
  from fabgen.diffusion import defectfill_task  # pylint: disable=g-import-not-at-top
  c = config_lib.load_config("configs/defectfill.py:tiny")
  c.batch_size = 8
  c.precision.compute_dtype = precision
  task = defectfill_task.DefectFillTask(c)
  rng = np.random.default_rng(0)
  s = c.data.image_size
  return task, {"image": _u8(rng, 8, s, s, 3), "mask": _mask(rng, 8, s)}


def diffusion(precision="float32"):
  from fabgen.diffusion import pretrain_task  # pylint: disable=g-import-not-at-top
  c = config_lib.load_config("configs/diffusion.py:tiny")
  c.batch_size = 8
  c.precision.compute_dtype = precision
  task = pretrain_task.DiffusionTask(c)
  rng = np.random.default_rng(0)
  s = c.data.image_size
  return task, {"image": _u8(rng, 8, s, s, 3), "mask": _mask(rng, 8, s),
                "class_id": rng.integers(0, 6, (8,)).astype(np.int32)}


FAMILIES = {"stage1": stage1, "fusion": fusion, "inpainter": inpainter, "detector": detector,
            "dgt": dgt, "diffusion": diffusion, "defectfill": defectfill}


def texture(precision="float32"):
  from fabgen.texture import task as task_lib  # pylint: disable=g-import-not-at-top
  c = config_lib.load_config("configs/texture.py:tiny")
  c.batch_size = 8
  c.precision.compute_dtype = precision
  task = task_lib.TextureTask(c)
  rng = np.random.default_rng(0)
  s = c.data.patch_size
  return task, {"image": _u8(rng, 8, s, s, 3),
                "label": rng.integers(0, c.data.num_fabrics, (8,)).astype(np.int32)}


FAMILIES["texture"] = texture
