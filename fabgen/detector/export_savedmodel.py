"""The detector as a TensorFlow SavedModel, through `jax.experimental.jax2tf`.

jax2tf (JAX 0.10) only has native serialization: the SavedModel holds one `XlaCallModule` op
that carries the detector as StableHLO, so TF runs exactly the program JAX compiled (no op-by-op
translation that could differ). Two things make that work with the TensorFlow of the default
install (2.21, StableHLO 1.13.7) while JAX 0.10 writes StableHLO 1.15 by default:

* the StableHLO is serialized at the version TensorFlow reads (`stablehlo_target`), so ops that
  newer StableHLO would encode as newer VHLO versions (top-k's composite) are written in a form
  TF can read; if TF cannot read a program, loading fails naming the op, and the export stops;
* the batch is fixed: TF's shape refinement cannot handle the dynamic top-k of a symbolic batch.
  `load` wraps the model so callers can still pass any batch (split / padded to the fixed one).

Layout: <out>/saved_model/ (signature `serving_default`: uint8 images [B, H, W, 3] -> boxes,
scores, labels, class_probs, seg_probs) and <out>/detector.json (`fabgen.detector.export`).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Callable, Mapping

import numpy as np

DIRNAME = "saved_model"


class ConversionError(ValueError):
  """The converter or the target runtime rejected the model; the message names the op."""


@contextlib.contextmanager
def stablehlo_target(version: str):
  """Within the block, `jax.export` writes StableHLO at `version` (JAX picks 4-week-old otherwise).

  JAX exposes no argument for this; `_module_to_bytecode` asks
  `hlo.get_version_from_compatibility_requirement`, which we answer for the duration.
  """
  from jax._src.export import _export  # pylint: disable=g-import-not-at-top
  original = _export.hlo.get_version_from_compatibility_requirement
  _export.hlo.get_version_from_compatibility_requirement = lambda requirement: version
  try:
    yield
  finally:
    _export.hlo.get_version_from_compatibility_requirement = original


def tf_stablehlo_version() -> str:
  """The StableHLO version the installed TensorFlow deserializes."""
  from tensorflow.compiler.mlir.stablehlo import stablehlo  # pylint: disable=g-import-not-at-top
  return stablehlo.get_current_version()


_OP_PATTERNS = (r"'((?:stablehlo|vhlo|chlo|mhlo)\.[\w.]+)' op", r'"((?:stablehlo|vhlo|chlo)\.[\w.]+)"',
                r"custom_call_target\s*=\s*\"([\w.]+)\"", r"Op type not registered '(\w+)'")


def ops_named_in(message: str) -> list[str]:
  """The op names a converter/runtime error message mentions (for a clear error)."""
  found: list[str] = []
  for pattern in _OP_PATTERNS:
    for name in re.findall(pattern, message):
      if name not in found:
        found.append(name)
  return found


def export_savedmodel(fn: Callable, out_dir: str, height: int, width: int, batch: int,
                      platforms=("cpu",)) -> str:
  """Converts `fn` (uint8 [batch, height, width, 3] -> dict of arrays) and saves it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(out_dir, DIRNAME)
  spec = tf.TensorSpec([int(batch), int(height), int(width), 3], tf.uint8, name="images")
  try:
    with stablehlo_target(tf_stablehlo_version()):
      converted = jax2tf.convert(fn, native_serialization_platforms=tuple(platforms))
      module = tf.Module()
      module.serve = tf.function(converted, autograph=False, input_signature=[spec])
      tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  except Exception as e:  # jax2tf and TF raise many types; every one stops the export
    raise ConversionError(_describe("jax2tf could not convert the detector", e)) from e
  return path


def _describe(what: str, e: Exception) -> str:
  text = str(e)
  ops = ops_named_in(text)
  first = text.strip().splitlines()[0][:300] if text.strip() else type(e).__name__
  return f"{what}: unsupported op(s) {', '.join(ops)}; {first}" if ops else f"{what}: {first}"


class SavedModelDetector:
  """A loaded SavedModel export, called like `task.predict` (numpy in, numpy out)."""

  def __init__(self, path: str, batch: int):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self.model = tf.saved_model.load(path)
    self.fn = self.model.signatures["serving_default"]
    self.batch = int(batch)

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    try:
      out = self.fn(images=self._tf.constant(images))
    except Exception as e:  # e.g. XlaCallModule cannot deserialize or refine the program
      raise ConversionError(_describe("TensorFlow could not run the SavedModel", e)) from e
    return {k: np.asarray(v) for k, v in out.items()}


def fixed_batch(fn: Callable[[np.ndarray], Mapping[str, np.ndarray]], batch: int
                ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
  """Lets a fixed-batch model take any batch: split into chunks, pad the last, drop the pad."""
  def call(images: np.ndarray) -> dict[str, np.ndarray]:
    images = np.asarray(images)
    n = images.shape[0]
    parts = []
    for start in range(0, max(n, 1), batch):
      chunk = images[start:start + batch]
      pad = batch - chunk.shape[0]
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
      parts.append({k: np.asarray(v)[:batch - pad] for k, v in fn(chunk).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return call
