"""Where a run's numbers go: TensorBoard, a JSONL file, the log, and a progress bar.

clu does the work: `create_default_writer` (TensorBoard event files + log lines, only on the
first process), `ReportProgress` (steps/s and ETA), `Profile` (a trace of a few steps) and
`parameter_overview` (a table of every parameter at start); `touch <workdir>/PROFILE` traces a
few steps of a running job (`OnDemandProfile`). A small `JsonlWriter` adds one JSON
line per logged step, `<workdir>/metrics.jsonl`, so scripts and tests read scalars without a
TensorBoard parser; a resumed run appends to it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Mapping

import jax
import numpy as np
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions


class JsonlWriter(metric_writers.MetricWriter):
  """Scalars as `{"step": s, "key": value, ...}` lines; everything else is ignored."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # Line-buffered: every row is on disk when written (tail -f, a crash loses nothing).
    self._file = open(path, "a", buffering=1, encoding="utf-8")  # pylint: disable=consider-using-with

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    row = {"step": int(step)}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._file.write(json.dumps(row) + "\n")

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    self._file.flush()

  def close(self):
    if not self._file.closed:
      self._file.close()


def quiet_logs(scalars: bool = True) -> None:
  """Console logging for CLI runs: warnings, clu's progress notes (steps/s, % done, ETA, which
  non-TTY logs need) and, with `scalars`, clu's per-step scalar lines; not orbax's per-save
  chatter nor clu's echo of texts and images (the parameter table is logged once at start).
  Call after importing TensorFlow, which resets absl's level."""
  def keep(record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return True
    if "/clu/" not in record.pathname:
      return False
    if "logging_writer" in record.pathname:
      return scalars and " Got " not in str(record.msg) and "Hyperparameters" not in str(record.msg)
    return True

  absl_logger = logging.getLogger("absl")
  absl_logger.setLevel(logging.INFO)
  absl_logger.addFilter(keep)
  logging.getLogger("jax").setLevel(logging.WARNING)


def read_jsonl(path: str) -> list[dict[str, float]]:
  """The rows a `JsonlWriter` wrote (for tests and scripts)."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard + log + metrics.jsonl on process 0; log-only elsewhere."""
  primary = jax.process_index() == 0
  default = metric_writers.create_default_writer(workdir, just_logging=not primary,
                                                 asynchronous=True)
  if not primary or "://" in workdir:  # metrics.jsonl appends to a local file only
    return default
  return metric_writers.MultiWriter([default, JsonlWriter(os.path.join(workdir,
                                                                       "metrics.jsonl"))])


def log_parameter_overview(tree, writer: metric_writers.MetricWriter | None = None) -> str:
  """Logs the per-parameter table (shapes, sizes; stats only when the arrays are addressable)."""
  addressable = all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(tree))
  host = jax.device_get(tree) if addressable else jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  text = parameter_overview.get_parameter_overview(
      _to_nested_dict(host), include_stats=addressable)
  logging.info("parameter overview:\n%s", text)
  if writer is not None and jax.process_index() == 0:
    writer.write_texts(0, {"parameter_overview": f"```\n{text}\n```"})
  return text


def _to_nested_dict(tree):
  """Pure dicts/lists of arrays -> nested str-keyed dicts (what parameter_overview expects)."""
  if isinstance(tree, Mapping):
    return {str(k): _to_nested_dict(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return {str(i): _to_nested_dict(v) for i, v in enumerate(tree)}
  if hasattr(tree, "_asdict"):
    return _to_nested_dict(tree._asdict())
  if hasattr(tree, "shape"):
    return tree
  return {"value": np.asarray(tree)}


class OnDemandProfile:
  """`touch <workdir>/PROFILE` while a run is going: the next steps are traced, then it is removed.

  For the slow phase nobody predicted: no restart and no config change. The trace lands in
  `<workdir>/plugins/profile/` (TensorBoard's profile tab), as a scheduled `Profile` does.
  """

  def __init__(self, workdir: str, num_steps: int = 5):
    self.workdir, self.num_steps = workdir, num_steps
    self.flag = os.path.join(workdir, "PROFILE")
    self.stop_at = None

  def __call__(self, step: int):
    if self.stop_at is not None:
      if step >= self.stop_at:
        jax.profiler.stop_trace()
        logging.info("on-demand profile of steps %d..%d written to %s",
                     self.stop_at - self.num_steps, step, self.workdir)
        self.stop_at = None
    elif os.path.exists(self.flag):
      os.remove(self.flag)
      jax.profiler.start_trace(self.workdir)
      self.stop_at = step + self.num_steps

  def close(self):
    if self.stop_at is not None:
      jax.profiler.stop_trace()
      self.stop_at = None


class Progress:
  """Periodic actions of the loop: ReportProgress, an optional Profile, a tqdm bar on a TTY."""

  def __init__(self, workdir: str, total_steps: int, start_step: int, writer,
               every_steps: int, profile_first_step: int = 0, profile_num_steps: int = 5,
               show_bar: bool | None = None):
    self.report = periodic_actions.ReportProgress(
        num_train_steps=total_steps, writer=writer, every_steps=every_steps, every_secs=None)
    self.actions = [self.report]
    if profile_first_step > 0 and jax.process_index() == 0:
      self.actions.append(periodic_actions.Profile(
          logdir=workdir, num_profile_steps=profile_num_steps, first_profile=profile_first_step,
          every_steps=None, every_secs=None))
    self.on_demand = OnDemandProfile(workdir, profile_num_steps)
    show_bar = sys.stderr.isatty() if show_bar is None else show_bar
    self.bar = None
    if show_bar and jax.process_index() == 0:
      import tqdm  # pylint: disable=g-import-not-at-top
      self.bar = tqdm.tqdm(total=total_steps, initial=start_step, dynamic_ncols=True,
                           unit="step")

  def timed(self, name: str):
    """Context manager that ReportProgress counts as time spent on `name` (eval, checkpoint)."""
    return self.report.timed(name, wait_jax_async_dispatch=False)

  def __call__(self, step: int, metrics: Mapping[str, float] | None = None):
    for action in self.actions:
      action(step)
    self.on_demand(step)
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      if metrics:
        shown = {k: f"{v:.4g}" for k, v in list(metrics.items())[:4]}
        self.bar.set_postfix(shown, refresh=False)

  def close(self):
    self.on_demand.close()
    if self.bar is not None:
      self.bar.close()
