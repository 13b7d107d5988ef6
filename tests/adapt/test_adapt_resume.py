"""The protocol resumes stage by stage: an interrupted run continues where it stopped."""

import json
import os

import pytest

from fabgen.adapt import protocol

CONFIG_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "adapt.py")


def report(f1_by_class):
  """A report of the shape `evaluation.Evaluation.report` returns."""
  classes = {c: {"defect": {"f1": f, "num_true": 2}, "image": {"f1": f}}
             for c, f in f1_by_class.items()}
  mean = sum(f1_by_class.values()) / len(f1_by_class)
  return {"classes": classes, "mean_f1": {"defect": mean, "image": mean},
          "coco": {"map_50": mean}}


class CountingBackend(protocol.Backend):
  """Fast backend that records each call; can fail once at a named stage (a crash)."""

  def __init__(self, fail_at=None):
    self.calls, self.fail_at = [], fail_at

  def _call(self, name):
    self.calls.append(name)
    if name == self.fail_at:
      raise RuntimeError(f"simulated crash in {name}")

  def target(self):
    self._call("target")
    return {"fabric_id": 41, "num_test": 3}

  def train_detector(self, out_dir):
    self._call("detector_source")
    return {"checkpoint": out_dir}

  def train_generator(self, name, out_dir, done):
    self._call(name)
    assert "detector_source" in done
    return {"checkpoint": out_dir}

  def synthesize(self, method, out_dir, done):
    self._call(f"synth_{method}")
    for gen in protocol.GENERATORS[method]:  # generators exist before synthesis
      assert os.path.isfile(os.path.join(os.path.dirname(out_dir), gen, protocol.RESULT))
    return {"data": out_dir}

  def finetune(self, detector, synthetic, out_dir):
    if synthetic is None:  # the control: sources only
      self._call("finetune_control")
      return {"checkpoint": out_dir, "method": "control"}
    self._call(f"finetune_{os.path.basename(synthetic['data']).removeprefix('synth_')}")
    return {"checkpoint": out_dir, "method": os.path.basename(synthetic["data"])[6:]}

  def evaluate(self, detector, out_dir):
    name = os.path.basename(out_dir)
    self._call(name)
    gain = {"eval_source": 0.0, "eval_control": 0.125, "eval_cutpaste": 0.25,
            "eval_multistage": 0.5}[name]
    return report({"color_spot": 0.5 + gain, "knot": 0.25 + gain})


def demo_config(control=False):
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(CONFIG_PATH + ":demo")
  config.methods = ("cutpaste", "multistage")
  config.finetune.control = control
  return config


def test_interrupted_run_resumes_without_redoing_stages(tmp_path):
  config = demo_config()
  first = CountingBackend(fail_at="finetune_multistage")
  with pytest.raises(RuntimeError, match="simulated crash"):
    protocol.run_protocol(config, str(tmp_path), first, log=lambda _: None)
  assert first.calls == ["target", "detector_source", "stage1", "fusion", "eval_source",
                         "synth_cutpaste", "finetune_cutpaste", "eval_cutpaste",
                         "synth_multistage", "finetune_multistage"]
  assert not os.path.exists(tmp_path / "finetune_multistage" / protocol.RESULT)
  second = CountingBackend()
  result = protocol.run_protocol(config, str(tmp_path), second, log=lambda _: None)
  assert second.calls == ["finetune_multistage", "eval_multistage"]
  table = (tmp_path / "table.md").read_text()
  assert "| no adaptation | 50.0 | 25.0 | 37.5 | 37.5 |" in table
  assert "| multistage | 100.0 | 75.0 | 87.5 | 87.5 |" in table
  assert list(result["reports"]) == ["no adaptation", "cutpaste", "multistage"]
  # A third run does no work at all and rebuilds the same table.
  third = CountingBackend()
  protocol.run_protocol(config, str(tmp_path), third, log=lambda _: None)
  assert third.calls == [] and (tmp_path / "table.md").read_text() == table
  saved = json.loads((tmp_path / "table.json").read_text())
  assert saved["target"]["fabric_id"] == 41


def test_control_row_fine_tunes_on_sources_only_and_resumes(tmp_path):
  config = demo_config(control=True)
  first = CountingBackend(fail_at="eval_control")
  with pytest.raises(RuntimeError, match="simulated crash"):
    protocol.run_protocol(config, str(tmp_path), first, log=lambda _: None)
  assert first.calls[-3:] == ["eval_source", "finetune_control", "eval_control"]
  second = CountingBackend()
  result = protocol.run_protocol(config, str(tmp_path), second, log=lambda _: None)
  assert second.calls[:2] == ["eval_control", "synth_cutpaste"]
  assert list(result["reports"]) == ["no adaptation", protocol.CONTROL, "cutpaste", "multistage"]
  assert "| source only (control) | 62.5 | 37.5 | 50.0 | 50.0 |" in result["table"]


def test_bad_config_and_corrupt_result_are_named(tmp_path):
  config = demo_config()
  config.methods = ("cutpaste", "diffusion")
  with pytest.raises(ValueError, match="unknown method 'diffusion'"):
    protocol.run_protocol(config, str(tmp_path), CountingBackend())
  config.methods = ("cutpaste",)
  os.makedirs(tmp_path / "target")
  (tmp_path / "target" / protocol.RESULT).write_text("{broken")
  with pytest.raises(ValueError, match="delete it to rerun stage 'target'"):
    protocol.run_protocol(config, str(tmp_path), CountingBackend())


def test_a_changed_target_reruns_exactly_the_stages_it_feeds(tmp_path):
  """A copied workdir rerun with another target fabric must not reprint the old table."""
  config = demo_config(control=True)
  protocol.run_protocol(config, str(tmp_path), CountingBackend(), log=lambda _: None)
  config.target_fabric = 42
  logs = []
  second = CountingBackend()
  protocol.run_protocol(config, str(tmp_path), second, log=logs.append)
  # Reused: the source detector, the generators and the source-only control fine-tune.
  assert second.calls == ["target", "eval_source", "eval_control", "synth_cutpaste",
                          "finetune_cutpaste", "eval_cutpaste", "synth_multistage",
                          "finetune_multistage", "eval_multistage"]
  assert any("[target] inputs changed: config.target_fabric" in line for line in logs), logs
  assert os.path.isdir(tmp_path / "target.replaced-1")  # moved aside, never deleted
  assert os.path.isdir(tmp_path / "synth_cutpaste.replaced-1")
  # An unrelated change (the eval threshold) reruns only the evaluations.
  config.eval.threshold = 0.45
  third = CountingBackend()
  protocol.run_protocol(config, str(tmp_path), third, log=lambda _: None)
  assert third.calls == ["eval_source", "eval_control", "eval_cutpaste", "eval_multistage"]
