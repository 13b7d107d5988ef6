"""The aggregate over (fabric, seed) units: interval math, pairing, and the resumable driver."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from fabgen.adapt import aggregate
from fabgen.adapt import multi_run
from fabgen.adapt import protocol
from test_adapt_resume import CountingBackend, demo_config, report


def test_t_interval_matches_scipy():
  x = [0.41, 0.38, 0.52, 0.47, 0.33, 0.45]
  got = aggregate.t_interval(x)
  lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
  np.testing.assert_allclose([got["lo"], got["hi"], got["mean"]], [lo, hi, np.mean(x)],
                             rtol=1e-12)
  assert got["n"] == 6
  one = aggregate.t_interval([0.5])
  assert one["mean"] == 0.5 and np.isnan(one["half"])  # undefined with one unit, not zero


def _units():
  """Three units whose fabrics differ a lot (0.2 .. 0.6) while the method is +0.05 +- 0.01."""
  units = {}
  for k, (base, gain) in enumerate([(0.2, 0.04), (0.4, 0.05), (0.6, 0.06)]):
    units[f"fabric{40 + k}_seed0"] = {
        protocol.NO_ADAPTATION: report({"knot": base - 0.1, "oil_stain": base - 0.1}),
        protocol.CONTROL: report({"knot": base, "oil_stain": base}),
        "multistage": report({"knot": base + gain, "oil_stain": base + gain})}
  return units


def test_paired_difference_cancels_the_fabric_spread():
  agg = aggregate.aggregate(_units(), protocol.CONTROL, baseline=protocol.NO_ADAPTATION)
  paired = agg["paired"]["multistage"]
  overall = agg["paired_baseline"]["multistage"]  # +0.1 from the control, + the method's gain
  np.testing.assert_allclose([overall["mean"], overall["half"]], [0.15, paired["half"]])
  want = aggregate.t_interval([0.04, 0.05, 0.06])
  np.testing.assert_allclose([paired["mean"], paired["half"]], [want["mean"], want["half"]])
  assert paired["lo"] > 0  # the pairing shows the gain ...
  unpaired = agg["rows"]["multistage"]["mean"]
  assert unpaired["half"] > 10 * paired["half"]  # ... that the per-row intervals hide
  np.testing.assert_allclose(agg["rows"]["multistage"]["knot"]["mean"], 0.45)
  assert protocol.CONTROL not in agg["paired"]
  md = aggregate.markdown(agg, "t")
  assert "| multistage |" in md and "+5.0 ± 2.5" in md


def test_a_run_missing_a_row_cannot_be_paired():
  units = _units()
  del units["fabric41_seed0"]["multistage"]
  with pytest.raises(ValueError, match="fabric41_seed0.*multistage"):
    aggregate.aggregate(units, protocol.CONTROL)


def test_driver_resumes_shares_source_stages_and_aggregates(tmp_path):
  config = demo_config(control=True)
  backends = []

  def run_one(fail_at):
    def run(cfg, unit_dir):
      backend = CountingBackend(fail_at=fail_at if os.path.basename(unit_dir) ==
                                "fabric41_seed0" else None)
      backends.append((os.path.basename(unit_dir), backend))
      protocol.run_protocol(cfg, unit_dir, backend, log=lambda _: None)
    return run

  with pytest.raises(RuntimeError, match="simulated crash"):
    multi_run.run_units(config, str(tmp_path), [40, 41], [0, 1], run_one("eval_multistage"),
                        log=lambda _: None)
  assert [name for name, _ in backends] == ["fabric40_seed0", "fabric41_seed0"]
  # the second fabric reused the first one's source detector, generators and control fine-tune
  assert "detector_source" not in backends[1][1].calls and "stage1" not in backends[1][1].calls
  assert "finetune_control" not in backends[1][1].calls and "eval_control" in backends[1][1].calls
  assert os.path.islink(tmp_path / "fabric41_seed0" / "detector_source")
  backends.clear()
  units = multi_run.run_units(config, str(tmp_path), [40, 41], [0, 1], run_one(None),
                              log=lambda _: None)
  # fabric40_seed0 finished earlier: not run again; fabric41_seed0 resumes at its crash
  assert [name for name, _ in backends] == ["fabric41_seed0", "fabric40_seed1", "fabric41_seed1"]
  assert backends[0][1].calls == ["eval_multistage"]
  assert "detector_source" in backends[1][1].calls  # a new seed trains its own sources
  out = multi_run.write_aggregate(str(tmp_path), units, "test")
  agg = json.load(open(tmp_path / "aggregate.json"))
  assert agg["units"] == sorted(os.path.basename(u) for u in units)
  np.testing.assert_allclose(agg["paired"]["multistage"]["mean"], 0.5 - 0.125)
  assert multi_run.NO_ADAPT in agg["extra"] and "multistage" in out["markdown"]
  # the command aggregates finished units without running anything
  from fabgen.cli import main as cli_main  # pylint: disable=g-import-not-at-top
  os.remove(tmp_path / "aggregate.md")
  config_path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "adapt.py:demo")
  assert cli_main.main(["adapt-aggregate", "--config", config_path, "--workdir", str(tmp_path),
                        "--fabrics", "40,41", "--seeds", "0,1", "--aggregate-only"]) == 0
  assert "| multistage |" in open(tmp_path / "aggregate.md").read()
  assert cli_main.main(["adapt-aggregate", "--config", config_path, "--workdir",
                        str(tmp_path / "empty"), "--aggregate-only"]) == 2


class _WorseMultistage(CountingBackend):
  """The ablated pipeline: multistage scores 0.125 lower than the baseline's backend gives."""

  def evaluate(self, detector, out_dir):
    out = super().evaluate(detector, out_dir)
    if os.path.basename(out_dir) == "eval_multistage":
      for c in out["classes"].values():
        c["defect"]["f1"] -= 0.125
    return out


@pytest.mark.parametrize("switch,first_unit_reruns", [
    ({"fusion_donors": "real"}, ["fusion"]),     # T retrained once per seed, then shared
    ({"multistage_boxes": "native"}, []),        # synthesis only
])
def test_an_ablation_reruns_only_what_its_switch_reaches(tmp_path, switch, first_unit_reruns):
  config = demo_config(control=True)
  base = str(tmp_path / "base")
  multi_run.run_units(config, base, [40, 41], [0],
                      lambda cfg, d: protocol.run_protocol(cfg, d, CountingBackend(), lambda _: 0),
                      log=lambda _: None)
  before = sorted(os.listdir(os.path.join(base, "fabric40_seed0")))
  ablation = demo_config(control=True)
  ablation.methods = ("multistage",)
  for k, v in switch.items():
    ablation[k] = v
  calls = {}

  def run(cfg, unit_dir):
    backend = _WorseMultistage()
    protocol.run_protocol(cfg, unit_dir, backend, log=lambda _: None)
    calls[os.path.basename(unit_dir)] = backend.calls

  abl = str(tmp_path / "abl")
  units = multi_run.run_units(ablation, abl, [40, 41], [0], run, log=lambda _: None, reuse=base)
  method = ["synth_multistage", "finetune_multistage", "eval_multistage"]
  assert calls == {"fabric40_seed0": first_unit_reruns + method, "fabric41_seed0": method}
  # the baseline is untouched: its stages are still real folders, nothing moved aside there
  assert sorted(os.listdir(os.path.join(base, "fabric40_seed0"))) == before
  assert not os.path.islink(os.path.join(base, "fabric40_seed0", "fusion"))
  out = multi_run.write_aggregate(abl, units, "ablation", compare_to=base)
  rows = out["aggregate"]["against"]["rows"]
  assert rows[protocol.CONTROL]["mean"] == 0.0 and rows[protocol.NO_ADAPTATION]["mean"] == 0.0
  np.testing.assert_allclose(rows["multistage"]["mean"], -0.125)
  assert "cutpaste" not in rows and "| multistage | -12.5 ± 0.0 |" in out["markdown"]
  with pytest.raises(ValueError, match="share no finished"):
    aggregate.against({"a": {}}, {"b": {}}, ["knot"])
