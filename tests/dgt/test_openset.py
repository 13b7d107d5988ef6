"""The open-set protocol: its scores against brute force, and a tiny run that prints the table."""

import itertools

import numpy as np
import pytest

from fabgen.openset import metrics
from fabgen.openset import protocol


def test_auroc_equals_the_pairwise_definition_with_ties():
  rng = np.random.default_rng(0)
  scores = np.round(rng.normal(size=40), 1)  # rounding makes ties
  positive = rng.uniform(size=40) < 0.3
  pairs = [(1.0 if p > n else 0.5 if p == n else 0.0)
           for p, n in itertools.product(scores[positive], scores[~positive])]
  assert metrics.auroc(scores, positive) == pytest.approx(np.mean(pairs), abs=1e-12)
  assert metrics.auroc([0.1, 0.9], [False, True]) == 1.0
  assert np.isnan(metrics.auroc([0.1, 0.2], [True, True]))


def test_macro_f1_counts_unknown_as_a_class():
  true = np.array([0, 0, 1, 1, -1, -1])
  pred = np.array([0, 1, 1, 1, -1, 0])
  # class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 2, fp 1 -> 0.8; unknown: tp 1, fn 1 -> 2/3
  assert metrics.macro_f1(true, pred, [0, 1, -1]) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
  assert metrics.f1(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_table_has_a_row_per_split_and_a_mean():
  base = {c: 0.5 for c in protocol.COLUMNS}
  rows = [dict(base, known=["color_spot", "knot"]), dict(base, known=["oil_stain", "knot"])]
  text = protocol.table(rows)
  assert "| CS,KN (OS,BE,BY,WS) | 50.0" in text and text.splitlines()[-1].startswith("| mean |")


def test_bad_splits_are_named():
  from configs import openset  # pylint: disable=g-import-not-at-top
  c = openset.get_config("tiny")
  c.splits = (("knot",),)
  with pytest.raises(ValueError, match=r"config.splits\[0\]"):
    protocol.validate(c)


@pytest.mark.e2e
def test_tiny_openset_run_prints_the_table(tmp_path, capsys):
  from fabgen.cli import main  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "os")
  assert main.main(["openset", "--config", "configs/openset.py:tiny,smoke",
                    "--workdir", workdir]) == 0
  out = capsys.readouterr().out
  assert "| known (unknown) | closed acc | AUROC DFC | AUROC softmax" in out
  rows = [l for l in out.splitlines() if l.startswith("| CS,OS,KN,BE") or
          l.startswith("| OS,KN,BY,WS") or l.startswith("| mean")]
  assert len(rows) == 3, out
  values = [float(v) for v in rows[-1].strip("|").split("|")[1:]]
  assert all(0.0 <= v <= 100.0 for v in values), rows
  # A rerun resumes both finished splits and prints the same table.
  assert main.main(["openset", "--config", "configs/openset.py:tiny,smoke",
                    "--workdir", workdir]) == 0
  assert "done earlier" in capsys.readouterr().out


def test_adapt_can_add_a_dgt_row():
  """configs/adapt.py's dgt generator builds a DGT task on the adapt preset's classes."""
  from fabgen.adapt import platform_backend  # pylint: disable=g-import-not-at-top
  from fabgen.adapt import protocol as adapt_protocol  # pylint: disable=g-import-not-at-top
  from fabgen.data import classes as classes_lib  # pylint: disable=g-import-not-at-top
  from fabgen.dgt.task import DGTTask  # pylint: disable=g-import-not-at-top
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config("configs/adapt.py:demo")
  config.methods = ("cutpaste", "dgt")
  adapt_protocol.validate(config)
  backend = platform_backend.PlatformBackend(config)
  section = config.generators[adapt_protocol.GENERATORS["dgt"][0]]
  cfg = config_lib.get(platform_backend.resolve_spec(section.spec),
                       list(section.overrides) + [f"data.source={backend.source_spec('train')}"])
  assert cfg.task == "dgt"
  assert DGTTask(cfg).class_names == classes_lib.SIMPLE_CLASSES
