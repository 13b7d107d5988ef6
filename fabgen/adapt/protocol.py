"""The adaptation protocol for one held-out target fabric, resumable stage by stage.

  source detector ─┬─ evaluate on the target's real defects          -> row "no adaptation"
                   ├─ (finetune.control) fine-tune on the sources only, the same steps, and
                   │    evaluate                                     -> row "source only (control)"
                   └─ for each method (cutpaste, multistage, inpainter, ...):
                        synthesize defects on the target's defect-free images
                        fine-tune the source detector on them
                        evaluate on the target's real defects         -> row <method>

With `eval.source_val` > 0 the source detector is also scored on that many held-out source
images (stage `eval_source_val`), printed under the table: the gap to its "no adaptation" row on
the target is the domain shift the methods have to recover.

Generators (stage 1 + fusion for multistage, the single-stage inpainter for `inpainter`; for
`defectfill` a latent inpainting model pre-trained on the sources, then one DefectFill fine-tune
per defect class on a handful of reference defects) are trained once, before synthesis. The target fabric contributes only
defect-free images (`target_good` records of that fabric) until the final evaluation, which uses
its real defects (`target_test` records of that fabric).

Resumability: every stage runs in its own subfolder of the workdir and, when it finishes, writes
`<stage>/result.json` last (atomically). A rerun skips every stage that has one and continues
the first that has not; training stages also resume from their own checkpoints inside, so an
interrupted run loses at most one checkpoint interval. The table is rebuilt from the result files
at the end of every run.

The control row answers "is it the synthetic target data, or just more training?": with source
replay in the fine-tune (`finetune.replay`), a method's row beats "no adaptation" partly because
the detector trained longer; it helps only as far as it beats the control.

The work itself is done by a `Backend` (`platform_backend.PlatformBackend` trains through the
platform, synthesizes through `fabgen.synthesis`, evaluates through `fabgen.adapt.evaluation`);
this module only orders, skips, records and reports.
"""

from __future__ import annotations

import abc
import functools
import json
import os
import time
from typing import Any, Callable, Mapping

import ml_collections

from fabgen.adapt import table as table_lib

RESULT = "result.json"
# Generator stages per method, in training order; the last one is what synthesis loads.
GENERATORS = {"multistage": ("stage1", "fusion"), "inpainter": ("inpainter",), "cutpaste": (),
              "dgt": ("dgt",), "defectfill": ("diffusion", "defectfill")}
NO_ADAPTATION = "no adaptation"
CONTROL = "source only (control)"


class Backend(abc.ABC):
  """What the protocol needs done; each call gets its stage folder and returns a JSON-able dict."""

  @abc.abstractmethod
  def target(self) -> dict:
    """The target fabric: {"fabric_id", "num_good", "num_test", ...}."""

  @abc.abstractmethod
  def train_detector(self, out_dir: str) -> dict:
    """Trains the detector on the source fabrics; returns {"checkpoint": dir, ...}."""

  @abc.abstractmethod
  def train_generator(self, name: str, out_dir: str, done: Mapping[str, dict]) -> dict:
    """Trains generator `name` ("stage1", "fusion", "inpainter"); `done`: earlier results."""

  @abc.abstractmethod
  def synthesize(self, method: str, out_dir: str, done: Mapping[str, dict]) -> dict:
    """Writes a labelled synthetic set for the target; returns {"data": dir, ...}."""

  @abc.abstractmethod
  def finetune(self, detector: dict, synthetic: dict | None, out_dir: str) -> dict:
    """Fine-tunes the source detector on a synthetic set; returns {"checkpoint": dir, ...}.

    `synthetic=None` is the control: the same fine-tune on the source data only.
    """

  @abc.abstractmethod
  def evaluate(self, detector: dict, out_dir: str) -> dict:
    """Evaluates a detector on the target's real defects; returns the evaluation report."""

  def evaluate_source(self, detector: dict, out_dir: str) -> dict:
    """Evaluates a detector on held-out *source* images (config.eval.source_val of them).

    Beside the target's "no adaptation" row it measures the domain shift: the F the source
    detector reaches where it was trained, against what it keeps on the new fabric.
    """
    raise NotImplementedError(f"{type(self).__name__} has no source validation split")

  def pictures(self, workdir: str, done: Mapping[str, dict]) -> list[str]:
    """Optional sample pictures (real vs synthesized defects, detections); returns paths."""
    del workdir, done
    return []


def _write_json(path: str, obj: Any) -> None:
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, default=_default)
  os.replace(tmp, path)


def _default(x):
  if hasattr(x, "tolist"):
    return x.tolist()
  raise TypeError(f"{type(x).__name__} is not JSON-serializable")


def stage_done(workdir: str, name: str) -> dict | None:
  """The recorded result of a finished stage, or None if it has not finished."""
  path = os.path.join(workdir, name, RESULT)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is corrupt ({e}); delete it to rerun stage {name!r}") from None


def run_stage(workdir: str, name: str, fn: Callable[[str], dict],
              log: Callable[[str], None]) -> dict:
  """Runs `fn(stage_dir)` unless `<stage>/result.json` exists; records its result last."""
  done = stage_done(workdir, name)
  if done is not None:
    log(f"[{name}] done earlier, skipped")
    return done
  out = os.path.join(workdir, name)
  os.makedirs(out, exist_ok=True)
  log(f"[{name}] running")
  t0 = time.time()
  result = dict(fn(out))
  result["seconds"] = round(time.time() - t0, 1)
  _write_json(os.path.join(out, RESULT), result)
  log(f"[{name}] finished in {result['seconds']:.0f}s")
  return result


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the protocol's own keys; errors name the key and the bad value."""
  methods = list(config.methods)
  if not methods:
    raise ValueError("config.methods is empty; give at least one synthesis method")
  if len(set(methods)) != len(methods):
    raise ValueError(f"config.methods={methods} repeats a method")
  for m in methods:
    if m not in GENERATORS and m not in config.get("extra_generators", {}):
      raise ValueError(f"config.methods: unknown method {m!r}; known: {sorted(GENERATORS)} "
                       f"(a new method lists its generator stages in config.extra_generators)")


def run_protocol(config: ml_collections.ConfigDict, workdir: str, backend: Backend,
                 log: Callable[[str], None] = print) -> dict:
  """Runs (or resumes) the protocol in `workdir`; returns {"reports", "table", "wall_s"}."""
  from fabgen.adapt import stage_inputs  # pylint: disable=g-import-not-at-top (imports this)
  # Every stage below records its inputs and is skipped only when they match (stage_inputs.py).
  run_stage = functools.partial(stage_inputs.run_checked, config)  # pylint: disable=redefined-outer-name
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.time()
  generators = dict(GENERATORS, **{k: tuple(v) for k, v in
                                   config.get("extra_generators", {}).items()})
  done: dict[str, dict] = {}
  done["target"] = run_stage(workdir, "target", lambda d: backend.target(), log)
  done["detector_source"] = run_stage(workdir, "detector_source", backend.train_detector, log)
  for method in config.methods:
    for gen in generators[method]:
      if gen not in done:
        done[gen] = run_stage(workdir, gen,
                              lambda d, g=gen: backend.train_generator(g, d, done), log)
  source_val = None
  if config.get("eval", {}).get("source_val", 0):
    source_val = run_stage(workdir, "eval_source_val", lambda d: backend.evaluate_source(
        done["detector_source"], d), log)
  reports = {NO_ADAPTATION: run_stage(
      workdir, "eval_source", lambda d: backend.evaluate(done["detector_source"], d), log)}
  if config.get("finetune", {}).get("control", False):
    control = run_stage(workdir, "finetune_control",
                        lambda d: backend.finetune(done["detector_source"], None, d), log)
    reports[CONTROL] = run_stage(workdir, "eval_control",
                                 lambda d: backend.evaluate(control, d), log)
  for method in config.methods:
    synth = run_stage(workdir, f"synth_{method}",
                      lambda d, m=method: backend.synthesize(m, d, done), log)
    done[f"synth_{method}"] = synth
    tuned = run_stage(workdir, f"finetune_{method}",
                      lambda d, s=synth: backend.finetune(done["detector_source"], s, d), log)
    done[f"finetune_{method}"] = tuned
    reports[method] = run_stage(workdir, f"eval_{method}",
                                lambda d, t=tuned: backend.evaluate(t, d), log)
  target = done["target"]
  if target.get("kind") == "real":
    title = (f"Adaptation to {target.get('fabric_id')} ({target.get('num_test', 0)} labelled "
             f"defect images, {target.get('num_heldout_good', 0)} held-out defect-free images)")
  else:
    title = (f"Adaptation to target fabric {target.get('fabric_id')} "
             f"({target.get('num_test', '?')} real defect images)")
  md = table_lib.comparison_markdown(reports, title)
  if source_val is not None:
    head, rows = table_lib.comparison_rows({"source detector on source validation": source_val})
    md += ("\nThe domain shift: the source detector on held-out source images "
           f"({source_val.get('num_images', '?')} images), defect-level F (%)\n\n| "
           + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n| " + " | ".join(rows[0])
           + " |\n")
  pictures = backend.pictures(workdir, done)
  with open(os.path.join(workdir, "table.md"), "w", encoding="utf-8") as f:
    f.write(md)
  wall = round(time.time() - t0, 1)
  _write_json(os.path.join(workdir, "table.json"),
              {"reports": reports, "target": target, "pictures": pictures,
               "source_val": source_val,
               "wall_s_this_run": wall})
  log(md)
  return {"reports": reports, "table": md, "wall_s": wall, "pictures": pictures}
