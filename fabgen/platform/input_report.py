"""A training run says what its input skipped: at start, in its metrics, and in a report file.

A task that reads files returns `Task.input_report()` (built by `fabgen.data.readers.skips.report`):
counts of files skipped when the source was opened and of files a read found unreadable, and
the first few with their reasons. The trainer turns it into

  * a warning at start (count + first files), before the first step;
  * scalars `data/skipped_at_open` and `data/unreadable` in every logged row (metrics.jsonl,
    TensorBoard), so a plot of a run shows when its input started losing files;
  * `<workdir>/input_report.json`: the counts, the first files and every unreadable file with its
    reason, rewritten at each log step and at the end. A resumed run starts from the saved list,
    so files found unreadable before an interruption stay counted.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping

from fabgen.platform import files

FILENAME = "input_report.json"


class InputReport:
  """Tracks one run's input skips (see the module docstring); host-side, first process writes."""

  def __init__(self, task, workdir: str, resumed: bool, write: bool = True):
    self.task, self.workdir, self.write_files = task, workdir, write
    self.path = os.path.join(workdir, FILENAME)
    self.earlier: dict[str, str] = {}
    if resumed and "://" not in workdir and os.path.isfile(self.path):
      with open(self.path, encoding="utf-8") as f:
        self.earlier = dict(json.load(f).get("unreadable_files", {}))
    self.logged_unreadable = len(self.earlier)

  def current(self) -> dict[str, Any]:
    """The task's report merged with the unreadable files an earlier run of this workdir saw."""
    now: Mapping[str, Any] = self.task.input_report() or {}
    unreadable = {**self.earlier, **dict(now.get("unreadable_files", {}))}
    return {"skipped_at_open": int(now.get("skipped_at_open", 0)),
            "unreadable": len(unreadable), "files": list(now.get("files", [])),
            "unreadable_files": unreadable, "sources": list(now.get("sources", []))}

  def scalars(self) -> dict[str, float]:
    r = self.current()
    return {"data/skipped_at_open": float(r["skipped_at_open"]),
            "data/unreadable": float(r["unreadable"])}

  def log_start(self) -> dict[str, Any]:
    """Warns with counts and the first files when anything was skipped; writes the report."""
    r = self.current()
    if r["skipped_at_open"] or r["unreadable"]:
      shown = "; ".join(f"{p}: {why}" for p, why in r["files"])
      logging.warning("input %s: %d files skipped when opened, %d unreadable so far%s",
                      "+".join(r["sources"]) or "?", r["skipped_at_open"], r["unreadable"],
                      f": {shown}" if shown else "")
    self.save(r)
    return r

  def update(self) -> dict[str, float]:
    """Scalars for this log step; warns once per newly unreadable file batch and saves."""
    r = self.current()
    if r["unreadable"] > self.logged_unreadable:
      new = list(r["unreadable_files"].items())[self.logged_unreadable:]
      logging.warning("input: %d more unreadable files skipped (%d in all): %s", len(new),
                      r["unreadable"], "; ".join(f"{p}: {why}" for p, why in new[:5]))
      self.logged_unreadable = r["unreadable"]
      self.save(r)
    return {"data/skipped_at_open": float(r["skipped_at_open"]),
            "data/unreadable": float(r["unreadable"])}

  def save(self, r: Mapping[str, Any] | None = None) -> None:
    if not self.write_files or "://" in self.workdir:
      return
    r = self.current() if r is None else r
    files.write_bytes_atomic(self.path, json.dumps(r, indent=2, ensure_ascii=False).encode(
        "utf-8"))
