"""Faults a long run must survive: preemption signals and non-finite losses.

SIGTERM/SIGINT (a scheduler's preemption, a Ctrl-C) only set a flag here; the trainer checks it
between steps, writes a checkpoint and returns, so nothing is written from inside a signal
handler. On several processes the flag is agreed on (any process stopping stops all), because
a checkpoint save is collective.

A NaN or Inf in any floating metric (losses, gradient norms) raises `NonFiniteError` naming
the step and the metric key. The trainer checks every step's metrics before the state of that
step may be checkpointed, so the bad state is never saved and the last good checkpoint stays.
"""

from __future__ import annotations

import signal
import threading
from typing import Mapping

import jax
import numpy as np


class NonFiniteError(FloatingPointError):
  """A metric became NaN/Inf; `step` and `key` say where."""

  def __init__(self, step: int, key: str, value: float, last_checkpoint: int | None,
               directory: str):
    self.step, self.key, self.value = step, key, value
    kept = (f"the last good checkpoint (step {last_checkpoint}) is kept in {directory}"
            if last_checkpoint is not None else "no checkpoint had been written yet")
    super().__init__(f"step {step}: metric {key!r} is {value} (non-finite); training stopped, "
                     f"{kept}")


def first_non_finite(metrics: Mapping[str, float]) -> tuple[str, float] | None:
  """(key, value) of the first non-finite floating metric, in sorted key order, or None."""
  for key in sorted(metrics):
    value = np.asarray(metrics[key])
    if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
      return key, float(value.reshape(-1)[~np.isfinite(value.reshape(-1))][0])
  return None


class StopSignal:
  """Context manager: while active, SIGTERM/SIGINT request a clean stop instead of killing."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self._requested = threading.Event()
    self._previous = {}
    self.signal_name = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()
    return False

  def _handle(self, signum, frame):
    del frame
    if self._requested.is_set() and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C aborts without waiting for the checkpoint
    self.signal_name = signal.Signals(signum).name
    self._requested.set()

  def request(self, name: str = "request"):
    """Asks for a stop as a signal would (tests, notebooks)."""
    self.signal_name = name
    self._requested.set()

  def should_stop(self) -> bool:
    """True on every process when any process got a signal (collective when multi-process)."""
    local = self._requested.is_set()
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(np.asarray(int(local), np.int32))
    return bool(np.max(flags))


