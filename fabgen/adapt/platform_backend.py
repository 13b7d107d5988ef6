"""The protocol's real work on FabricSim: platform training, `fabgen.synthesis`, evaluation.

Every model trains through `fabgen.platform.trainer.train` from its own config file (a spec such
as "configs/detector.py:small" plus `key=value` overrides, both taken from the adapt config), so
the protocol never duplicates a training loop and each stage folder is an ordinary training
workdir (checkpoints, metrics, config.json) that resumes on its own.

The target fabric is one FabricSim identity from the preset's held-out target fabrics: its
`target_good` records are the defect-free backgrounds synthesis paints on, its `target_test`
records (real, simulated defects) are only ever used for evaluation.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import ml_collections
import numpy as np
from PIL import Image

from fabgen import synthesis
from fabgen.adapt import evaluation
from fabgen.adapt import protocol
from fabgen.data import classes as classes_lib
from fabgen.data import drawing
from fabgen.data import readers
from fabgen.data.readers import skips
from fabgen.data.fabricsim import FabricSim
from fabgen.detector import infer
from fabgen.detector import task as task_lib
from fabgen.platform import config as config_lib
from fabgen.platform import trainer
from fabgen.synthesis import backgrounds as backgrounds_lib
from fabgen.synthesis import box_stats
from fabgen.synthesis import preview
from fabgen.synthesis import stream


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_spec(spec: str) -> str:
  """`configs/x.py:arg` relative to the working directory, else to the fabgen checkout.

  So `fabgen demo` works from any directory, not only the repository root.
  """
  path, sep, arg = spec.partition(":")
  if not os.path.isabs(path) and not os.path.exists(path):
    candidate = os.path.join(REPO_ROOT, path)
    if os.path.exists(candidate):
      path = candidate
  return path + sep + arg


def fusion_donor_overrides(config: ml_collections.ConfigDict, done: Mapping[str, dict]) -> list:
  """`data.donors=<stage-1 workdir>` unless `config.fusion_donors` is "real" (the ablation).

  The paper trains the fusion network T on stage-1 patches pasted into real defect windows,
  because that is what T is given at synthesis; the protocol trains stage 1 before fusion.
  """
  kind = config.get("fusion_donors", "stage1")
  if kind == "real":
    return ["data.donors=real"]
  if kind != "stage1":
    raise ValueError(f"config.fusion_donors={kind!r}; use 'stage1' (the paper) or 'real'")
  if "stage1" not in done:
    raise ValueError("fusion_donors='stage1' needs the stage-1 generator trained first; "
                     "GENERATORS['multistage'] must list stage1 before fusion")
  return [f"data.donors={done['stage1']['checkpoint']}"]


class PlatformBackend(protocol.Backend):
  """Runs each stage for real; hyperparameters come from the adapt config only."""

  def __init__(self, config: ml_collections.ConfigDict, log: Callable[[str], None] = print):
    self.config = config
    self.log = log
    self.preset = config.preset
    self.seed = int(config.seed)
    self._sim = None
    self._real_boxes = None

  # ---- data ------------------------------------------------------------------------------------

  @property
  def sim(self):
    if self._sim is None:
      self._sim = FabricSim(self.preset, seed=self.seed)
    return self._sim

  def source_spec(self, split: str) -> str:
    return f"fabricsim:{self.preset}:{split}:{self.seed}"

  def _fabric_indices(self, split: str, fabric: int, limit: int) -> list[int]:
    specs = self.sim.record_specs(split)
    idx = [i for i in range(len(specs)) if int(specs[i, 0]) == fabric]
    return [idx[i] for i in readers.spread_indices(len(idx), limit)] if limit else idx

  def target(self) -> dict:
    fabrics = [int(f) for f in self.sim.fabric_ids("target_test")]
    fabric = int(self.config.target_fabric)
    if fabric < 0:
      fabric = fabrics[0]
    if fabric not in fabrics:
      raise ValueError(f"config.target_fabric={fabric} is not a held-out target fabric of preset "
                       f"{self.preset!r}; its target fabrics: {fabrics}")
    good = self._fabric_indices("target_good", fabric, self.config.synth.num_backgrounds)
    test = self._fabric_indices("target_test", fabric, self.config.eval.limit)
    if not good or not test:
      raise ValueError(f"target fabric {fabric} has {len(good)} defect-free and {len(test)} "
                       f"defect records in preset {self.preset!r}; both must be non-empty")
    return {"fabric_id": fabric, "good_indices": good, "test_indices": test,
            "num_good": len(good), "num_test": len(test),
            "classes": [classes_lib.CLASSES[int(c)] for c in self.sim.class_ids]}

  # ---- training --------------------------------------------------------------------------------

  def _train(self, section: ml_collections.ConfigDict, out_dir: str, extra=()) -> dict:
    cfg = config_lib.get(resolve_spec(section.spec), list(section.overrides) + list(extra))
    metrics = trainer.train(cfg, out_dir)
    return {"checkpoint": out_dir, "task": cfg.task, "steps": int(metrics.get("step", 0)),
            "final_metrics": {k: float(v) for k, v in metrics.items()
                              if isinstance(v, (int, float)) and k != "step"}}

  def training_data(self, mixed: bool = True) -> list[str]:
    """The `data.*` overrides of training on the sources (a real-target backend mixes in real
    labelled data; here: the FabricSim preset's train split)."""
    del mixed
    return [f"data.source={self.source_spec('train')}"]

  def replay_spec(self) -> str:
    """The source data a fine-tune replays (and the control fine-tunes on)."""
    return self.source_spec("train")

  def cutpaste_bank(self) -> str:
    """The labelled data whose real defect crops the cut-paste method pastes."""
    return self.source_spec("train")

  def train_detector(self, out_dir: str) -> dict:
    return self._train(self.config.detector, out_dir, self.training_data() + [f"seed={self.seed}"])

  def train_generator(self, name: str, out_dir: str, done: Mapping[str, dict]) -> dict:
    if name not in self.config.generators:
      raise ValueError(f"config.generators has no entry {name!r}; it has "
                       f"{sorted(self.config.generators)}")
    extra = self.training_data(mixed=False) + [f"seed={self.seed}"]
    if name == "fusion":
      extra += fusion_donor_overrides(self.config, done)
    if name == "defectfill":
      return self.train_defectfill(out_dir, done)
    return self._train(self.config.generators[name], out_dir, extra)

  def train_defectfill(self, out_dir: str, done: Mapping[str, dict]) -> dict:
    """One DefectFill fine-tune of the pre-trained `diffusion` stage per defect class of the
    preset (or of `generators.defectfill.classes`), each in `<out_dir>/<class>` (a training workdir that resumes on its own), on a
    handful (`data.num_refs`) of reference defects: the source fabrics' (FabricSim protocol) or
    `generators.defectfill.references` (an `open_source` spec, e.g. the target's own labelled
    references) when set. A class with no reference that fits the window is skipped and named;
    synthesis then cannot paint it (the synth stage lists it)."""
    from fabgen.diffusion import data as diffusion_data  # pylint: disable=g-import-not-at-top
    section = self.config.generators.defectfill
    if "diffusion" not in done:
      raise ValueError("generators.defectfill fine-tunes the pre-trained `diffusion` stage; "
                       "GENERATORS['defectfill'] must list diffusion first")
    refs = section.get("references", "") or self.source_spec("train")
    preset_classes = [classes_lib.CLASSES[int(c)] for c in self.sim.class_ids]
    wanted = list(section.get("classes", ()) or preset_classes)
    unknown = [n for n in wanted if n not in preset_classes]
    if unknown:
      raise ValueError(f"generators.defectfill.classes: {unknown} are not classes of preset "
                       f"{self.preset!r} ({preset_classes})")
    trained, skipped, metrics = [], [], {}
    for name in wanted:
      cid = classes_lib.class_id(name)
      extra = [f"data.source={refs}", f"seed={self.seed}", f"data.class_name={name}",
               f"model.init_from={done['diffusion']['checkpoint']}"]
      cfg = config_lib.get(resolve_spec(section.spec), list(section.overrides) + extra)
      try:  # the references the fine-tune will read (cheap next to training)
        diffusion_data.defect_crops(refs, int(cfg.data.image_size), int(cfg.data.max_records),
                                    int(cfg.data.num_refs), class_ids=[int(cid)],
                                    fabric=cfg.data.get("fabric", None),
                                    on_unreadable=skips.policy(cfg))
      except ValueError as e:
        self.log(f"  defectfill: no {name} reference ({e}); {name} is skipped")
        skipped.append(name)
        continue
      sub = os.path.join(out_dir, name)
      self.log(f"  defectfill: fine-tuning on {name} ({int(cfg.data.num_refs)} references)")
      result = trainer.train(cfg, sub)
      trained.append(sub)
      metrics[name] = {k: float(v) for k, v in result.items()
                       if isinstance(v, (int, float)) and k != "step"}
    if not trained:
      raise ValueError(f"defectfill: no class of preset {self.preset!r} has a reference defect "
                       f"in {refs} that fits the window; nothing to fine-tune")
    return {"checkpoint": ",".join(trained), "task": "defectfill", "references": refs,
            "classes": [os.path.basename(t) for t in trained], "skipped_classes": skipped,
            "final_metrics": metrics}

  def finetune(self, detector: dict, synthetic: dict, out_dir: str) -> dict:
    f = self.config.finetune
    base = config_lib.get(resolve_spec(self.config.detector.spec),
                          list(self.config.detector.overrides) + self.training_data())
    # Replay: `finetune.replay` of every batch comes from the source train split, so classes a
    # method cannot paint (and the source fabrics) are not forgotten while adapting. The control
    # (synthetic=None) fine-tunes on the source train split alone, same steps and lr.
    replay = float(f.get("replay", 0.0)) if synthetic is not None else 0.0
    data = synthetic["data"] if synthetic is not None else self.replay_spec()
    cfg = task_lib.finetune_config(base, detector["checkpoint"], source=data,
                                   total_steps=f.steps, lr_factor=f.lr_factor,
                                   mix_source=self.replay_spec() if replay else None,
                                   mix_weight=replay)
    config_lib.validate(cfg)
    metrics = trainer.train(cfg, out_dir)
    return {"checkpoint": out_dir, "init_from": detector["checkpoint"], "data": data,
            "replay": replay, "steps": int(metrics.get("step", 0))}

  # ---- synthesis -------------------------------------------------------------------------------

  def synthesize(self, method: str, out_dir: str, done: Mapping[str, dict]) -> dict:
    """Paints `synth.num` defects on the target's defect-free images with `method`.

    The classes drawn are the target's classes that the method can produce (a cut-paste bank or
    a generator trained on sources lacking a class cannot paint it); the manifest records them.
    """
    if method == "cutpaste":
      checkpoint = self.cutpaste_bank()
    elif method == "multistage":
      checkpoint = f"{done['stage1']['checkpoint']},{done['fusion']['checkpoint']}"
    else:
      gens = protocol.GENERATORS.get(method) or tuple(self.config.extra_generators[method])
      checkpoint = done[gens[-1]]["checkpoint"]   # the last stage paints (defectfill: fine-tunes)
    target = done["target"]
    s = self.config.synth
    options = dict(s.options) if method == "cutpaste" else {}
    if method == "multistage":  # real box sizes, windows up to the whole target image
      boxes = self.config.get("multistage_boxes", "real")
      if boxes not in ("real", "native"):
        raise ValueError(f"config.multistage_boxes={boxes!r}; use 'real' (the paper) or 'native'")
      options = ({"box_source": "native"} if boxes == "native" else
                 {"box_records": int(s.get("box_records", 200)),
                  "max_window": int(self.sim.preset.image_size)})
    synth = self.load_synthesizer(method, checkpoint, options)
    wanted = synthesis.resolve_classes(target["classes"])
    class_ids = [c for c in wanted if c in synth.class_ids]
    skipped = [classes_lib.CLASSES[c] for c in wanted if c not in synth.class_ids]
    if not class_ids:
      raise ValueError(f"synthesis method {method!r} ({checkpoint}) can paint none of the target "
                       f"classes {target['classes']}")
    if skipped:
      self.log(f"  {method} cannot paint {', '.join(skipped)} (not in what it was built from)")
    backgrounds = self.target_backgrounds(target)
    data = os.path.join(out_dir, "data")
    run = stream.SynthesisRun(synth, backgrounds_lib.open_backgrounds(backgrounds), s.num, data,
                              seed=self.seed, class_ids=class_ids, batch_size=s.batch_size,
                              extra_manifest={"checkpoint": str(checkpoint)},
                              colour=s.get("colour", "auto"))
    manifest = run.run(log=lambda line: self.log(f"  {line}"))
    boxes = box_stats.write_report(data, real=self.real_boxes())
    self.log(box_stats.markdown(boxes, f"{method}: box sizes, synthesized vs real (source train)"))
    return {"data": data, "method": method, "checkpoint": checkpoint,
            "classes": [classes_lib.CLASSES[c] for c in class_ids], "skipped_classes": skipped,
            "images": manifest.get("images"), "per_class": manifest.get("per_class"),
            "median_area_ratio": {k: v.get("median_area_ratio")
                                  for k, v in boxes["classes"].items()}}

  def load_synthesizer(self, method: str, checkpoint: str, options: dict):
    return synthesis.load(method, checkpoint, **options)

  def target_backgrounds(self, target: dict) -> list[np.ndarray]:
    """The target's defect-free images that synthesis paints on (whole images, any size)."""
    src = self._open(self.source_spec("target_good"))
    return [np.asarray(src[i]["image"]) for i in target["good_indices"]]

  def target_defects(self, target: dict, count: int) -> list:
    """Up to `count` of the target's labelled defect records (for pictures)."""
    src = self._open(self.source_spec("target_test"))
    return [src[i] for i in target["test_indices"][:count]]

  def real_boxes(self):
    """Box sizes of real source defects (`synth.box_records` records of the replayed source
    data), computed once."""
    if self._real_boxes is None:
      src = self._open(self.replay_spec())
      n = int(self.config.synth.get("box_records", 200))
      self._real_boxes = box_stats.real_boxes(src[i] for i in readers.spread_indices(len(src), n))
    return self._real_boxes

  # ---- evaluation ------------------------------------------------------------------------------

  @staticmethod
  def _open(spec):
    return readers.open_source(spec)

  def evaluate_source(self, detector: dict, out_dir: str) -> dict:
    src = self._open(self.source_spec("test"))
    indices = readers.spread_indices(len(src), int(self.config.eval.source_val))
    return self.evaluate(detector, out_dir, split="test", indices=indices,
                         what="held-out source images")

  def evaluate(self, detector: dict, out_dir: str, split: str = "target_test",
               indices=None, what: str = "", source=None, **options) -> dict:
    """Scores `detector` on `source` (default: the FabricSim split `split`) at `indices`;
    `options` go to `evaluation.evaluate` (good_sources, detector_class_ids, ...)."""
    predict_fn, info = infer.load_predictor(detector["checkpoint"])
    e = self.config.eval
    src = self._open(self.source_spec(split)) if source is None else source
    if indices is None:
      target = protocol.stage_done(os.path.dirname(out_dir), "target") or self.target()
      indices, what = target["test_indices"], f"target fabric {target['fabric_id']}"
    if options.get("detector_class_ids") == "detector":
      options["detector_class_ids"] = info["class_ids"]
    ev, kept = evaluation.evaluate(predict_fn, src, threshold=e.threshold, tile=info["tile"],
                                   overlap=min(e.overlap, min(info["tile"]) // 2),
                                   batch_size=e.batch_size, indices=indices,
                                   seg_class_ids=info["class_ids"], keep_predictions=e.pictures,
                                   log=self.log, **options)
    report = evaluation.write_report(ev, out_dir, title=f"{detector['checkpoint']} on {what}")
    if kept:
      names = list(classes_lib.CLASSES)
      lut = np.asarray([0] + [c + 1 for c in info["class_ids"]])
      pics = [drawing.draw_detections(s["image"], p["boxes"], p["scores"], p["labels"], names,
                                    e.threshold, gt_boxes=s["boxes"],
                                    seg_map=lut[np.argmax(p["seg_probs"], -1)]
                                    if "seg_probs" in p else None) for s, p in kept]
      strips = pics[0].size[0] > 4 * pics[0].size[1]  # line-scan strips: one per row
      drawing.grid(pics, columns=1 if strips else min(len(pics), 4)).save(
          os.path.join(out_dir, "detections.png"))
    return evaluation._jsonable(report)  # pylint: disable=protected-access

  def pictures(self, workdir: str, done: Mapping[str, dict]) -> list[str]:
    """samples.png: real and synthesized defects as they are beside their outlined labels,
    then detections."""
    target = done["target"]
    rows = []
    real = preview.record_pairs(self.target_defects(target, 4))
    if real is not None:
      rows.append(("real target defects: as they are | label outlined", real))
    for name in self.config.methods:
      pairs = preview.synthesized_pairs(os.path.join(workdir, f"synth_{name}", "data"))
      if pairs is not None:
        rows.append((f"synthesized by {name}: as it is | label outlined", pairs))
    for stage in ["eval_source", "eval_control"] + [f"eval_{m}" for m in self.config.methods]:
      det = os.path.join(workdir, stage, "detections.png")
      if os.path.isfile(det):
        rows.append((f"detections after {stage.removeprefix('eval_')}",
                     Image.open(det).convert("RGB")))
    width = max(im.size[0] for _, im in rows)
    parts = [drawing.side_by_side([im], [cap]) for cap, im in rows]
    out = Image.new("RGB", (width + 12, sum(p.size[1] for p in parts)), "white")
    y = 0
    for p in parts:
      out.paste(p, (0, y))
      y += p.size[1]
    path = os.path.join(workdir, "samples.png")
    out.save(path)
    return [path]
