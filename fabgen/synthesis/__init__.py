"""Turn trained generators into a labelled defect data set for a new fabric.

    from fabgen.synthesis import synthesize
    synthesize("cutpaste", "fabricsim:simple:train", "fabricsim:simple:target_good",
               num=1000, out_dir="synth/")

Methods (`base.SYNTHESIZERS`): `multistage` (stage-1 cGAN + fusion network), `cutpaste` (real
source crops, hard seams), `inpainter` (single-stage inpainting generator), `defectfill` (latent
diffusion, `fabgen.diffusion`), `dgt` (DGT defect transfer). Writing is `stream.SynthesisRun`;
`box_stats` compares a run's box sizes with real ones, `preview` draws its defects beside their
outlined labels.
"""

from __future__ import annotations

from typing import Sequence

from fabgen.data import classes as classes_lib
from fabgen.synthesis import backgrounds as backgrounds_lib
from fabgen.synthesis import placement as placement_lib
from fabgen.synthesis import stream
from fabgen.synthesis.base import SynthesisError, Synthesizer, load, register  # noqa: F401


def resolve_classes(classes: "Sequence[str | int] | None") -> "list[int] | None":
  """Class names or ids -> global ids (None stays None = every class the method knows)."""
  if classes is None:
    return None
  out = []
  for c in classes:
    if isinstance(c, str) and not c.strip().lstrip("-").isdigit():
      try:
        out.append(classes_lib.class_id(c.strip()))
      except ValueError as e:
        raise SynthesisError(str(e)) from None
    else:
      out.append(int(c))
  return out


def synthesize(method: str, checkpoint: str, backgrounds, num: int, out_dir: str, seed: int = 0,
               classes: "Sequence[str | int] | None" = None, batch_size: int = 16,
               placement: str | None = None, image_size: tuple[int, int] | None = None,
               tau: int = 6, colour: str = "auto", log=None, **options) -> dict:
  """Writes `num` labelled synthetic images to `out_dir` (resuming if it holds a partial run).

  Args:
    method: a registered method name.
    checkpoint: what the method loads (see each method's `from_checkpoint`).
    backgrounds: reader spec, folder, `fabricsim:<preset>:fabric=<id>[:<n>]`, or uint8 images.
    num: number of images to write.
    out_dir: output folder (images/, masks/, annotations.json, contact_sheet.png, manifest.json).
    seed: sample `i` depends only on (seed, i).
    classes: class names/ids to draw from (default: all the checkpoint knows).
    batch_size: images per device step (rounded up to a multiple of the device count).
    placement: None for uniform, or a placement-prior JSON (`PlacementPrior.save`).
    image_size: (H, W) to centre-crop backgrounds to (default: the first image's size).
    tau: uint8 change threshold that defines the label mask.
    colour: "auto" = grey output on monochrome backgrounds (`colour_space`), "keep" = as painted.
    log: optional callable for progress lines.
    **options: passed to the method's `from_checkpoint`.

  Returns:
    The final manifest (counts per class, boxes, empty images).
  """
  synth = load(method, checkpoint, **options)
  bgs = backgrounds_lib.open_backgrounds(backgrounds, image_size)
  if hasattr(synth, "fit_window"):  # methods whose window follows the defect sizes (multistage)
    synth.fit_window(min(bgs.size))
  prior = None if placement in (None, "uniform") else placement_lib.PlacementPrior.load(placement)
  run = stream.SynthesisRun(synth, bgs, num, out_dir, seed=seed,
                            class_ids=resolve_classes(classes), batch_size=batch_size,
                            placement=prior, tau=tau, colour=colour,
                            extra_manifest={"checkpoint": str(checkpoint)})
  return run.run(log=log)
