"""The CLI commands as a user runs them (subprocesses: exit codes, messages, files written).

Argument errors are cheap (they stop before any model loads) and run by default. The real runs
of `fabgen detect`, `evaluate` and `export` on a tiny untrained detector workdir compile the
detector several times: `e2e` (about 1-2 min of 2-core CPU together).
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fabgen(*args, timeout=600):
  env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  p = subprocess.run([sys.executable, "-m", "fabgen.cli.main", *map(str, args)], cwd=ROOT,
                     capture_output=True, text=True, timeout=timeout, env=env)
  assert "Traceback" not in p.stderr, p.stderr
  return p


@pytest.mark.parametrize("args, message", [
    (("adapt", "--config", "configs/adapt.py"), "--workdir"),
    (("export", "--checkpoint", "nowhere", "--out", "x", "--height", "33"),
     "--height 33 must be a positive multiple of 32"),
    (("export", "--checkpoint", "nowhere", "--out", "x"), "nowhere"),
    (("detect", "--checkpoint", "nowhere", "a.png"), "nowhere"),
    (("evaluate", "--checkpoint", "nowhere", "--data", "fabricsim:tiny:test"), "nowhere"),
])
def test_argument_errors_exit_2_with_a_message(args, message):
  p = fabgen(*args)
  assert p.returncode == 2 and message in p.stderr, (p.returncode, p.stderr)


def test_help_lists_every_command(capsys):
  """`fabgen`, `fabgen --help` and an unknown command print the command list (argparse expands
  % in help texts, so a bare one crashed the listing)."""
  from fabgen.cli import main as cli  # pylint: disable=g-import-not-at-top
  assert cli.main(["--help"]) == 0 and cli.main([]) == 0
  assert cli.main(["no-such-command"]) == 2
  text = capsys.readouterr().out
  for name in cli.COMMANDS:
    assert name in text
  assert "with 95% CIs" in " ".join(text.split())


@pytest.fixture(scope="module")
def detector_workdir(tmp_path_factory):
  """A detector workdir as training leaves it (checkpoint + config), untrained: no training."""
  import jax  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(ROOT, "tests", "detector"))
  from detector_fixtures import synthetic_records, tiny_config  # pylint: disable=g-import-not-at-top
  from fabgen.data import classes, writer  # pylint: disable=g-import-not-at-top
  from fabgen.detector import task as task_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import checkpoint  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("cli")
  config = tiny_config(**{"model.class_ids": (0, 3)})
  task = task_lib.DetectorTask(config)
  ckpt = checkpoint.Checkpointer(str(root / "det"), every_steps=1, keep=1, asynchronous=False)
  ckpt.save(0, jax.jit(task.init_state)(jax.random.key(0)), None, config)
  ckpt.close()
  writer.write_sample_set(synthetic_records(3, seed=2), str(root / "data"), classes.CLASSES)
  return root


@pytest.mark.e2e
def test_detect_writes_beside_its_inputs_without_touching_them(detector_workdir):
  images = detector_workdir / "data" / "images"
  inputs = sorted(images.iterdir())
  before = {p.name: p.read_bytes() for p in inputs}
  p = fabgen("detect", "--checkpoint", detector_workdir / "det", *inputs, "--out", images)
  assert p.returncode == 0, p.stderr
  assert {p.name: p.read_bytes() for p in inputs} == before  # --out == input folder: kept
  overlays = sorted(n for n in os.listdir(images) if n.endswith(".detections.png"))
  assert len(overlays) == len(inputs)
  table = json.loads((images / "images.json").read_text(encoding="utf-8"))
  assert [im["file_name"] for im in table["images"]] == [str(p) for p in inputs]
  assert isinstance(json.loads((images / "detections.json").read_text()), list)


@pytest.mark.e2e
def test_evaluate_and_export_write_their_files(detector_workdir):
  out = detector_workdir / "eval"
  p = fabgen("evaluate", "--checkpoint", detector_workdir / "det", "--data",
             detector_workdir / "data", "--out", out, "--threshold", "0.3")
  assert p.returncode == 0, p.stderr
  report = json.loads((out / "report.json").read_text())
  assert "mean_f1" in report and (out / "report.md").exists()
  exported = detector_workdir / "export"
  p = fabgen("export", "--checkpoint", detector_workdir / "det", "--out", exported,
             "--batch", "1")
  assert p.returncode == 0, p.stderr
  assert (exported / "detector.jaxexport").stat().st_size > 0
  assert json.loads((exported / "detector.json").read_text())["class_ids"] == [0, 3]
