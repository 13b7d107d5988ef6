"""The one generic training loop every fabgen model trains through.

`train(config, workdir)` reads top to bottom, big_vision style: mesh, task and input, state
shapes and shardings, state (restored or created in place), the jitted step, then the loop with
its periodic work (metrics, summaries, checkpoints) and its faults (a preemption signal writes a
checkpoint and returns; a NaN/Inf stops with the step and metric named, never checkpointing the
bad state). A task supplies only what to train (`fabgen.platform.task.Task`).

Determinism: the step's rng is `fold_in(key(seed) split, step)` and the input iterator's position
is checkpointed, so a resumed run computes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Sequence

import grain
import jax
import ml_collections
import numpy as np

from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import config_guard
from fabgen.platform import files
from fabgen.platform import faults
from fabgen.platform import input_report as input_report_lib
from fabgen.platform import mesh as mesh_lib
from fabgen.platform import metrics as metrics_lib
from fabgen.platform import registry
from fabgen.platform import sharding as sharding_lib


def build_step(task, state_shardings, mesh: jax.sharding.Mesh, batch_shardings):
  """`jit(step)` with explicit in/out shardings and the state donated.

  The per-step rng is derived inside from the state's step counter, so the compiled step is a
  pure function of (state, batch, base_rng).
  """
  def step(state, batch, base_rng):
    rng = jax.random.fold_in(base_rng, state["step"])
    return task.train_step(state, batch, rng)

  replicated = sharding_lib.replicated(mesh)
  return jax.jit(step, in_shardings=(state_shardings, batch_shardings, replicated),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)


def batch_shardings(task, mesh, local_batch):
  """One NamedSharding per batch key (leading axis over data x fsdp unless the task says)."""
  axes = task.batch_axes()
  return {k: sharding_lib.batch_sharding(mesh, axes, k) for k in local_batch}


def input_pipeline(task, config):
  """This process's batches; prefetched by a thread so input overlaps the step.

  grain's thread prefetch records, with every element, the parent iterator's state after it,
  so the checkpointed position is that of the last batch *consumed*, not the last one prepared.
  """
  dataset = task.dataset(jax.process_index(), jax.process_count(), config.seed)
  prefetch = config.get("data_prefetch", 0)
  if prefetch > 0 and isinstance(dataset, grain.IterDataset):
    dataset = grain.experimental.ThreadPrefetchIterDataset(dataset, prefetch_buffer_size=prefetch)
  return dataset


def abstract_state(task, config):
  """(init rng, base step rng, abstract state): shapes and dtypes without allocating anything."""
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  abstract = jax.eval_shape(task.init_state, init_rng)
  if not isinstance(abstract, dict) or "step" not in abstract:
    raise ValueError(f"task {config.task!r}: init_state must return a dict with a 'step' leaf")
  return init_rng, step_rng, abstract


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def resolve_config(task, config):
  """(task, config) with what a fresh run resolves from its data (`Task.resolve_config`).

  Each changed key is logged; the resolved config is the one written into config.json and every
  checkpoint, so a run's saved config says what it actually trained (e.g. stage 1's classes).
  """
  resolved = task.resolve_config()
  if resolved is config:
    return task, config
  before, after = _flat(config.to_dict()), _flat(resolved.to_dict())
  for key in sorted(set(before) | set(after)):
    if before.get(key) != after.get(key):
      logging.info("config resolved from the data: %s = %r (was %r)", key, after.get(key),
                   before.get(key))
  return task.with_config(resolved), resolved


def use_compilation_cache(directory: str) -> None:
  """Points JAX's persistent compilation cache at `directory` (every compile is cached)."""
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  if jax.config.jax_compilation_cache_dir == directory:
    return
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  if jax.default_backend() == "cpu":
    # JAX puts a GPU autotune-cache path under `directory` into every program's compile options,
    # so the cache key would change with the directory's path: a moved or copied workdir would
    # recompile everything. The CPU backend has no autotuning, so the option is dropped there.
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
  compilation_cache.set_cache_dir(directory)
  compilation_cache.reset_cache()  # re-read the directory even if JAX already compiled


def _write_config_json(workdir_path, config) -> None:
  """`<workdir>/config.json`, replaced atomically on local disks (no half-written file)."""
  text = config.to_json(indent=2)
  if "://" in str(workdir_path):
    (workdir_path / "config.json").write_text(text)
  else:
    files.write_bytes_atomic(str(workdir_path / "config.json"), text.encode("utf-8"))


def _host_metrics(metrics) -> dict[str, float]:
  host = jax.device_get(metrics)
  return {k: float(np.asarray(v)) for k, v in host.items() if np.asarray(v).size == 1}


def train(config: ml_collections.ConfigDict, workdir: str, *,
          devices: Sequence[jax.Device] | None = None,
          stop: faults.StopSignal | None = None) -> dict[str, Any]:
  """Trains `config.task` to `config.total_steps` in `workdir`; returns the last step's metrics.

  Resumes from the newest checkpoint in `workdir/checkpoints` when there is one. `devices`
  restricts the mesh to a subset (tests restore onto 1 or 4 of 8 devices). The result holds the
  final step's scalar metrics plus `step`, and `stopped_by` when a signal ended the run early.
  """
  workdir_path = checkpoint_lib.resolve(workdir)  # local or remote (gs://)
  workdir_path.mkdir(parents=True, exist_ok=True)
  workdir = str(workdir_path)
  primary = jax.process_index() == 0

  if config.get("compilation_cache_dir"):
    use_compilation_cache(config.compilation_cache_dir)

  # ---- Mesh -------------------------------------------------------------------------------------
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  logging.info("mesh: %s", mesh_lib.describe(mesh))
  n_batch = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.batch_size % n_batch or config.batch_size % jax.process_count():
    raise ValueError(f"config.batch_size={config.batch_size} must be divisible by the data x "
                     f"fsdp mesh axes ({n_batch}) and the process count ({jax.process_count()})")

  # ---- Resume check: the checkpoint's config must be this one (fabgen/platform/config_guard) ---
  ckpt = checkpoint_lib.Checkpointer.from_config(workdir, config)
  start = ckpt.latest_step()
  if start is not None:
    try:
      allowed = config_guard.check_resume(ckpt.config(start), config,
                                          f"checkpoint {start} in {ckpt.directory}")
    except config_guard.ConfigMismatchError:
      ckpt.close()
      raise
    if allowed:
      logging.warning("resuming with allowed config changes: %s", "; ".join(allowed))

  # ---- Task and input ---------------------------------------------------------------------------
  task = registry.build_task(config)
  data_iter = iter(input_pipeline(task, config))

  # ---- State shapes and shardings ---------------------------------------------------------------
  init_rng, step_rng, abstract = abstract_state(task, config)
  state_shardings = sharding_lib.state_shardings(abstract, mesh, config)

  # ---- State: restored, or created in place -----------------------------------------------------
  if start is not None:
    target = sharding_lib.with_shardings(abstract, state_shardings)
    state, data_iter = ckpt.restore(target, data_iter, start)
    logging.info("resumed from step %d in %s", start, ckpt.directory)
  else:
    start = 0
    task, config = resolve_config(task, config)
    with jax.set_mesh(mesh):
      state = task.warm_start(jax.jit(task.init_state, out_shardings=state_shardings)(init_rng))
  if primary:  # the config this run trains under, fresh or resumed (never a stale one)
    _write_config_json(workdir_path, config)
  saved_step = int(jax.device_get(state["step"]))
  if saved_step != start:
    raise ValueError(f"checkpoint {start} in {ckpt.directory} holds state step {saved_step}")

  writer = metrics_lib.create_writer(workdir)
  if start == 0:
    metrics_lib.log_parameter_overview(task.param_count_tree(state), writer)
  # What the input skipped: said at start, in every logged row, and in input_report.json.
  skips = input_report_lib.InputReport(task, workdir, resumed=start > 0, write=primary)
  if any(skips.log_start()[k] for k in ("skipped_at_open", "unreadable")):
    writer.write_scalars(start, skips.scalars())  # a row before the first step says it too
  progress = metrics_lib.Progress(
      workdir, config.total_steps, start, writer,
      every_steps=config.get("progress_every_steps", 0) or config.log_every_steps,
      profile_first_step=config.profile.first_step if "profile" in config else 0,
      profile_num_steps=config.profile.num_steps if "profile" in config else 5)

  # ---- Loop -------------------------------------------------------------------------------------
  step_fn = None
  step = start
  pending = []  # (step, device metrics) not yet checked for NaN: keeps one step in flight
  last = {}
  last_good_ckpt = start if start > 0 else None
  summary_every = config.get("summary_every_steps", 0)
  # Signals are caught only while the loop runs, by a handler installed here unless the caller
  # passes its own StopSignal (already entered, or driven by `request()`).
  signals = contextlib.nullcontext(stop) if stop is not None else faults.StopSignal()

  def check(until_step):
    """Fetches and NaN-checks every pending step's metrics up to `until_step`."""
    nonlocal last
    while pending and pending[0][0] <= until_step:
      s, m = pending.pop(0)
      last = _host_metrics(m)
      bad = faults.first_non_finite(last)
      if bad is not None:
        ckpt.wait()
        raise faults.NonFiniteError(s, bad[0], bad[1], last_good_ckpt, ckpt.directory)

  stopped_by = None
  t0 = time.time()
  try:
    # The mesh is set while steps trace, so tasks may constrain activations by axis name.
    with signals as stop, jax.set_mesh(mesh):
      while step < config.total_steps:
        local = next(data_iter)
        batch = sharding_lib.global_batch(local, mesh, task.batch_axes())
        if step_fn is None:
          step_fn = build_step(task, state_shardings, mesh, batch_shardings(task, mesh, local))
        state, metrics = step_fn(state, batch, step_rng)
        step += 1
        pending.append((step, metrics))
        check(step - 1)

        is_last = step == config.total_steps
        stopping = stop.should_stop()
        log_due = step % config.log_every_steps == 0 or is_last
        ckpt_due = is_last or stopping or step % config.checkpoint.every_steps == 0
        eval_due = ((is_last and summary_every >= 0)
                    or (summary_every > 0 and step % summary_every == 0))
        if log_due or ckpt_due or eval_due:
          check(step)
        if log_due:
          writer.write_scalars(step, {**{f"train/{k}": v for k, v in last.items()},
                                      **skips.update()})
        progress(step, last if log_due else None)
        if eval_due:
          with progress.timed("evaluate"):
            scalars = task.evaluate(state, step, writer, workdir) or {}
          numeric = {k: float(v) for k, v in scalars.items() if np.ndim(v) == 0}
          if numeric:
            writer.write_scalars(step, numeric)
        if ckpt_due:
          with progress.timed("checkpoint"):
            ckpt.save(step, state, data_iter, config)
          last_good_ckpt = step
        if stopping and not is_last:
          stopped_by = stop.signal_name or "signal"
          logging.warning("%s received: checkpoint at step %d written, stopping", stopped_by, step)
          break
      check(step)
  finally:
    ckpt.close()
    skips.save()
    writer.flush()
    writer.close()
    progress.close()
  logging.info("trained steps %d..%d in %.1fs", start, step, time.time() - t0)

  result: dict[str, Any] = dict(last)
  result["step"] = step
  if stopped_by:
    result["stopped_by"] = stopped_by
  return result
