"""Run a trained detector on image files: overlays and COCO-format detections.

  fabgen detect --checkpoint runs/detector photos/*.png
  fabgen detect --checkpoint export/ strip_4096x256.png --out detections/ --threshold 0.4

Thresholds: per class from `fabgen calibrate` (<checkpoint>/thresholds.json, or an export's
metadata) unless --threshold gives one for every class; 0.5 when neither exists.
--checkpoint: a detector workdir or a `fabgen export` folder. Images of any size (larger ones
are tiled with overlap and merged). Writes <out>/<name>.png overlays (boxes with class and score,
segmentation tinted), <out>/detections.json (a COCO results list: image_id, category_id = global
class id, bbox [x, y, w, h], score) and <out>/images.json (the image ids and categories).
"""

from __future__ import annotations

import argparse
import json
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


def run(args: argparse.Namespace) -> int:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fabgen.data.readers.images import ReadError, read_image  # pylint: disable=g-import-not-at-top
  from fabgen.detector import coco_eval, infer, plots  # pylint: disable=g-import-not-at-top
  from fabgen.detector import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top
  try:
    predict_fn, info = infer.load_predictor(args.checkpoint)
    by_label, how = thresholds_lib.resolve(args.threshold, info)
    images = [read_image(p) for p in args.images]
  except (OSError, ValueError, ReadError) as e:
    print(f"fabgen detect: error: {e}", file=sys.stderr)
    return 2
  print(how, flush=True)
  os.makedirs(args.out, exist_ok=True)
  names = list(info["class_names"])
  by_id = {c: n for c, n in zip(info["class_ids"], names)}
  all_names = [by_id.get(i, str(i)) for i in range(max(info["class_ids"]) + 1)]
  preds = infer.predict_images(predict_fn, images, tile=info["tile"], overlap=args.overlap,
                               batch_size=args.batch_size)
  results, table = [], []
  lut = np.asarray([0] + [c + 1 for c in info["class_ids"]])
  for image_id, (path, image, pred) in enumerate(zip(args.images, images, preds), start=1):
    pred = thresholds_lib.apply(pred, by_label)
    seg = lut[np.argmax(pred["seg_probs"], -1)] if "seg_probs" in pred else None
    stem = os.path.splitext(os.path.basename(path))[0]
    overlay = plots.draw_detections(image, pred["boxes"], pred["scores"], pred["labels"],
                                    all_names, 0.0, seg_map=seg)
    overlay.save(os.path.join(args.out, f"{stem}.png"))
    dets = coco_eval.results_for_image(image_id, pred["boxes"], pred["scores"], pred["labels"])
    results += dets
    table.append({"id": image_id, "file_name": os.path.abspath(path), "height": image.shape[0],
                  "width": image.shape[1]})
    print(f"{path}: {len(dets)} detections", flush=True)
  cats = [{"id": c, "name": n} for c, n in zip(info["class_ids"], names)]
  with open(os.path.join(args.out, "detections.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(args.out, "images.json"), "w", encoding="utf-8") as f:
    json.dump({"images": table, "categories": cats}, f, indent=1)
  print(f"wrote {len(images)} overlays, {args.out}/detections.json (COCO results) and "
        f"{args.out}/images.json")
  return 0
