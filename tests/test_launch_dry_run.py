"""The launch scripts run as the README shows them, in their dry-run modes (issue 19, section 2).

`FABGEN_DRY_RUN=1` makes launch/local.sh, launch/slurm.sbatch and launch/tpu_pod.sh print the
commands they would run (srun, gcloud ... --command) instead of running them; launch/sweep.py
prints by default. Each printed `fabgen train` command is parsed by the train sub-command's own
parser and its config loads with its overrides and validates. The sweeps of the production
configs (stage 1, fusion, detector: a loss study and a scale study each) expand into valid
configs. Seconds: bash and config imports only, no model is built.
"""

import argparse
import os
import shlex
import subprocess
import sys

import pytest

from fabgen.cli import overrides as overrides_lib
from fabgen.cli import train as train_cli
from fabgen.platform import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "launch"))
import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position


def _run(argv, **env):
  p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                     env={**os.environ, "PYTHONPATH": ROOT, "FABGEN_DRY_RUN": "1", **env})
  assert p.returncode == 0, p.stderr[-2000:]
  return [shlex.split(line) for line in p.stdout.splitlines() if line.strip()]


def _check_train(tokens):
  """`... python -m fabgen.cli.main train ARGS`: ARGS parse, the config loads and validates."""
  i = tokens.index("fabgen.cli.main")
  assert tokens[i - 1] == "-m" and tokens[i + 1] == "train", tokens
  parser = argparse.ArgumentParser(exit_on_error=False)
  train_cli.add_arguments(parser)
  rest, overrides = overrides_lib.split_overrides(tokens[i + 2:])
  args = parser.parse_args(rest)
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    config = config_lib.get(args.config, overrides)
  finally:
    os.chdir(cwd)
  return args, config


def test_slurm_dry_run_prints_the_srun_command():
  (cmd,) = _run(["bash", "launch/slurm.sbatch", "--config.batch_size=256",
                 "--config.mesh.fsdp=8"], CONFIG="configs/fusion.py:128", WORKDIR="/shared/f128")
  assert cmd[:2] == ["srun", "--kill-on-bad-exit=1"]
  args, config = _check_train(cmd)
  assert args.workdir == "/shared/f128"
  assert config.batch_size == 256 and config.mesh.fsdp == 8


def test_slurm_without_config_says_what_is_missing():
  p = subprocess.run(["bash", "launch/slurm.sbatch"], cwd=ROOT, capture_output=True, text=True,
                     env={k: v for k, v in os.environ.items() if k not in ("CONFIG", "WORKDIR")})
  assert p.returncode != 0 and "CONFIG" in p.stderr


def test_tpu_pod_dry_run_prints_gcloud_for_every_action():
  env = {"TPU": "my-v5e-32", "ZONE": "us-west4-a", "REPO": "https://example.org/fabgen.git"}
  (setup,) = _run(["bash", "launch/tpu_pod.sh", "setup"], **env)
  assert setup[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in setup
  assert "'.[tpu]'" in setup[setup.index("--command") + 1]
  (train,) = _run(["bash", "launch/tpu_pod.sh", "train", "configs/stage1.py:128", "gs://b/s1",
                   "--config.mesh.fsdp=4"], **env)
  remote = shlex.split(train[train.index("--command") + 1].split(">")[0])
  assert remote[:3] == ["cd", "fabgen", "&&"] and "FABGEN_DISTRIBUTED=1" in remote
  args, config = _check_train(remote)
  assert args.workdir == "gs://b/s1" and config.mesh.fsdp == 4 and config.patch_size == 128
  for action in ("stop", "logs"):
    (cmd,) = _run(["bash", "launch/tpu_pod.sh", action], **env)
    assert cmd[0] == "gcloud" and "--command" in cmd


def test_local_dry_run_prints_one_command_per_process():
  cmds = _run(["bash", "launch/local.sh", "-n", "2", "configs/reference.py:tiny", "/tmp/ref2",
               "--config.mesh.fsdp=2"], PYTHON=sys.executable, CPU_DEVICES="4")
  assert len(cmds) == 2
  for i, cmd in enumerate(cmds):
    assert cmd[0] == "env" and f"FABGEN_PROCESS_ID={i}" in cmd
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=4" in cmd
    assert _check_train(cmd)[1].mesh.fsdp == 2


STUDIES = [(spec, study) for spec in ("stage1.py:64", "fusion.py:64", "detector.py:base")
           for study in ("loss", "scale")]


@pytest.mark.parametrize("spec, study", STUDIES)
def test_production_sweeps_expand_into_valid_configs(spec, study):
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    grid = sweep.points(f"configs/{spec}", study)
    commands = sweep.expand(f"configs/{spec}", "runs/sweep", study=study)
  finally:
    os.chdir(cwd)
  assert len(grid) >= 3 and len(commands) == len(grid)
  assert len({tuple(sorted(p.items())) for p in grid}) == len(grid), "duplicate points"
  assert len({c[c.index("--workdir") + 1] for c in commands}) == len(grid), "shared workdirs"
  for point, cmd in zip(grid, commands):
    _, config = _check_train(cmd)
    config_lib.validate(config)
    for key, value in point.items():
      got = config
      for part in key.split(".")[1:]:
        got = got[part]
      assert got == value, (spec, key, got, value)


def test_sweep_through_slurm_dry_run():
  """`sweep.py --launcher slurm | sh`, with sbatch standing in as bash in dry-run mode."""
  lines = _run([sys.executable, "launch/sweep.py", "configs/detector.py:base", "--study", "scale",
                "--workdir", "/shared/det", "--launcher", "slurm"])
  assert len(lines) == 3
  for line in lines:
    line = ["bash" if t == "sbatch" else t for t in line]
    (srun,) = _run(line)
    _, config = _check_train(srun)
    assert config.batch_size in (32, 64, 128)
