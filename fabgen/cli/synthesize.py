"""Write a labelled synthetic defect set for a fabric: images, instance masks, COCO boxes.

  fabgen synthesize --method cutpaste --checkpoint fabricsim:simple:train \
      --backgrounds fabricsim:simple:target_good --num 1000 --out synth/
  fabgen synthesize --method multistage --checkpoint runs/ --backgrounds bgs/ --num 500 --out s/
  fabgen synthesize --method multistage --checkpoint runs/stage1,runs/fusion --backgrounds bgs/ \
      --num 500 --out s/
  fabgen synthesize --method inpainter --checkpoint runs/inpainter64 --backgrounds bgs/ \
      --num 500 --out s/
  (runs/ holding stage1/ and fusion/; bgs/ a folder of defect-free images of the fabric)

--checkpoint: multistage = parent of stage1/ + fusion/ or 'STAGE1,FUSION'; inpainter = a workdir of
configs/inpainter.py; defectfill = a workdir of configs/defectfill.py; dgt = a workdir of
configs/dgt.py; cutpaste = a labelled source (reader spec or folder) to crop from.
--backgrounds: a folder, a reader spec, or 'fabricsim:<preset>:fabric=<id>[:<count>]'.
Re-running into the same --out resumes an interrupted run (same arguments required).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--method", required=True,
                      help="multistage | cutpaste | inpainter | defectfill | dgt "
                           "(or any registered method)")
  parser.add_argument("--checkpoint", required=True, help="what the method loads (see above)")
  parser.add_argument("--backgrounds", required=True, help="defect-free images of the fabric")
  parser.add_argument("--num", type=int, required=True, help="number of images to write")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--classes", default=None,
                      help="comma-separated class names or ids (default: all the model knows)")
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--placement", default="uniform",
                      help="'uniform' or a placement-prior JSON (PlacementPrior.save)")
  parser.add_argument("--image-size", default=None, help="HxW to centre-crop backgrounds to")
  parser.add_argument("--patch-size", type=int, default=None,
                      help="cutpaste only: crop size taken from the source (default 64)")
  parser.add_argument("--colour", default="auto", choices=("auto", "keep"),
                      help="auto: grey output where a background is monochrome (a mono camera "
                           "shows no colour cast); keep: the generator's colours")


def run(args: argparse.Namespace) -> int:
  from fabgen.synthesis import SynthesisError, synthesize  # pylint: disable=g-import-not-at-top
  options = {}
  if args.patch_size is not None:
    options["patch_size"] = args.patch_size
  image_size = None
  if args.image_size:
    h, _, w = args.image_size.lower().partition("x")
    image_size = (int(h), int(w or h))
  classes = args.classes.split(",") if args.classes else None
  try:
    manifest = synthesize(args.method, args.checkpoint, args.backgrounds, args.num, args.out,
                          seed=args.seed, classes=classes, batch_size=args.batch_size,
                          placement=args.placement, image_size=image_size, colour=args.colour,
                          log=lambda line: print(line, flush=True), **options)
  except SynthesisError as e:
    print(f"fabgen synthesize: error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {manifest['images']} images, {manifest['boxes']} boxes to {args.out} "
        f"({manifest['empty_images']} without a visible defect); per class: "
        f"{manifest['per_class']}")
  return 0
