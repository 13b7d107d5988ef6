"""The detector as a `jax.export` artifact: inference without the training code.

An inspection line runs the detector next to a camera, where nobody wants flax, optax, orbax or
fabgen's training code. `jax.export` serializes the jitted inference function as StableHLO with
its weights embedded as constants (only the arrays `predict` touches: EMA/inference weights, no
optimizer state), plus a JSON file that says how to call it:

  <out>/detector.jaxexport   `jax.export.Exported.serialize()` bytes
  <out>/detector.json        format, input shape, class ids and names, output names, platforms

`load(out)` needs only jax and numpy. The batch dimension is symbolic by default, so one artifact
serves any batch size; height and width are fixed (the tile size `fabgen.detector.infer` cuts
large images into).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

FORMAT = "fabgen-detector-export-v1"
ARTIFACT = "detector.jaxexport"
META = "detector.json"


def export_function(fn: Callable[[jax.Array], Mapping[str, jax.Array]], out_dir: str,
                    height: int, width: int, class_ids: Sequence[int],
                    class_names: Sequence[str], batch: int | None = None,
                    platforms: Sequence[str] | None = None,
                    extra_meta: Mapping[str, Any] | None = None) -> str:
  """Serializes `fn` (uint8 [B, height, width, 3] -> dict of arrays) into `out_dir`.

  Args:
    fn: the inference function with its weights closed over (they become constants).
    out_dir: folder for the artifact and its JSON description (created).
    height, width: the fixed input size.
    class_ids, class_names: what the label outputs mean (global class ids and their names).
    batch: a fixed batch size, or None for a symbolic one.
    platforms: lowering platforms (e.g. ["cpu", "cuda"]); default: the current backend.
    extra_meta: more JSON-able facts to record (checkpoint path, step).

  Returns:
    The artifact path.
  """
  b = jax_export.symbolic_shape("b")[0] if batch is None else int(batch)
  spec = jax.ShapeDtypeStruct((b, int(height), int(width), 3), jnp.uint8)
  exp = jax_export.export(jax.jit(fn), platforms=platforms)(spec)
  names = sorted(exp.out_tree.unflatten(list(range(exp.out_tree.num_leaves))))
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, ARTIFACT)
  _atomic_write(path, bytes(exp.serialize()))
  meta = {"format": FORMAT, "height": int(height), "width": int(width),
          "batch": None if batch is None else int(batch), "input_dtype": "uint8",
          "class_ids": [int(c) for c in class_ids], "class_names": list(class_names),
          "outputs": names, "platforms": list(exp.platforms), "jax_version": jax.__version__,
          **dict(extra_meta or {})}
  _atomic_write(os.path.join(out_dir, META), json.dumps(meta, indent=1).encode())
  return path


def export_detector(checkpoint: str, out_dir: str, height: int | None = None,
                    width: int | None = None, batch: int | None = None,
                    platforms: Sequence[str] | None = None) -> str:
  """Restores a trained detector from its workdir and exports its `predict`."""
  # Deferred: `load` (this module's reader side) needs only jax and numpy; the training code is
  # imported only to export from a workdir.
  from fabgen.data import classes as classes_lib  # pylint: disable=g-import-not-at-top
  from fabgen.detector import task as task_lib  # pylint: disable=g-import-not-at-top
  task, state = task_lib.DetectorTask.restore(checkpoint)
  size = task.config.get("image_size", 256)
  size = (size, size) if isinstance(size, int) else tuple(size)
  height = height or size[0]
  width = width or size[1]
  class_ids = [int(c) for c in task.class_ids]
  names = [classes_lib.CLASSES[c] if c < len(classes_lib.CLASSES) else str(c) for c in class_ids]
  fn = lambda images: task.predict(state, images)
  step = state.get("step") if isinstance(state, Mapping) else None
  return export_function(fn, out_dir, height, width, class_ids, names, batch, platforms,
                         {"checkpoint": os.path.abspath(checkpoint),
                          "step": None if step is None else int(np.asarray(step))})


def is_export_dir(path: str) -> bool:
  """Whether `path` holds an exported detector (rather than a training workdir)."""
  return os.path.isfile(os.path.join(path, ARTIFACT)) and os.path.isfile(os.path.join(path, META))


class ExportedDetector:
  """A loaded artifact: call it like `task.predict` without a state."""

  def __init__(self, exported: jax_export.Exported, meta: Mapping[str, Any]):
    self.exported = exported
    self.meta = dict(meta)
    self.tile = (int(meta["height"]), int(meta["width"]))
    self.class_ids = list(meta["class_ids"])
    self.class_names = list(meta["class_names"])

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    images = np.asarray(images)
    want = (self.tile[0], self.tile[1], 3)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
      raise ValueError(f"exported detector expects uint8 [B, {want[0]}, {want[1]}, 3], got "
                       f"{images.dtype} {list(images.shape)}")
    if self.meta.get("batch") is not None and images.shape[0] != self.meta["batch"]:
      raise ValueError(f"exported detector was exported for batch {self.meta['batch']}, "
                       f"got {images.shape[0]}")
    return {k: np.asarray(v) for k, v in self.exported.call(images).items()}


def load(path: str) -> ExportedDetector:
  """Loads an artifact folder written by `export_function` / `export_detector`."""
  meta_path, art_path = os.path.join(path, META), os.path.join(path, ARTIFACT)
  for p in (meta_path, art_path):
    if not os.path.isfile(p):
      raise FileNotFoundError(f"{p} is missing: {path!r} is not an exported detector "
                              f"(write one with `fabgen export --checkpoint DIR --out {path}`)")
  with open(meta_path) as f:
    try:
      meta = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{meta_path} is not valid JSON: {e}") from None
  if meta.get("format") != FORMAT:
    raise ValueError(f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT!r}")
  with open(art_path, "rb") as f:
    data = f.read()
  try:
    exported = jax_export.deserialize(bytearray(data))
  except Exception as e:  # the serialized form is a flatbuffer; any corruption surfaces here
    raise ValueError(f"{art_path} could not be deserialized by jax.export: {e}") from e
  return ExportedDetector(exported, meta)


def _atomic_write(path: str, data: bytes) -> None:
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
