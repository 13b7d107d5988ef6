"""The detector as an ONNX model, through jax2onnx; run by onnxruntime.

jax2onnx translates a traced JAX program primitive by primitive into ONNX operators. We trace
the detector to a jaxpr first, rewrite the few primitives whose ONNX form onnxruntime refuses
into plain ones with bit-identical results (`export_rewrite`: max pooling as a max over strided
slices), and hand jax2onnx that flat program, so its patches of high-level Flax calls
(`nnx.max_pool` and friends) never enter. A primitive jax2onnx has no plugin for is a
`ConversionError` naming it, raised before conversion; a model onnxruntime refuses to load or
run is one naming the ONNX node; and the export's parity check (`fabgen.detector.export`)
compares the ONNX outputs with the training code's, so a model that converts but computes
something else is never written as if it were the detector.

The model carries its description (class names, input size, tiling, thresholds: detector.json's
content) in the ONNX `metadata_props`, so the .onnx file alone says how to call it; `metadata`
reads it back. The batch is fixed (as for the SavedModel); `load` wraps the session so any batch
works. Layout: <out>/detector.onnx and <out>/detector.json.

Versions (the `[export]` extra): jax2onnx 0.13.0 with onnx 1.23.2 / onnx-ir 1.1.0 /
onnxruntime 1.32.0 (tested; jax2onnx 0.17.1 also passes parity).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fabgen.detector.export_savedmodel import ConversionError

FILENAME = "detector.onnx"


def available() -> str | None:
  """None when jax2onnx and onnxruntime import, else why not (for skips and errors)."""
  try:
    import jax2onnx  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    import onnxruntime  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return (f"ONNX export needs jax2onnx and onnxruntime ({e}); install the extra: "
            f"pip install 'fabgen[export]'")
  return None


@contextlib.contextmanager
def quiet_plugin_import():
  """Silences jax2onnx's traceback per plugin module it cannot import.

  jax2onnx 0.13 under jax 0.10 skips its dm_pix plugins (they use the removed
  `batching.not_mapped`) and logs a full traceback for each, which `fabgen export` printed as if
  it had failed. A skipped plugin only leaves its primitive out of the registry, and
  `export_onnx` names any primitive the detector needs that is missing.
  """
  log = logging.getLogger("jax2onnx.plugins.plugin_system")
  level = log.level
  log.setLevel(logging.ERROR)
  try:
    yield
  finally:
    log.setLevel(level)


def supported_primitives() -> set[str]:
  """The JAX primitives this jax2onnx has a plugin for."""
  from jax2onnx.plugins import plugin_system  # pylint: disable=g-import-not-at-top
  with quiet_plugin_import():
    plugin_system.import_all_plugins()
  return set(plugin_system.PLUGIN_REGISTRY)


def export_onnx(fn: Callable, out_dir: str, height: int, width: int, batch: int,
                output_names: Sequence[str],
                metadata: Mapping[str, Any] | None = None) -> str:
  """Converts `fn` (uint8 [batch, H, W, 3] -> dict with `output_names`) to <out>/detector.onnx.

  metadata: JSON-able facts written into the model's metadata_props (one key per entry, values
  JSON-encoded; `metadata` reads them back).
  """
  why = available()
  if why:
    raise ConversionError(why)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax.extend import core as jcore  # pylint: disable=g-import-not-at-top
  from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  from fabgen.detector import export_rewrite  # pylint: disable=g-import-not-at-top
  names = list(output_names)
  spec = jax.ShapeDtypeStruct((int(batch), int(height), int(width), 3), jnp.uint8)
  traced = jax.make_jaxpr(lambda x: tuple(fn(x)[k] for k in names))(spec)
  try:
    closed = export_rewrite.rewrite(traced, spec)
  except NotImplementedError as e:
    raise ConversionError(f"the detector uses a form ONNX export cannot rewrite: {e}") from e
  missing = sorted(export_rewrite.primitives(closed) - supported_primitives())
  if missing:
    raise ConversionError(f"jax2onnx has no conversion for primitive(s) {', '.join(missing)} "
                          f"used by the detector")
  primitives_only = lambda x: tuple(jcore.jaxpr_as_fun(closed)(x))
  path = os.path.join(out_dir, FILENAME)
  try:
    with quiet_plugin_import():
      model = to_onnx(primitives_only, [spec], return_mode="proto",
                      model_name="fabgen_detector")
  except Exception as e:  # jax2onnx raises NotImplementedError / ValueError / KeyError
    text = str(e)
    prims = sorted(set(re.findall(r"primitive[s]?\W+'?([a-z_][\w-]*)'?", text, re.I)))
    what = f"unsupported primitive(s) {', '.join(prims)}; " if prims else ""
    raise ConversionError(f"jax2onnx could not convert the detector: {what}"
                          f"{text.strip().splitlines()[0][:300] if text.strip() else type(e).__name__}"
                          ) from e
  # Name the graph outputs after the detector's outputs (jax2onnx numbers them).
  for out, name in zip(model.graph.output, names):
    old = out.name
    out.name = name
    for node in model.graph.node:
      node.output[:] = [name if o == old else o for o in node.output]
  del model.metadata_props[:]
  for key, value in dict(metadata or {}).items():
    entry = model.metadata_props.add()
    entry.key, entry.value = str(key), json.dumps(value)
  tmp = os.path.join(out_dir, f".{FILENAME}.tmp")
  with open(tmp, "wb") as f:
    f.write(model.SerializeToString())
  os.replace(tmp, path)
  return path


def metadata(path: str) -> dict[str, Any]:
  """The metadata_props of the ONNX model at `path`, JSON-decoded (as `export_onnx` wrote them)."""
  import onnx  # pylint: disable=g-import-not-at-top
  model = onnx.load(path, load_external_data=False)
  out = {}
  for entry in model.metadata_props:
    try:
      out[entry.key] = json.loads(entry.value)
    except json.JSONDecodeError:
      out[entry.key] = entry.value
  return out


class OnnxDetector:
  """A loaded ONNX export run by onnxruntime on the CPU, called like `task.predict`."""

  def __init__(self, path: str):
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    try:
      self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's errors name the node and op type
      raise ConversionError(f"onnxruntime could not load {path}: {_node_of(str(e))}") from e
    self.input = self.session.get_inputs()[0].name
    self.outputs = [o.name for o in self.session.get_outputs()]

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    try:
      values = self.session.run(None, {self.input: np.asarray(images, np.uint8)})
    except Exception as e:
      raise ConversionError(f"onnxruntime could not run the detector: {_node_of(str(e))}") from e
    return dict(zip(self.outputs, (np.asarray(v) for v in values)))


def _node_of(message: str) -> str:
  m = re.search(r"running (\w+) node\. Name:'([^']+)'", message)
  first = message.strip().splitlines()[0][:300] if message.strip() else "error"
  return f"unsupported op {m.group(1)} (node {m.group(2)}); {first}" if m else first
