"""Small file helpers every output path shares: atomic UTF-8 JSON, and paths safe to print.

Why: a JSON file written in place is half a file after a crash (and a later reader fails or,
worse, reads a truncated list as complete); a path with non-UTF-8 bytes (a Linux file name
from another locale arrives as surrogate escapes) raises `UnicodeEncodeError` when printed.
"""

from __future__ import annotations

import json
import os
from typing import Any


def printable(path) -> str:
  """`path` as text that any UTF-8 terminal or log accepts (undecodable bytes as \\xNN)."""
  if isinstance(path, bytes):
    return path.decode("utf-8", "backslashreplace")
  return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes `data` under a temporary name in the same folder, fsyncs, then renames over `path`."""
  folder = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.lexists(tmp):
      os.unlink(tmp)


def write_json_atomic(path: str, obj: Any, **dump_kwargs) -> None:
  """JSON as UTF-8, atomically (a reader sees the old file or the new one, never a part)."""
  write_bytes_atomic(path, json.dumps(obj, **dump_kwargs).encode("utf-8"))


def read_json(path: str) -> Any:
  """JSON read as UTF-8 whatever the locale (what `write_json_atomic` writes)."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)
