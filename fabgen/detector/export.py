"""The exported detector: inference without the training code, in three formats.

An inspection line runs the detector next to a camera, where nobody wants flax, optax, orbax or
fabgen's training code. `jax.export` serializes the jitted inference function as StableHLO with
its weights embedded as constants (only the arrays `predict` touches: EMA/inference weights, no
optimizer state), plus a JSON file that says how to call it:

  <out>/detector.jaxexport   `jax.export.Exported.serialize()` bytes
  <out>/detector.json        format, input shape, class ids and names, output names, platforms

`export_detector(..., fmt="savedmodel" | "onnx")` writes the same description beside a TF
SavedModel (`export_savedmodel`) or an ONNX file (`export_onnx`), and every `export_detector`
call loads the artifact back with its own runtime and checks it against the training code
(`check_parity`) before the JSON is written. detector.json also records the tiling settings and
the per-class thresholds (`fabgen.detector.thresholds`). `load(out)` of a jax artifact needs
only jax and numpy. The batch dimension is symbolic by default, so one artifact
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
                    extra_meta: Mapping[str, Any] | None = None,
                    write_meta: bool = True) -> str:
  """Serializes `fn` (uint8 [B, height, width, 3] -> dict of arrays) into `out_dir`.

  Args:
    fn: the inference function with its weights closed over (they become constants).
    out_dir: folder for the artifact and its JSON description (created).
    height, width: the fixed input size.
    class_ids, class_names: what the label outputs mean (global class ids and their names).
    batch: a fixed batch size, or None for a symbolic one.
    platforms: lowering platforms (e.g. ["cpu", "cuda"]); default: the current backend.
    extra_meta: more JSON-able facts to record (checkpoint path, step).
    write_meta: False when the caller writes detector.json itself (after its parity check).

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
  if extra_meta is not None and isinstance(extra_meta, dict):
    extra_meta["platforms"] = list(exp.platforms)
  if write_meta:
    meta = {"format": FORMAT, "artifact_format": "jax", "artifact": ARTIFACT,
            "height": int(height), "width": int(width),
            "batch": None if batch is None else int(batch), "input_dtype": "uint8",
            "class_ids": [int(c) for c in class_ids], "class_names": list(class_names),
            "outputs": names, "platforms": list(exp.platforms), "jax_version": jax.__version__,
            **dict(extra_meta or {})}
    _atomic_write(os.path.join(out_dir, META), json.dumps(meta, indent=1).encode())
  return path


FORMATS = ("jax", "savedmodel", "onnx")
OUTPUTS = ("boxes", "scores", "labels", "class_probs", "seg_probs")
# Parity of an export with the training code (`check_parity`), stated per output: absolute
# differences in probability units for scores / class and segmentation probabilities, in pixels
# for boxes; labels must agree wherever the reference's two best classes differ by more than
# the score tolerance (a closer call may flip in the last float bits of any runtime). 5e-4: two
# correct f32 convolution kernels (XLA's multi-threaded Eigen one, which fabgen's CPU runs use,
# and TF's / onnxruntime's) differ by up to 1.5e-4 in the tiny detector's segmentation
# probabilities through its backbone (measured); a wrong export is off by orders more.
TOLERANCES = {"scores": 5e-4, "class_probs": 5e-4, "seg_probs": 5e-4, "boxes": 0.05}


class ParityError(ValueError):
  """An exported model computes something other than the training code."""


def parity_images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
  """`n` fixed uint8 test images: noise, a smooth gradient with dark and bright marks, flat grey."""
  rng = np.random.default_rng(seed)
  out = []
  yy, xx = np.mgrid[0:height, 0:width]
  for i in range(n):
    kind = i % 3
    if kind == 0:
      img = rng.integers(0, 256, (height, width, 3))
    elif kind == 1:
      img = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)),
                      np.full_like(xx, 128)], -1)
      img[height // 4: height // 4 + 6, width // 8: width // 2] = 20
      img[:, width * 2 // 3: width * 2 // 3 + 3] = 240
    else:
      img = np.full((height, width, 3), 128) + rng.integers(-6, 7, (height, width, 3))
    out.append(np.clip(img, 0, 255).astype(np.uint8))
  return np.stack(out)


def check_parity(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                 tolerances: Mapping[str, float] = TOLERANCES) -> dict:
  """Max absolute difference per output; raises ParityError naming the first one out of bounds."""
  report: dict[str, Any] = {"tolerances": dict(tolerances)}
  missing = [k for k in OUTPUTS if k in reference and k not in candidate]
  if missing:
    raise ParityError(f"the export lacks outputs {missing} (it has {sorted(candidate)})")
  for key, tol in tolerances.items():
    if key not in reference:
      continue
    want = np.asarray(reference[key], np.float64)
    got = np.asarray(candidate[key], np.float64)
    if got.shape != want.shape:
      raise ParityError(f"output {key!r} has shape {list(got.shape)}, the training code gives "
                        f"{list(want.shape)}")
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    report[f"{key}_max_abs_diff"] = diff
    if not diff <= tol:
      raise ParityError(f"output {key!r} differs from the training code by up to {diff:.3g} "
                        f"(tolerance {tol:g})")
  if "labels" in reference:
    want = np.asarray(reference["labels"])
    got = np.asarray(candidate["labels"])
    decided = np.ones(want.shape, bool)
    if "class_probs" in reference and np.asarray(reference["class_probs"]).shape[-1] > 1:
      top2 = np.sort(np.asarray(reference["class_probs"], np.float64), -1)[..., -2:]
      decided = (top2[..., 1] - top2[..., 0]) > tolerances.get("scores", 1e-4)
    wrong = int(((got != want) & decided).sum())
    report["labels_disagree"] = wrong
    report["labels_compared"] = int(decided.sum())
    if wrong:
      raise ParityError(f"output 'labels' disagrees with the training code on {wrong} of "
                        f"{int(decided.sum())} clearly decided queries")
  return report


def export_detector(checkpoint: str, out_dir: str, height: int | None = None,
                    width: int | None = None, batch: int | None = None,
                    platforms: Sequence[str] | None = None, fmt: str = "jax",
                    thresholds: Mapping[str, float] | None = None,
                    tiling: Mapping[str, Any] | None = None, parity_count: int = 3) -> str:
  """Restores a trained detector from its workdir, exports its `predict`, checks parity.

  fmt: "jax" (jax.export; symbolic batch unless `batch`), "savedmodel" (jax2tf; fixed batch,
  default 8) or "onnx" (jax2onnx; fixed batch, default 8; the description is also written into
  the model's metadata_props). The artifact is loaded back with its
  own runtime (jax / TensorFlow / onnxruntime) and compared with `jax.jit(task.predict)` on
  `parity_count` images (`check_parity`, `TOLERANCES`); a difference is a ParityError and the
  metadata is not written, so a folder never looks like a valid export of a different model.
  thresholds (class name -> score) default to the checkpoint's thresholds.json.
  """
  from fabgen.data import classes as classes_lib  # pylint: disable=g-import-not-at-top
  from fabgen.detector import task as task_lib  # pylint: disable=g-import-not-at-top
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  if fmt not in FORMATS:
    raise ValueError(f"export format {fmt!r} is not one of {FORMATS}")
  task, state = task_lib.DetectorTask.restore(checkpoint)
  size = task.config.get("image_size", 256)
  size = (size, size) if isinstance(size, int) else tuple(size)
  height = height or size[0]
  width = width or size[1]
  class_ids = [int(c) for c in task.class_ids]
  names = [classes_lib.CLASSES[c] if c < len(classes_lib.CLASSES) else str(c) for c in class_ids]
  params = state["params"]
  fn = lambda images: task.predict({"params": params}, images)
  step = state.get("step") if isinstance(state, Mapping) else None
  if thresholds is None:
    thresholds = thresholds_lib.load(checkpoint)
  meta = {"checkpoint": os.path.abspath(checkpoint),
          "step": None if step is None else int(np.asarray(step)),
          "tiling": {"tile": [int(height), int(width)], "overlap": 64, "multiple": 32,
                     **dict(tiling or {})},
          "thresholds": dict(thresholds) if thresholds else None}
  if fmt != "jax":
    batch = int(batch or 8)
  description = {"format": FORMAT, "artifact_format": fmt,
                 "height": int(height), "width": int(width),
                 "batch": None if batch is None else int(batch), "input_dtype": "uint8",
                 "class_ids": class_ids, "class_names": names, "outputs": list(OUTPUTS),
                 "jax_version": jax.__version__, **meta}
  if os.path.exists(os.path.join(out_dir, META)):
    os.remove(os.path.join(out_dir, META))  # a half-rewritten folder must not look valid
  os.makedirs(out_dir, exist_ok=True)
  if fmt == "jax":
    path = export_function(fn, out_dir, height, width, class_ids, names, batch, platforms,
                           meta, write_meta=False)
  else:
    if fmt == "savedmodel":
      from fabgen.detector import export_savedmodel  # pylint: disable=g-import-not-at-top
      path = export_savedmodel.export_savedmodel(fn, out_dir, height, width, batch,
                                                 tuple(platforms or ("cpu",)))
    else:
      from fabgen.detector import export_onnx  # pylint: disable=g-import-not-at-top
      path = export_onnx.export_onnx(fn, out_dir, height, width, batch, OUTPUTS,
                                     metadata={**description, "artifact": export_onnx.FILENAME})
  full = {**description, "artifact": os.path.basename(path)}
  images = parity_images(parity_count, height, width)
  reference = {k: np.asarray(v) for k, v in jax.jit(fn)(images).items()}
  candidate = _in_batches(_open(out_dir, full), images, batch if fmt == "jax" else None)
  full["parity"] = {"images": int(parity_count), **check_parity(reference, candidate)}
  _atomic_write(os.path.join(out_dir, META), json.dumps(full, indent=1).encode())
  return path


def _in_batches(run: Callable, images: np.ndarray, batch: int | None) -> dict:
  """`run` over `images` in fixed batches of `batch` (the last one padded by repeating an image),
  concatenated; one call when the artifact takes any batch (`batch` None)."""
  if not batch:
    return {k: np.asarray(v) for k, v in run(images).items()}
  n, parts = len(images), []
  for i in range(0, n, batch):
    chunk = images[i:i + batch]
    pad = batch - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    parts.append({k: np.asarray(v)[:batch - pad] for k, v in run(chunk).items()})
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def is_export_dir(path: str) -> bool:
  """Whether `path` holds an exported detector (rather than a training workdir)."""
  meta_path = os.path.join(path, META)
  if not os.path.isfile(meta_path):
    return False
  try:
    with open(meta_path) as f:
      meta = json.load(f)
  except (OSError, json.JSONDecodeError):
    return os.path.isfile(os.path.join(path, ARTIFACT))
  return os.path.exists(os.path.join(path, str(meta.get("artifact", ARTIFACT))))


class ExportedDetector:
  """A loaded artifact of any format: call it like `task.predict` without a state.

  `call` is the format's runtime (jax.export / TensorFlow / onnxruntime); fixed-batch formats
  are wrapped so any batch works. `meta` is detector.json (class names, tiling, thresholds).
  """

  def __init__(self, call: Callable[[np.ndarray], Mapping[str, Any]], meta: Mapping[str, Any]):
    self.call = call
    self.meta = dict(meta)
    self.tile = (int(meta["height"]), int(meta["width"]))
    self.class_ids = list(meta["class_ids"])
    self.class_names = list(meta["class_names"])
    self.thresholds = meta.get("thresholds") or None

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    images = np.asarray(images)
    want = (self.tile[0], self.tile[1], 3)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
      raise ValueError(f"exported detector expects uint8 [B, {want[0]}, {want[1]}, 3], got "
                       f"{images.dtype} {list(images.shape)}")
    if (self.meta.get("artifact_format", "jax") == "jax" and self.meta.get("batch") is not None
        and images.shape[0] != self.meta["batch"]):
      raise ValueError(f"exported detector was exported for batch {self.meta['batch']}, "
                       f"got {images.shape[0]}")
    return {k: np.asarray(v) for k, v in self.call(images).items()}


def _open(path: str, meta: Mapping[str, Any]) -> ExportedDetector:
  """The runtime of `meta["artifact_format"]` on the artifact in `path`."""
  fmt = meta.get("artifact_format", "jax")
  art_path = os.path.join(path, str(meta.get("artifact", ARTIFACT)))
  if not os.path.exists(art_path):
    raise FileNotFoundError(f"{art_path} is missing: {path!r} is not a complete export")
  if fmt == "jax":
    with open(art_path, "rb") as f:
      data = f.read()
    try:
      exported = jax_export.deserialize(bytearray(data))
    except Exception as e:  # the serialized form is a flatbuffer; any corruption surfaces here
      raise ValueError(f"{art_path} could not be deserialized by jax.export: {e}") from e
    call = exported.call
  elif fmt == "savedmodel":
    from fabgen.detector import export_savedmodel  # pylint: disable=g-import-not-at-top
    call = export_savedmodel.fixed_batch(
        export_savedmodel.SavedModelDetector(art_path, meta["batch"]), int(meta["batch"]))
  elif fmt == "onnx":
    from fabgen.detector import export_onnx  # pylint: disable=g-import-not-at-top
    from fabgen.detector import export_savedmodel  # pylint: disable=g-import-not-at-top
    why = export_onnx.available()
    if why:
      raise ValueError(f"{path!r} is an ONNX export: {why}")
    call = export_savedmodel.fixed_batch(export_onnx.OnnxDetector(art_path), int(meta["batch"]))
  else:
    raise ValueError(f"{os.path.join(path, META)}: unknown artifact_format {fmt!r}; "
                     f"expected one of {FORMATS}")
  return ExportedDetector(call, meta)


def load(path: str) -> ExportedDetector:
  """Loads an export folder (any format) written by `export_function` / `export_detector`."""
  meta_path = os.path.join(path, META)
  if not os.path.isfile(meta_path):
    raise FileNotFoundError(f"{meta_path} is missing: {path!r} is not an exported detector "
                            f"(write one with `fabgen export --checkpoint DIR --out {path}`)")
  with open(meta_path) as f:
    try:
      meta = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{meta_path} is not valid JSON: {e}") from None
  if meta.get("format") != FORMAT:
    raise ValueError(f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT!r}")
  return _open(path, meta)


def _atomic_write(path: str, data: bytes) -> None:
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
