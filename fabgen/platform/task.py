"""The contract between a model family and the training platform.

A `Task` says *what* to train: its state, its pure train step, its input and its periodic
evaluations. The platform (`fabgen.platform.trainer`) says *how*: mesh, shardings, jit with
donation, checkpoints, metrics, faults. A task never builds a mesh, never jits its own step and
never reads a global config: it receives its `ml_collections.ConfigDict` once, in `__init__`.

State is one pytree holding every network (G, D, EMA copies), every optimizer state and the
step counter, so that one checkpoint and one sharding cover a whole GAN.
"""

from __future__ import annotations

import abc
import copy
from typing import Any, Iterator, Mapping

import jax
import ml_collections
import numpy as np

PyTree = Any
Batch = Mapping[str, Any]
Metrics = Mapping[str, jax.Array]


class Task(abc.ABC):
  """One trainable model family (stage-1 GAN, fusion network, detector, ...)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  @abc.abstractmethod
  def init_state(self, rng: jax.Array) -> PyTree:
    """Returns the whole training state as one pytree of arrays.

    Pure and traceable: the platform calls it under `jax.eval_shape` to learn shapes, then under
    `jax.jit(..., out_shardings=...)` so that sharded state is never materialised on one device.
    Must contain an integer scalar leaf at key `"step"`.
    """

  @abc.abstractmethod
  def train_step(self, state: PyTree, batch: Batch, rng: jax.Array) -> tuple[PyTree, Metrics]:
    """One optimisation step; pure. Returns the new state and scalar metrics.

    Every floating metric is checked for NaN/Inf by the platform, so name loss terms clearly
    (`d_loss`, `r1`, `g_loss`, `grad_norm/d`): the name is what a NaN stop reports.
    """

  @abc.abstractmethod
  def dataset(self, process_index: int, process_count: int, seed: int) -> Any:
    """This process's slice of the training input, as a grain `IterDataset`.

    Yields dicts of numpy arrays whose leading dimension is the per-process batch
    (`config.batch_size // process_count`). Its iterator's `get_state`/`set_state` are what
    the checkpoint stores, so a resumed run sees exactly the batches it would have seen.
    """

  def resolve_config(self) -> ml_collections.ConfigDict:
    """This config with the values a fresh run resolves from its data (default: unchanged).

    E.g. stage 1 records the classes its training patches hold in `data.class_ids`. The trainer
    calls it once, before a fresh run's `init_state`, logs every changed key, and writes the
    result into config.json and every checkpoint; a task changes its config nowhere else. Must
    return a new ConfigDict (or `self.config` when nothing changes), never edit `self.config`.
    """
    return self.config

  def with_config(self, config: ml_collections.ConfigDict) -> "Task":
    """This task with `config` (from `resolve_config`), keeping what it already built (input)."""
    task = copy.copy(self)
    task.config = config
    return task

  def warm_start(self, state: PyTree) -> PyTree:
    """The state a fresh (not resumed) run starts from, given `jit(init_state)`'s output.

    Fine-tunes load trained weights here, and anything read from data (a mask bank) is filled
    in here, rather than in `init_state`: `init_state` allocates, data-free, so that a checkpoint
    restores into a freshly built task without reading its data, and weights baked into it would
    become constants of its program (a new compile and cache entry every run).
    Must keep every leaf's shape, dtype and sharding. Default: the state unchanged.
    """
    return state

  def abstract_batch(self) -> Mapping[str, jax.ShapeDtypeStruct]:
    """The global batch's shapes and dtypes (`config.batch_size` rows), without reading data.

    What `fabgen compile` and the benchmarks compile against: a pod-sized compile must not first
    build a training set (stage 1 renders thousands of FabricSim frames and their VGG features).
    Every production task overrides this with shapes computed from its config; a test checks
    each against its real first batch. This default reads one batch (slow, but always right).
    """
    batch = next(iter(self.dataset(0, 1, self.config.seed)))
    return {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype) for k, v in batch.items()}

  def batch_axes(self) -> Mapping[str, Any]:
    """Logical axes of batch entries; the default shards the leading axis over data parallelism."""
    return {}

  def evaluate(self, state: PyTree, step: int, writer: Any, workdir: str) -> Mapping[str, Any]:
    """Periodic evaluation and summaries (sample grids, KID, F-measure). Host-side; optional."""
    del state, step, writer, workdir
    return {}

  def input_report(self) -> Mapping[str, Any]:
    """What this task's input skipped so far (`fabgen.data.readers.skips.report` of its sources).

    Tasks that read files return it (default: nothing skipped, e.g. procedural input); the
    trainer logs it at start and writes it into every logged row and `input_report.json`
    (`fabgen.platform.input_report`). Host-side; called after `dataset`.
    """
    return {}

  def param_count_tree(self, state: PyTree) -> PyTree:
    """The part of the state whose parameter overview is logged at start (default: all)."""
    return state


def batch_spec(**entries: tuple[tuple[int, ...], Any]) -> dict[str, jax.ShapeDtypeStruct]:
  """`batch_spec(image=((b, s, s, 3), np.uint8))` -> {"image": ShapeDtypeStruct(...)}."""
  return {k: jax.ShapeDtypeStruct(tuple(int(d) for d in shape), np.dtype(dtype))
          for k, (shape, dtype) in entries.items()}


def infinite(it: Iterator) -> Iterator:
  """Helper for tasks whose datasets are finite: cycles forever."""
  while True:
    yield from it
