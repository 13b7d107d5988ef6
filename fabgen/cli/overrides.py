"""`--config.a.b=value` overrides, peeled off a command line before argparse sees it.

The override keys are open-ended (any field of any config), which argparse cannot declare, so
`fabgen` splits them off first and hands them to the command as `args.overrides`.
"""

from __future__ import annotations

PREFIX = "--config."


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """(other args, ["a.b=value", ...]) from argv holding `--config.a.b=v` / `--config.a.b v`."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(PREFIX):
      key = arg[len(PREFIX):]
      if "=" in key:
        overrides.append(key)
      else:
        if i + 1 >= len(argv):
          raise SystemExit(f"fabgen: {arg} needs a value")
        overrides.append(f"{key}={argv[i + 1]}")
        i += 1
    else:
      rest.append(arg)
    i += 1
  return rest, overrides
