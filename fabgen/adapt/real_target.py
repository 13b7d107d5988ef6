"""The protocol on a real target: folders of the user's own fabric instead of a FabricSim id.

  target.good        reader spec of the target's defect-free images (a plain folder of photos,
                     an AITEX root `@good`, ...; any size, 4096x256 strips included)
  target.test        optional labelled test set of the target, any layout `open_source` reads
  target.references  optional few labelled defects of the target: the cut-paste bank
  target.class_map   "their_name:detector_name,..." renames target classes (readers already map
                     what they know: AITEX code 030 "nep" is read as `knot`)
  target.heldout_good  defect-free images kept out of synthesis, to count false alarms on
  sources.fabricsim / sources.real / sources.real_weight
                     what the source detector and the generators learn from: FabricSim (the
                     default), a real labelled data set, or both mixed in every batch

Classes: the detector knows `model.class_ids` of its config. Target classes with those ids are
the table's columns; any other target class (a code no fabgen class stands for, or a class the
detector was not trained on) gets its own row with its count and how many of its defects a box
of any class found, never a column of zeros in the mean. Without a test set, the protocol still
trains, synthesizes (the detector's classes, on the target's backgrounds) and evaluates every
detector on the held-out defect-free images: false alarms per image (and per metre with
`target.pixel_pitch_mm`).

A synthesis background is never evaluated: a test image with the same file as a background is
dropped from the test set (the target stage records how many).
"""

from __future__ import annotations

import collections
import os
from typing import Any, Callable

import ml_collections
import numpy as np

from fabgen.adapt import platform_backend
from fabgen.adapt import protocol
from fabgen.data import classes as classes_lib
from fabgen.data import readers
from fabgen.data.readers import class_map as class_map_lib
from fabgen.platform import config as config_lib


def is_real(config: ml_collections.ConfigDict) -> bool:
  """Whether the config names a target by its images (`target.good`) rather than a fabric id."""
  return bool(config.get("target", {}).get("good", ""))


def uses_real_sources(config: ml_collections.ConfigDict) -> bool:
  s = config.get("sources", {})
  return bool(s.get("real", "")) or not s.get("fabricsim", True)


def validate(config: ml_collections.ConfigDict) -> None:
  """The real-target keys; errors name the key and the value."""
  t = config.get("target", {})
  for key in ("test", "references"):
    if t.get(key, "") and not t.get("good", ""):
      raise ValueError(f"config.target.{key}={t[key]!r} needs config.target.good (the target's "
                       f"defect-free images) as well")
  class_map_lib.parse(t.get("class_map", ""))
  if int(t.get("heldout_good", 0)) < 0:
    raise ValueError(f"config.target.heldout_good={t.heldout_good}: must be >= 0")
  s = config.get("sources", {})
  if not s.get("fabricsim", True) and not s.get("real", ""):
    raise ValueError("config.sources.fabricsim=False and config.sources.real is empty: the "
                     "source detector has nothing to learn from")
  if s.get("fabricsim", True) and s.get("real", ""):
    w = float(s.get("real_weight", 0.5))
    if not 0.0 < w < 1.0:
      raise ValueError(f"config.sources.real_weight={w}: the real share of each batch when "
                       f"mixed with FabricSim must be in (0, 1)")


def detector_class_ids(config: ml_collections.ConfigDict) -> list[int]:
  """The global class ids the source detector is built to predict (its model.class_ids)."""
  cfg = config_lib.get(platform_backend.resolve_spec(config.detector.spec),
                       list(config.detector.overrides))
  return [int(c) for c in cfg.model.class_ids]


def target_name(spec: str) -> str:
  """The folder's name (`data/mill_a/good` -> `mill_a/good`; `root@good` -> `root`)."""
  path = os.path.normpath(spec.rsplit("@", 1)[0] if not os.path.exists(spec) else spec)
  parent, base = os.path.split(path)
  return f"{os.path.basename(parent)}/{base}" if parent and base in ("good", "images") else base


def _paths(src, indices) -> dict[str, int]:
  path_of = getattr(src, "path_of", None)
  if not callable(path_of):
    return {}
  return {os.path.realpath(path_of(i)): i for i in indices}


class RealTargetBackend(platform_backend.PlatformBackend):
  """`PlatformBackend` with the target (and optionally the sources) read from folders."""

  def __init__(self, config: ml_collections.ConfigDict, log: Callable[[str], None] = print):
    super().__init__(config, log)
    validate(config)
    self.mapping = class_map_lib.parse(config.target.get("class_map", ""))
    self._sources: dict[str, Any] = {}

  # ---- data ------------------------------------------------------------------------------------

  def open_target(self, key: str):
    """The target's `good`, `test` or `references` source (class map applied), opened once."""
    if key not in self._sources:
      spec = self.config.target.get(key, "")
      if not spec:
        self._sources[key] = None
      else:
        try:
          src = readers.open_source(spec)
        except (OSError, ValueError) as e:
          raise ValueError(f"config.target.{key}={spec!r}: {e}") from e
        self._sources[key] = class_map_lib.remap(src, self.mapping) if key != "good" else src
    return self._sources[key]

  def training_data(self, mixed: bool = True) -> list[str]:
    s = self.config.sources
    real = s.get("real", "")
    if not s.get("fabricsim", True):
      return [f"data.source={real}"]
    out = [f"data.source={self.source_spec('train')}"]
    if real and mixed:
      out += [f"data.mix_source={real}", f"data.mix_weight={float(s.real_weight)}"]
    return out

  def replay_spec(self) -> str:
    return self.config.sources.get("real", "") or self.source_spec("train")

  def cutpaste_bank(self) -> str:
    return self.config.target.get("references", "") or self.replay_spec()

  def load_synthesizer(self, method: str, checkpoint: str, options: dict):
    """Cut-paste from the target's references reads them with the class map applied."""
    refs = self.config.target.get("references", "")
    if method == "cutpaste" and refs and checkpoint == refs:
      from fabgen.synthesis import cutpaste  # pylint: disable=g-import-not-at-top
      keep = {k: v for k, v in options.items() if k in ("patch_size", "max_per_class",
                                                         "max_records")}
      return cutpaste.CutPasteSynthesizer.from_source(self.open_target("references"), name=refs,
                                                      **keep)
    return super().load_synthesizer(method, checkpoint, options)

  # ---- the target ------------------------------------------------------------------------------

  def target(self) -> dict:
    t = self.config.target
    good = self.open_target("good")
    if len(good) < 2:
      raise ValueError(f"config.target.good={t.good!r} has {len(good)} readable images; the "
                       f"protocol needs at least 2 (backgrounds to paint on, and held-out ones "
                       f"to count false alarms on)")
    heldout = readers.spread_indices(len(good), min(int(t.heldout_good), len(good) - 1))
    held = set(heldout)
    rest = [i for i in range(len(good)) if i not in held]
    n_bg = int(self.config.synth.num_backgrounds)
    backgrounds = [rest[i] for i in readers.spread_indices(len(rest), n_bg)] if n_bg else rest
    known = detector_class_ids(self.config)
    out = {"fabric_id": t.get("name", "") or target_name(t.good),
           "kind": "real", "good": t.good, "good_indices": backgrounds, "num_good": len(backgrounds),
           "heldout_good_indices": heldout, "num_heldout_good": len(heldout),
           "good_skipped": len(good.skipped), "test": t.get("test", "") or None,
           "test_indices": [], "num_test": 0, "detector_classes": [
               classes_lib.CLASSES[c] for c in known]}
    test = self.open_target("test")
    counts: collections.Counter = collections.Counter()
    if test is not None:
      candidates = list(range(len(test)))
      clash = _paths(test, candidates).keys() & _paths(good, backgrounds).keys()
      if clash:
        by_path = _paths(test, candidates)
        drop = {by_path[p] for p in clash}
        candidates = [i for i in candidates if i not in drop]
        self.log(f"  {len(drop)} test images are synthesis backgrounds too; not evaluated")
        out["test_dropped_as_backgrounds"] = len(drop)
      limit = int(self.config.eval.limit)
      test_idx = [candidates[i] for i in readers.spread_indices(len(candidates), limit)] \
          if limit else candidates
      num_defect_images = 0
      for i in test_idx:  # one decode each: the counts the table reports
        classes = np.asarray(test[i]["instance_class"])
        classes = classes[classes >= 0]
        num_defect_images += bool(len(classes))
        counts.update(test.class_names[int(c)] for c in classes)
      out.update(test_indices=test_idx, num_test=num_defect_images,
                 num_test_images=len(test_idx), test_skipped=len(test.skipped))
      if not num_defect_images:
        self.log(f"  config.target.test={t.test!r}: no labelled defect among {len(test_idx)} "
                 f"images; the table reports false alarms only")
    names = set(counts)
    known_names = [classes_lib.CLASSES[c] for c in known]
    out["class_counts"] = dict(sorted(counts.items()))
    out["unknown_classes"] = sorted(n for n in names if n not in known_names)
    # What synthesis paints: the target's classes the detector knows; without labelled target
    # defects (or none of them known), every class the detector knows.
    out["classes"] = [n for n in known_names if n in names] or known_names
    refs = self.open_target("references")
    if refs is not None:
      out.update(references=t.references, num_references=len(refs))
    return out

  def target_backgrounds(self, target: dict) -> list[np.ndarray]:
    good = self.open_target("good")
    return [np.asarray(good[i]["image"]) for i in target["good_indices"]]

  def target_defects(self, target: dict, count: int):
    test = self.open_target("test")
    if test is None:
      return []
    return (test[i] for i in target["test_indices"])  # record_pairs stops after `count` defects

  # ---- evaluation ------------------------------------------------------------------------------

  def evaluate(self, detector: dict, out_dir: str, split: str = "target_test", indices=None,
               what: str = "", source=None, **options) -> dict:
    if indices is not None or source is not None:  # the FabricSim source validation split
      return super().evaluate(detector, out_dir, split, indices, what, source, **options)
    target = protocol.stage_done(os.path.dirname(out_dir), "target") or self.target()
    good, test = self.open_target("good"), self.open_target("test")
    heldout = target["heldout_good_indices"]
    pitch = float(self.config.target.get("pixel_pitch_mm", 0.0)) or None
    if test is not None and target["test_indices"]:
      main, idx = test, target["test_indices"]
      extra = [(good, heldout)] if heldout else []
      what = (f"target {target['fabric_id']} ({len(idx)} test images"
              + (f" + {len(heldout)} held-out defect-free" if heldout else "") + ")")
    else:
      main, idx, extra = good, heldout, []
      what = f"target {target['fabric_id']} ({len(heldout)} held-out defect-free images)"
    return super().evaluate(detector, out_dir, indices=idx, what=what, source=main,
                            good_sources=extra, pixel_pitch_mm=pitch,
                            detector_class_ids="detector")


def make_backend(config: ml_collections.ConfigDict,
                 log: Callable[[str], None] = print) -> platform_backend.PlatformBackend:
  """The backend `fabgen adapt` runs: real-target when `target.good` or real sources are set."""
  validate(config)
  if is_real(config) or uses_real_sources(config):
    if not is_real(config):
      raise ValueError("config.sources.real / sources.fabricsim=False need a real target "
                       "(config.target.good); FabricSim targets use FabricSim sources")
    return RealTargetBackend(config, log)
  return platform_backend.PlatformBackend(config, log)
