"""Checkpoints: the state, the input iterator's position and the config, together, via orbax.

One orbax `CheckpointManager` under `<workdir>/checkpoints` writes three items per step:
`state` (orbax StandardSave: sharded arrays, each host writing its shards, asynchronously),
`data` (grain's own handler: one JSON iterator state per process) and `config` (JSON). Restoring
takes an abstract target that carries the *current* mesh's shardings, so a run saved on 8
devices continues on 1 or 4, and the iterator resumes at the exact next batch. `restore` is the
one function that loads a trained task (config, task, state) for inference, synthesis,
fine-tuning and tests.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from fabgen.platform import registry
from fabgen.platform import sharding as sharding_lib

CHECKPOINT_DIR = "checkpoints"


def resolve(workdir: str) -> epath.Path:
  """A local workdir made absolute; a remote one (gs://...) as given."""
  return epath.Path(workdir if "://" in str(workdir) else os.path.abspath(workdir))


class Checkpointer:
  """Keep-N, optionally async orbax checkpoints of (state, data iterator, config)."""

  def __init__(self, workdir: str, every_steps: int, keep: int, asynchronous: bool = True):
    self.directory = str(resolve(workdir) / CHECKPOINT_DIR)
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=every_steps, max_to_keep=keep,
        enable_async_checkpointing=asynchronous, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  @classmethod
  def from_config(cls, workdir: str, config: ml_collections.ConfigDict) -> "Checkpointer":
    c = config.checkpoint
    return cls(workdir, c.every_steps, c.keep, c.get("asynchronous", True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iterator: Any, config: ml_collections.ConfigDict,
           force: bool = True) -> bool:
    """Saves `step` (the trainer decides when); the iterator must be positioned after `step`."""
    items = {"state": ocp.args.StandardSave(state),
             "config": ocp.args.JsonSave(json.loads(config.to_json()))}
    if data_iterator is not None and hasattr(data_iterator, "get_state"):
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, abstract_state: Any, data_iterator: Any = None, step: int | None = None):
    """(state, iterator) at `step` (default latest), state laid out as `abstract_state` says."""
    step = self.manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    restore_data = (data_iterator is not None and hasattr(data_iterator, "set_state")
                    and self._has_data_state(step))
    if restore_data:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], (restored["data"] if restore_data else data_iterator)

  def _has_data_state(self, step: int) -> bool:
    """Whether `step` holds this process's iterator state (same process count as when saved).

    The state arrays reshard onto any mesh, but an input position is per process: restored on
    another number of processes, the run keeps the weights and restarts the input order.
    """
    data_dir = epath.Path(self.directory) / str(step) / "data"
    if not data_dir.is_dir():
      return False
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if (data_dir / name).exists():
      return True
    logging.warning("checkpoint %d in %s was written by another number of processes (%s); the "
                    "state is restored, the input iterator restarts from its beginning",
                    step, self.directory, sorted(p.name for p in data_dir.iterdir()))
    return False

  def config(self, step: int | None = None) -> ml_collections.ConfigDict:
    """The config saved with `step` (default latest)."""
    step = self.manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return ml_collections.ConfigDict(restored["config"])

  def wait(self):
    """Blocks until async saves are on disk (before exiting or reading them back)."""
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def _split_step_dir(path: str) -> tuple[str, int | None]:
  """`<workdir>/checkpoints/<step>` -> (workdir, step); any other path -> (path, None)."""
  parent, name = os.path.split(os.path.abspath(path))
  if name.isdigit() and os.path.basename(parent) == CHECKPOINT_DIR:
    return os.path.dirname(parent), int(name)
  return path, None


def restore(path: str, step: int | None = None, *, expect: str | None = None,
            mesh: jax.sharding.Mesh | None = None):
  """(config, task, state) of a trained task: the one way anything restores a checkpoint.

  `path` is a training workdir or one of its `checkpoints/<step>` folders; `step` defaults to
  that folder's, else the newest. The task is rebuilt from the config saved with the step (by
  `registry.build_task`) and the state's structure and shapes come from
  `jax.eval_shape(task.init_state)`, which is data-free by the Task contract: nothing but the
  checkpoint is read, and a checkpoint of another structure fails in orbax instead of loading.
  The state lands on the first local device, or on `mesh` laid out by the config's sharding
  rules. `expect` is the task name the caller needs (e.g. "fusion"); another is a ValueError.
  """
  workdir, folder_step = _split_step_dir(path)
  step = folder_step if step is None else step
  directory = resolve(workdir) / CHECKPOINT_DIR
  if not directory.is_dir():
    raise FileNotFoundError(f"{path!r} is not a training workdir (no {directory})")
  ckpt = Checkpointer(workdir, every_steps=1, keep=1_000_000, asynchronous=False)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"workdir {workdir!r} has no finished checkpoint in {directory}")
    config = ckpt.config(step)
    if expect is not None and config.get("task") != expect:
      raise ValueError(f"checkpoint {path!r} holds a {config.get('task')!r} model, but a "
                       f"{expect!r} one is needed")
    task = registry.build_task(config)
    abstract = jax.eval_shape(task.init_state, jax.random.key(config.get("seed", 0)))
    if mesh is None:
      device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            abstract)
    else:
      target = sharding_lib.with_shardings(
          abstract, sharding_lib.state_shardings(abstract, mesh, config))
    state, _ = ckpt.restore(target, None, step)
    logging.info("restored %s step %d from %s", config.task, step, directory)
    return config, task, state
  finally:
    ckpt.close()


def write(workdir: str, config: ml_collections.ConfigDict, state) -> str:
  """Saves `state` (and `config`) as a checkpoint of `workdir` at its step, synchronously.

  For states trained outside the trainer (tests, notebooks): `restore` reads it like any run's.
  """
  ckpt = Checkpointer(workdir, every_steps=1, keep=1_000_000, asynchronous=False)
  try:
    ckpt.save(int(jax.device_get(state["step"])), state, None, config)
    ckpt.wait()
  finally:
    ckpt.close()
  return str(resolve(workdir))
