"""grain read options from a training config: how many threads read input, how far ahead.

Every task's `dataset` ends in `to_iter_dataset(config_read_options(config))`; the keys are the
platform's (`data_threads`, `data_buffer` in `fabgen.platform.config.base_config`).
"""

from __future__ import annotations

import os

import grain


def read_options(threads: int = 0, buffer: int = 0) -> grain.ReadOptions:
  """grain read options with a bounded read-ahead (config keys data_threads / data_buffer).

  threads: reader threads, 0 = min(CPU count, 8); buffer: elements (batches) read ahead,
  0 = 2 x threads. Enough to hide input behind the step, never more work than it can use.
  """
  if threads < 0 or buffer < 0:
    raise ValueError(f"data_threads={threads}, data_buffer={buffer}: must be >= 0 (0 = auto)")
  threads = threads or min(os.cpu_count() or 1, 8)
  return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=buffer or 2 * threads)


def config_read_options(config) -> grain.ReadOptions:
  """`read_options` from a training config's data_threads / data_buffer (absent = auto)."""
  return read_options(int(config.get("data_threads", 0)), int(config.get("data_buffer", 0)))
