"""Every command the docs show must work as written (issue 15, point 7).

Commands are extracted from README.md, fabgen/platform/README.md, the docstrings of configs/*.py
and fabgen/cli/*.py, and the usage lines of launch/*. Each `fabgen ...` command is parsed by its
own sub-command parser (no `--help`, nothing runs), its `--config` spec and variant load with its
`--config.*` overrides applied, and every repository file it names exists. Launch scripts must be
called the way their usage lines say; `python -m module` must name an importable module;
`launch/sweep.py` prints its grid (its own dry run). Placeholders (DIR, SRC, N, ...) are filled
with harmless values. About 10 s: config files are imported, no model is built.
"""

import argparse
import ast
import glob
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

from fabgen.cli import main as cli_main
from fabgen.cli import overrides as overrides_lib
from fabgen.platform import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLACEHOLDERS = {"N": "8", "DIR": "/tmp/fabgen_docs/dir", "SRC": "fabricsim:tiny:test",
                "FILE": "/tmp/fabgen_docs/file", "IMAGES...": "a.png", "CONFIG": None}
STARTS = ("fabgen ", "python -m ", "python launch/", "launch/", "sbatch ", "CONFIG=", "TPU=",
          "REPO=", "CPU_DEVICES=", "taskset ")


def _doc_sources():
  """(where, text) of every document whose commands are checked."""
  out = []
  for rel in ("README.md", "fabgen/platform/README.md"):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
      out.append((rel, f.read()))
  for pattern in ("configs/*.py", "fabgen/cli/*.py", "launch/sweep.py"):
    for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
      with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
      out.append((os.path.relpath(path, ROOT), doc))
  for path in sorted(glob.glob(os.path.join(ROOT, "launch", "*.s*"))):
    with open(path, encoding="utf-8") as f:
      comments = "\n".join(line[1:].rstrip() for line in f if line.startswith("#")
                           and not line.startswith(("#!", "#SBATCH")))
    out.append((os.path.relpath(path, ROOT), comments))
  return out


def _code_lines(where, text):
  """Lines that are code: fenced blocks in Markdown, indented lines in docstrings/comments."""
  if where.endswith(".md"):
    return [l for i, block in enumerate(text.split("```")) if i % 2 for l in block.splitlines()]
  return [l for l in text.splitlines() if l.startswith("  ")]


def _commands():
  """(where, command) for every command in the documents: code spans, code blocks, usage lines.

  A span that only names a command (`fabgen adapt`, `launch/sweep.py`) is a reference, not a
  command line, and is left out; so are `--help` lines.
  """
  found = []
  for where, text in _doc_sources():
    text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    for c in re.findall(r"`([^`\n]+)`", text) + _code_lines(where, text):
      c = re.split(r"\s+#\s", c.strip())[0].strip()  # trailing shell comments
      c = re.sub(r"\s*\[[^]]*\.\.\.\]", "", c)  # optional "[--config.a.b=v ...]" parts
      c = re.sub(r"\s*\[--[^]]*\]", "", c)  # other optional flags: "[--good SRC]"
      names_only = all(t.isalpha() and t.islower() for t in c.split()[1:])  # `fabgen data inspect`: a name
      if (not c.startswith(STARTS) or "--help" in c or c.endswith("...") or names_only
          or len(c.split()) <= 2 and "=" not in c):
        continue
      found.append((where, c))
  return sorted(set(found))


COMMANDS = _commands()


def _fill(tokens):
  tokens = [re.sub(r"<[^>]*>", "x", t) for t in tokens]  # <git url>, <tpu name>
  return [PLACEHOLDERS.get(t, t) if PLACEHOLDERS.get(t, t) is not None else t for t in tokens]


def _check_config_spec(spec, overrides=()):
  path = spec.partition(":")[0]
  assert os.path.exists(os.path.join(ROOT, path)), f"config file {path} does not exist"
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    config = config_lib.load_config(spec)
    config_lib.apply_overrides(config, list(overrides))
  finally:
    os.chdir(cwd)
  return config


def _check_fabgen(tokens):
  name, argv = tokens[1], tokens[2:]
  assert name in cli_main.COMMANDS, f"no command {name!r}"
  module = importlib.import_module(cli_main.COMMANDS[name][0])
  parser = argparse.ArgumentParser(prog=f"fabgen {name}", exit_on_error=False)
  module.add_arguments(parser)
  rest, overrides = overrides_lib.split_overrides(argv)
  try:
    args = parser.parse_args(rest)
  except SystemExit as e:
    raise AssertionError(f"does not parse (argparse exit {e.code})") from None
  spec = getattr(args, "config", None)
  if isinstance(spec, str) and spec.endswith((".py",)) or (isinstance(spec, str) and ".py:" in spec):
    _check_config_spec(spec, overrides)


def _check_launch(tokens):
  env = {}
  while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
    key, _, value = tokens.pop(0).partition("=")
    env[key] = value
  if tokens[0] == "sbatch":
    tokens = [t for t in tokens[1:] if not t.startswith("--nodes")]
  if tokens[0] == "taskset":
    tokens = tokens[3:]
  script = tokens[0]
  if script == "python" and tokens[1] == "-m":
    assert importlib.util.find_spec(tokens[2]) is not None, f"no module {tokens[2]}"
    return
  if script == "python":
    tokens = tokens[1:]
    script = tokens[0]
  assert os.path.exists(os.path.join(ROOT, script)), f"{script} does not exist"
  args = tokens[1:]
  if script.endswith("slurm.sbatch"):
    assert "CONFIG" in env and "WORKDIR" in env, "slurm.sbatch reads CONFIG and WORKDIR"
    assert all(a.startswith("--config.") for a in args), f"extra args must be overrides: {args}"
    _check_config_spec(env["CONFIG"], [a[len("--config."):] for a in args])
  elif script.endswith("tpu_pod.sh"):
    assert "TPU" in env and "ZONE" in env, "tpu_pod.sh reads TPU and ZONE"
    assert args and args[0] in ("setup", "train", "stop", "logs"), f"action word: {args}"
    if args[0] == "train":
      assert len(args) >= 3, "usage: train CONFIG WORKDIR [--config.k=v ...]"
      _check_config_spec(args[1], [a[len("--config."):] for a in args[3:]])
  elif script.endswith("local.sh"):
    if args[:1] == ["-n"]:
      args = args[2:]
    assert len(args) >= 2, "usage: local.sh [-n N] CONFIG WORKDIR [--config.k=v ...]"
    _check_config_spec(args[0], [a[len("--config."):] for a in args[2:]])
  elif script.endswith("sweep.py"):
    dry = [a for a in args if a not in ("--run",)]
    if "--launcher" in dry:
      dry = dry[:dry.index("--launcher")]
    p = subprocess.run([sys.executable, os.path.join(ROOT, script), *dry], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert p.returncode == 0 and "fabgen" in p.stdout, p.stderr[-2000:]
  else:
    raise AssertionError(f"no check for {script}")


def test_the_docs_show_commands():
  wheres = {w for w, _ in COMMANDS}
  assert len(COMMANDS) > 40 and "README.md" in wheres and "launch/slurm.sbatch" in wheres


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w}: {c}" for w, c in COMMANDS])
def test_documented_command_works_as_written(where, command):
  tokens = _fill(shlex.split(re.sub(r"<[^>]*>", "x", command.split(" | ")[0])))
  if tokens[0] == "fabgen":
    _check_fabgen(tokens)
  else:
    _check_launch(tokens)
