"""What training does with a file that only a full decode finds broken, and what it reports.

Opening a source skips, with a reason, every file that indexing can tell is bad (`src.skipped`).
A file that passes indexing but fails to decode (truncated pixel data, a mask with an unknown
label) is found only when it is read. `data.on_unreadable` (in every training config) says what
then happens:

  "skip"  (default) the record is left out (an up-front read, `read_records`) or replaced by the
          next readable one (streaming input, `Source.get_batch_skipping`), and counted in
          `src.read_failures` (path -> reason). The replacement is a function of the index, so a
          resumed run reads what an uninterrupted one did, and one bad file in thousands no
          longer kills a run at the same step on every resume.
  "error" the first unreadable file stops the run with a `ReadError` naming it and the key.

Either way nothing goes unsaid: `report(sources)` counts both kinds of skip and names the first
few files, which the trainer logs at start and writes into the run's metrics
(`fabgen.platform.input_report`).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

from fabgen.data.readers.base import Source
from fabgen.data.readers.images import ReadError

ON_UNREADABLE = ("skip", "error")
KEY = "data.on_unreadable"


def policy(config) -> str:
  """`config.data.on_unreadable` ("skip" when absent), checked; the error names the key."""
  data = config.get("data") if hasattr(config, "get") else None
  value = data.get("on_unreadable", "skip") if data is not None else "skip"
  if value not in ON_UNREADABLE:
    raise ValueError(f"config.{KEY}={value!r}: expected one of {ON_UNREADABLE}")
  return value


def skip_broken(config) -> bool:
  """True when the config's policy is "skip" (what `pipeline.make_dataset` takes)."""
  return policy(config) == "skip"


def failures(src: Source) -> dict[str, str]:
  """The source's unreadable files so far, path -> reason (created empty on first use)."""
  return src.__dict__.setdefault("read_failures", {})


def read_records(src: Source, indices: Iterable[int], on_unreadable: str = "skip"):
  """Yields `src[i]` for each index; an unreadable one is skipped and counted, or fatal.

  For tasks that read their examples up front (stage 1, fusion, inpainter): a skipped record is
  simply left out (the examples are built once, so there is no step to keep aligned).
  """
  return (record for _, record in read_indexed(src, indices, on_unreadable))


def read_indexed(src: Source, indices: Iterable[int], on_unreadable: str = "skip"):
  """`read_records`, yielding `(index, record)` so callers know which indices were kept."""
  if on_unreadable not in ON_UNREADABLE:
    raise ValueError(f"{KEY}={on_unreadable!r}: expected one of {ON_UNREADABLE}")
  seen = failures(src)
  for i in indices:
    try:
      record = src[i]
    except ReadError as e:
      if on_unreadable == "error":
        raise ReadError(e.path, f"{e.reason} (fatal because {KEY}='error'; 'skip' leaves "
                                f"it out and reports it)") from e
      if e.path not in seen:
        seen[e.path] = e.reason
        logging.warning("%s: skipping unreadable sample %d (%s: %s); %d skipped so far",
                        src.name, int(i), e.path, e.reason, len(seen))
      continue
    yield int(i), record


def report(sources: Sequence[Any], first: int = 5) -> dict[str, Any]:
  """What `sources` skipped: counts and the first `first` files with their reasons.

  {"skipped_at_open": n, "unreadable": m, "files": [[path, reason], ...], "unreadable_files":
  {path: reason}, "sources": [names]}: `skipped_at_open` are the files indexing refused,
  `unreadable` the ones a read found broken so far (with their full list, for the run report).
  """
  # Anything a caller set in place of a source (a list of records in a notebook) has no files.
  opened = [s for s in sources if isinstance(s, Source)]
  at_open = [(p, r) for s in opened for p, r in s.skipped]
  unreadable = {p: r for s in opened for p, r in failures(s).items()}
  shown = (at_open + list(unreadable.items()))[:first]
  return {"skipped_at_open": len(at_open), "unreadable": len(unreadable),
          "files": [list(x) for x in shown], "unreadable_files": dict(unreadable),
          "sources": [s.name for s in opened]}
