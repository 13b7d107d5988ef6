"""Expand a config's `get_sweep(hyper)` into one `fabgen train` command per grid point.

  python launch/sweep.py configs/reference.py:tiny --workdir runs/sweep           # print
  python launch/sweep.py configs/reference.py:tiny --workdir runs/sweep --run     # run here
  python launch/sweep.py configs/reference.py:default --workdir /shared/s --launcher slurm | sh
  python launch/sweep.py configs/stage1.py:64 --study scale --workdir runs/s1_scale
  python launch/sweep.py configs/detector.py:base --study loss --workdir runs/det_loss

Printing is the dry run (FABGEN_DRY_RUN=1 also turns `--run` into printing only).

A config file defines, big_vision style,

  def get_sweep(hyper):
    return hyper.product([hyper.sweep("config.optim.lr", [1e-3, 3e-3]),
                          hyper.sweep("config.model.widths", [(8, 16), (16, 32)])])

or `get_sweep(hyper, study="loss")` for several named studies (`--study scale`): stage 1,
fusion and the detector each have a loss study and a scale study.

Every point becomes `--config.<key>=<value>` overrides (type-checked by `fabgen train` like any
override) and a workdir named after them. `--launcher` wraps each command for SLURM
(`sbatch launch/slurm.sbatch`) or a TPU pod (`launch/tpu_pod.sh train`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shlex
import subprocess
import sys


class Hyper:
  """The `hyper` object handed to `get_sweep`: sweep, product and zipit of override lists."""

  @staticmethod
  def sweep(key: str, values) -> list[dict]:
    return [{key: v} for v in values]

  @staticmethod
  def product(sweeps) -> list[dict]:
    return [dict(kv for point in combo for kv in point.items())
            for combo in itertools.product(*sweeps)]

  @staticmethod
  def zipit(sweeps) -> list[dict]:
    lengths = {len(s) for s in sweeps}
    if len(lengths) > 1:
      raise ValueError(f"hyper.zipit: sweeps of different lengths {sorted(lengths)}")
    return [dict(kv for point in combo for kv in point.items()) for combo in zip(*sweeps)]


def _value_text(value) -> str:
  if isinstance(value, (tuple, list)):
    return "(" + ", ".join(_value_text(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def point_name(point: dict) -> str:
  """`{"config.optim.lr": 0.001}` -> "lr=0.001" (filesystem-safe)."""
  parts = [f"{k.rsplit('.', 1)[-1]}={_value_text(v)}" for k, v in point.items()]
  return re.sub(r"[^\w=.,+-]", "", "_".join(parts)) or "default"


def points(config_spec: str, study: str | None = None) -> list[dict]:
  """The grid of `config_spec`'s `get_sweep` (of `study`, when the file has several)."""
  path = config_spec.partition(":")[0]
  sys.path.insert(0, os.getcwd())
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  module = config_lib.load_module(path)
  if not hasattr(module, "get_sweep"):
    raise SystemExit(f"sweep: {path} has no get_sweep(hyper)")
  grid = module.get_sweep(Hyper()) if study is None else module.get_sweep(Hyper(), study)
  for point in grid:
    for key in point:
      if not key.startswith("config."):
        raise SystemExit(f"sweep: key {key!r} in {path}'s get_sweep must start with 'config.'")
  return grid


def overrides(point: dict) -> list[str]:
  """`{"config.optim.lr": 0.001}` -> ["--config.optim.lr=0.001"] (as `fabgen train` reads them)."""
  return [f"--{key}={_value_text(value)}" for key, value in point.items()]


def expand(config_spec: str, workdir: str, extra=(), launcher: str = "local",
           study: str | None = None) -> list[list[str]]:
  """The commands (argv lists) of every point of `config_spec`'s sweep."""
  commands = []
  for point in points(config_spec, study):
    run_dir = os.path.join(workdir, point_name(point))
    point_overrides = overrides(point)
    if launcher == "local":
      cmd = [sys.executable, "-m", "fabgen.cli.main", "train", "--config", config_spec,
             "--workdir", run_dir]
    elif launcher == "slurm":
      cmd = ["env", f"CONFIG={config_spec}", f"WORKDIR={run_dir}", "sbatch",
             "launch/slurm.sbatch"]
    elif launcher == "tpu":
      cmd = ["launch/tpu_pod.sh", "train", config_spec, run_dir]
    else:
      raise SystemExit(f"sweep: unknown launcher {launcher!r}")
    commands.append(cmd + point_overrides + list(extra))
  return commands


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("config", help="configs/x.py[:variant]")
  parser.add_argument("--workdir", required=True, help="one sub-directory per point")
  parser.add_argument("--launcher", default="local", choices=("local", "slurm", "tpu"))
  parser.add_argument("--study", default=None,
                      help="which of the config's studies (get_sweep(hyper, study)), e.g. loss")
  parser.add_argument("--run", action="store_true", help="run the (local) commands one by one")
  args, extra = parser.parse_known_args(argv)
  commands = expand(args.config, args.workdir, extra, args.launcher, args.study)
  run = args.run and not os.environ.get("FABGEN_DRY_RUN")
  for cmd in commands:
    print(shlex.join(cmd))
    if run:
      rc = subprocess.call(cmd)
      if rc:
        print(f"sweep: {shlex.join(cmd)} exited {rc}", file=sys.stderr)
        return rc
  return 0


if __name__ == "__main__":
  sys.exit(main())
