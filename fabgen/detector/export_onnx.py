"""The detector as an ONNX model, through jax2onnx; run by onnxruntime.

jax2onnx translates a traced JAX program primitive by primitive into ONNX operators. We trace
the detector to a jaxpr first and hand jax2onnx that (a function of primitives only), so its
patches of high-level Flax calls (`nnx.max_pool` and friends, which do not match the Flax this
project pins) never enter. A primitive jax2onnx has no plugin for is a `ConversionError` naming
it; a model onnxruntime refuses to load or run is one naming the ONNX node; and the export's
parity check (`fabgen.detector.export`) compares the ONNX outputs with the training code's, so a
model that converts but computes something else is never written as if it were the detector.

The batch is fixed (as for the SavedModel); `load` wraps the session so any batch works.
Layout: <out>/detector.onnx and <out>/detector.json.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Sequence

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


def export_onnx(fn: Callable, out_dir: str, height: int, width: int, batch: int,
                output_names: Sequence[str]) -> str:
  """Converts `fn` (uint8 [batch, H, W, 3] -> dict with `output_names`) to <out>/detector.onnx."""
  why = available()
  if why:
    raise ConversionError(why)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax.extend import core as jcore  # pylint: disable=g-import-not-at-top
  from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  names = list(output_names)
  spec = jax.ShapeDtypeStruct((int(batch), int(height), int(width), 3), jnp.uint8)
  closed = jax.make_jaxpr(lambda x: tuple(fn(x)[k] for k in names))(spec)
  primitives_only = lambda x: tuple(jcore.jaxpr_as_fun(closed)(x))
  path = os.path.join(out_dir, FILENAME)
  try:
    model = to_onnx(primitives_only, [spec], return_mode="proto", model_name="fabgen_detector")
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
  tmp = os.path.join(out_dir, f".{FILENAME}.tmp")
  with open(tmp, "wb") as f:
    f.write(model.SerializeToString())
  os.replace(tmp, path)
  return path


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
