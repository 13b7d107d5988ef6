"""The one interface every synthesis method implements, and the name -> method registry.

`fabgen synthesize --method M` must not care whether M is the two-stage GAN, a naive cut-paste,
a single R3GAN inpainter or (later) a diffusion model: the streaming writer (`stream.py`) batches,
shards and jits any `Synthesizer` the same way. To make that possible a method is split in two:

* host side, once: `from_checkpoint(path)` loads whatever it needs (networks, a crop bank, a mask
  bank) into `self.state`, a pytree of arrays, and declares what it can do (`class_ids`,
  `patch_size`);
* device side, per batch: `apply(state, backgrounds, class_ids, offsets, keys)`, a pure function
  of arrays that the writer jits with explicit shardings (state replicated, batch split over
  devices). Per-sample keys (not one batch key) make sample `i` independent of how samples are
  batched, which is what lets an interrupted run resume to exactly the uninterrupted result.

Registry entries are import paths resolved on use, so a method with heavy dependencies costs
nothing until it is chosen, and later methods plug in with `register`.
"""

from __future__ import annotations

import abc
import importlib
from typing import Any, Mapping

import jax

from fabgen.platform import checkpoint as checkpoint_lib

PyTree = Any


class SynthesisError(ValueError):
  """Bad input to synthesis (checkpoint, backgrounds, classes): the message names the culprit."""


class Synthesizer(abc.ABC):
  """A trained defect generator that paints defects into defect-free backgrounds.

  Attributes:
    name: the registry name of the method.
    class_ids: global class ids (`fabgen.data.classes`) the method can generate.
    patch_size: side of the square window the defect is painted into; backgrounds must be at
      least this large.
    state: pytree of arrays `apply` needs (network weights, crop banks); replicated on devices.
  """

  name: str = ""
  class_ids: tuple[int, ...] = ()
  patch_size: int = 0
  state: PyTree = None
  # Labelled sources the method read its banks from (cut-paste crops, real box sizes): what they
  # skipped goes into the set's manifest (`skips.report`), never only into a log line.
  input_sources: tuple = ()

  @classmethod
  @abc.abstractmethod
  def from_checkpoint(cls, checkpoint: str, **options) -> "Synthesizer":
    """Loads a trained method; raises `SynthesisError` naming the path when it is the wrong kind."""

  @abc.abstractmethod
  def apply(self, state: PyTree, backgrounds: jax.Array, class_ids: jax.Array, offsets: jax.Array,
            keys: jax.Array) -> jax.Array:
    """Paints one defect per background; pure and jittable.

    It may close over static structure (an NNX graphdef, sizes) but must take every array
    through `state`, so that jit does not bake weights into the compiled program.

    Args:
      state: `self.state`.
      backgrounds: uint8 [B, H, W, 3] defect-free images.
      class_ids: int32 [B] global class id of the defect to paint.
      offsets: int32 [B, 2] (y0, x0) of the top-left corner of the `patch_size` window.
      keys: [B] typed PRNG keys, one per sample.

    Returns:
      uint8 [B, H, W, 3] images. Labels are not returned: they are defined as the pixels that
      changed (see `fabgen.synthesis.labelling.label_change`), so they are exact by construction.
    """

  def static_options(self) -> Mapping[str, Any]:
    """Hashable facts about the method recorded in the manifest (checked on resume)."""
    return {"method": self.name, "class_ids": list(self.class_ids),
            "patch_size": int(self.patch_size)}


SYNTHESIZERS: dict[str, str] = {
    "multistage": "fabgen.synthesis.multistage:MultistageSynthesizer",
    "cutpaste": "fabgen.synthesis.cutpaste:CutPasteSynthesizer",
    "inpainter": "fabgen.synthesis.inpainter:InpainterSynthesizer",
    "defectfill": "fabgen.synthesis.defectfill:DefectFillSynthesizer",
    "dgt": "fabgen.synthesis.dgt:DGTSynthesizer",
    # Later methods add one line here (or call `register`) with the same interface.
}


def restore_trained(directory: str, expect: str):
  """(task, state) of the `expect` task trained in `directory` (`fabgen.platform.checkpoint`),
  any failure as a `SynthesisError` naming the directory."""
  try:
    _, task, state = checkpoint_lib.restore(directory, expect=expect)
  except Exception as e:  # orbax / config errors: keep their message, name the directory
    raise SynthesisError(f"cannot restore a trained {expect!r} model from {directory!r}: {e}"
                         ) from e
  return task, state


def register(name: str, import_path: str) -> None:
  """Adds a method `name` implemented by the class at `module:Class`."""
  if ":" not in import_path:
    raise ValueError(f"import path must look like 'package.module:Class', got {import_path!r}")
  SYNTHESIZERS[name] = import_path


def get_synthesizer_class(name: str) -> type[Synthesizer]:
  """The Synthesizer class registered as `name`, with an error listing the known methods."""
  try:
    path = SYNTHESIZERS[name]
  except KeyError:
    raise SynthesisError(
        f"unknown synthesis method {name!r}; known: {', '.join(sorted(SYNTHESIZERS))}") from None
  module_name, attr = path.split(":")
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    raise SynthesisError(f"synthesis method {name!r} is registered as {path} but that module is "
                         f"not available ({e})") from e
  return getattr(module, attr)


def load(method: str, checkpoint: str, **options) -> Synthesizer:
  """Loads a trained synthesizer of kind `method` from `checkpoint`."""
  return get_synthesizer_class(method).from_checkpoint(checkpoint, **options)
