"""`fabgen inspect-roll` end to end with a tiny initialized detector on FabricSim strips."""

import csv
import json
import os

import jax
import numpy as np
from PIL import Image


def test_inspect_roll_writes_list_map_and_grade(tmp_path, capsys):
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "detector"))
  from detector_fixtures import tiny_config  # pylint: disable=g-import-not-at-top
  from fabgen.cli import main as cli  # pylint: disable=g-import-not-at-top
  from fabgen.data.fabricsim import FabricSim  # pylint: disable=g-import-not-at-top
  from fabgen.detector import task as task_lib  # pylint: disable=g-import-not-at-top
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  config = tiny_config()
  state = jax.jit(task_lib.DetectorTask(config).init_state)(jax.random.key(1))
  ckpt = str(tmp_path / "det")
  checkpoint_lib.write(ckpt, config, state)
  # An untrained detector scores near 0.01: thresholds low enough that it reports something.
  thresholds_lib.save(ckpt, {n: 0.005 for n in ("color_spot", "oil_stain", "knot", "broken_end",
                                                "broken_yarn", "white_stripe")})
  sim = FabricSim("tiny", seed=0)
  paths = []
  for k in range(3):  # three 64-row strips, 128 px across (two images side by side)
    row = [np.asarray(sim.render(1, 300 + 2 * k + j, (k + j) % 6)["image"]) for j in range(2)]
    paths.append(str(tmp_path / f"strip_{k}.png"))
    Image.fromarray(np.concatenate(row, 1)).save(paths[-1])
  out = str(tmp_path / "roll")
  rc = cli.main(["inspect-roll", "--checkpoint", ckpt, *paths, "--pitch-mm", "0.5",
                 "--width-m", "0.1", "--out", out])
  assert rc == 0
  text = capsys.readouterr().out
  assert "per-class thresholds from" in text and "points" in text
  report = json.load(open(os.path.join(out, "defects.json")))
  assert report["roll"]["length_m"] == 3 * 64 * 0.5 / 1000
  assert report["roll"]["inspected_width_m"] == 128 * 0.5 / 1000
  assert report["defects"], "thresholds of 0.005 must let the untrained detector report defects"
  for d in report["defects"]:
    assert 0 <= d["along_m"] <= report["roll"]["length_m"]
    assert 0 <= d["across_m"] <= 0.064 and d["points"] == 1 and d["score"] >= 0.005
  g = report["grade"]
  assert g["total_points"] <= 4 * g["linear_yards"]
  assert abs(g["points_per_100m2"] - 100 * g["total_points"] / (0.096 * 0.064)) < 1e-2
  rows = list(csv.DictReader(open(os.path.join(out, "defects.csv"))))
  assert len(rows) == len(report["defects"]) and rows[0]["class"]
  with Image.open(os.path.join(out, "roll_map.png")) as im:
    assert im.size[0] > 1000
  # Bad input is named: strips of different widths, a web narrower than the strips.
  Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(tmp_path / "narrow.png")
  assert cli.main(["inspect-roll", "--checkpoint", ckpt, paths[0], str(tmp_path / "narrow.png"),
                   "--pitch-mm", "0.5", "--width-m", "0.1", "--out", out]) == 2
  assert "differ in width" in capsys.readouterr().err
  assert cli.main(["inspect-roll", "--checkpoint", ckpt, paths[0], "--pitch-mm", "0.5",
                   "--width-m", "0.05", "--out", out]) == 2
  assert "more than the web width" in capsys.readouterr().err
