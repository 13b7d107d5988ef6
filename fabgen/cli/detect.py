"""Run a trained detector on image files: overlays and COCO-format detections.

  fabgen detect --checkpoint runs/detector photos/*.png
  fabgen detect --checkpoint export/ strip_4096x256.png --out detections/ --threshold 0.4

Thresholds: per class from `fabgen calibrate` (<checkpoint>/thresholds.json, or an export's
metadata) unless --threshold gives one for every class; 0.5 when neither exists.
--checkpoint: a detector workdir or a `fabgen export` folder. Images of any size (larger ones
are tiled with overlap and merged). Writes <out>/<name>.detections.png overlays (boxes with class
and score, segmentation tinted), <out>/detections.json (a COCO results list: image_id,
category_id = global class id, bbox [x, y, w, h], score) and <out>/images.json (the image ids and
categories). Outputs never overwrite an input (--out may be the images' own folder): overlay
names carry a suffix, two inputs with one name get distinct overlays, and the JSON files are
written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--checkpoint", required=True, help="detector workdir or export folder")
  parser.add_argument("images", nargs="+", help="image files")
  parser.add_argument("--out", default="detections", help="output folder")
  parser.add_argument("--threshold", type=float, default=None,
                      help="one score threshold for every class (default: the per-class "
                           "thresholds of `fabgen calibrate` if the checkpoint has them, else 0.5)")
  parser.add_argument("--overlap", type=int, default=64, help="tile overlap for large images")
  parser.add_argument("--batch-size", type=int, default=8)


OVERLAY_SUFFIX = ".detections.png"


def overlay_paths(images: list[str], out_dir: str) -> list[str]:
  """One overlay path per input: unique, and never the path (or the target) of any input."""
  inputs = {os.path.realpath(p) for p in images}
  taken, out = set(), []
  for path in images:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, n = f"{stem}{OVERLAY_SUFFIX}", 1
    candidate = os.path.join(out_dir, name)
    while candidate in taken or os.path.realpath(candidate) in inputs:
      n += 1
      candidate = os.path.join(out_dir, f"{stem}-{n}{OVERLAY_SUFFIX}")
    taken.add(candidate)
    out.append(candidate)
  return out


def run(args: argparse.Namespace) -> int:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fabgen.data.readers.images import ReadError, read_image  # pylint: disable=g-import-not-at-top
  from fabgen.data import drawing  # pylint: disable=g-import-not-at-top
  from fabgen.detector import coco_eval, infer  # pylint: disable=g-import-not-at-top
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  try:
    predict_fn, info = infer.load_predictor(args.checkpoint)
    by_label, how = thresholds_lib.resolve(args.threshold, info)
    images = [read_image(p) for p in args.images]
  except (OSError, ValueError, ReadError) as e:
    print(f"fabgen detect: error: {e}", file=sys.stderr)
    return 2
  print(how, flush=True)
  from fabgen.platform import files  # pylint: disable=g-import-not-at-top
  os.makedirs(args.out, exist_ok=True)
  json_outputs = [os.path.join(args.out, n) for n in ("detections.json", "images.json")]
  clash = sorted({os.path.realpath(p) for p in args.images}
                 & {os.path.realpath(p) for p in json_outputs})
  if clash:
    print(f"fabgen detect: error: --out {args.out} would overwrite the input {clash[0]}",
          file=sys.stderr)
    return 2
  overlays = overlay_paths(args.images, args.out)
  names = list(info["class_names"])
  by_id = {c: n for c, n in zip(info["class_ids"], names)}
  all_names = [by_id.get(i, str(i)) for i in range(max(info["class_ids"]) + 1)]
  preds = infer.predict_images(predict_fn, images, tile=info["tile"], overlap=args.overlap,
                               batch_size=args.batch_size)
  results, table = [], []
  lut = np.asarray([0] + [c + 1 for c in info["class_ids"]])
  for image_id, (path, image, pred, overlay_path) in enumerate(
      zip(args.images, images, preds, overlays), start=1):
    pred = thresholds_lib.apply(pred, by_label)
    seg = lut[np.argmax(pred["seg_probs"], -1)] if "seg_probs" in pred else None
    overlay = drawing.draw_detections(image, pred["boxes"], pred["scores"], pred["labels"],
                                      all_names, 0.0, seg_map=seg)
    overlay.save(overlay_path, format="PNG")
    dets = coco_eval.results_for_image(image_id, pred["boxes"], pred["scores"], pred["labels"])
    results += dets
    table.append({"id": image_id, "file_name": os.path.abspath(path),
                  "overlay": os.path.abspath(overlay_path), "height": image.shape[0],
                  "width": image.shape[1]})
    print(f"{files.printable(path)}: {len(dets)} detections", flush=True)
  cats = [{"id": c, "name": n} for c, n in zip(info["class_ids"], names)]
  files.write_json_atomic(json_outputs[0], results, indent=1)
  files.write_json_atomic(json_outputs[1], {"images": table, "categories": cats}, indent=1)
  print(f"wrote {len(images)} overlays (*{OVERLAY_SUFFIX}), {json_outputs[0]} (COCO results) "
        f"and {json_outputs[1]}")
  return 0
