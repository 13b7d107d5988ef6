"""Write FabricSim sample sets, inspect any data set on disk, build the FabricSim TFDS set.

  fabgen data synth --preset simple --split train --num 64 --out fabricsim_simple/
  fabgen data inspect fabricsim_simple/            # any layout: MVTec, AITEX, generic, COCO
  fabgen data inspect data/aitex --sheet aitex.png # also draw a contact sheet of the first images
  fabgen data tfds --preset simple --data-dir ~/tensorflow_datasets

`synth` writes images/, masks/ (instance PNGs), annotations.json (COCO) and contact_sheet.png;
the folder reads back through `open_source(DIR)` record for record. `inspect` prints counts per
class, image sizes, and every skipped file with its reason (exit status 1 if nothing is readable).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
  sub = parser.add_subparsers(dest="action", required=True)
  synth = sub.add_parser("synth", help="write a FabricSim sample set (PNG + COCO + sheet)")
  synth.add_argument("--preset", default="tiny",
                     help="tiny | simple | complex | linescan | linescan_tiny")
  synth.add_argument("--split", default="train",
                     help="train | test | source_good | target_good | target_test")
  synth.add_argument("--num", type=int, required=True, help="number of records to write")
  synth.add_argument("--out", required=True, help="output folder")
  synth.add_argument("--seed", type=int, default=0)
  synth.add_argument("--batch-size", type=int, default=16,
                     help="records rendered per jitted call")
  synth.add_argument("--overwrite", action="store_true",
                     help="allow writing into a non-empty folder that is not a fabgen set")
  inspect = sub.add_parser("inspect", help="summarize a data set (any supported layout)")
  inspect.add_argument("spec", help="folder, COCO json, or fabricsim:<preset>:<split>[:seed]")
  inspect.add_argument("--limit", type=int, default=None, help="inspect only the first N")
  inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
  inspect.add_argument("--sheet", default=None, help="also write a contact sheet PNG here")
  tfds_p = sub.add_parser("tfds", help="build the FabricSim TFDS data set (array_record)")
  tfds_p.add_argument("--preset", default="tiny")
  tfds_p.add_argument("--seed", type=int, default=0)
  tfds_p.add_argument("--data-dir", default=None, help="default ~/tensorflow_datasets")
  tfds_p.add_argument("--splits", default="", help="comma-separated (default: all)")
  tfds_p.add_argument("--max-records", type=int, default=None)


def synth(preset: str, split: str, num: int, out: str, seed: int = 0, batch_size: int = 16,
          log=print, overwrite: bool = False) -> dict:
  """Writes records [0, num) of a FabricSim split as a sample set; returns the manifest."""
  from fabgen.data import writer  # pylint: disable=g-import-not-at-top
  writer.check_out_dir(out, overwrite)  # before any rendering compiles
  from fabgen.data.readers import fabricsim_source  # pylint: disable=g-import-not-at-top
  src = fabricsim_source.FabricSimSource(preset, split, seed)
  if not 0 < num <= len(src):
    raise ValueError(f"--num must be in [1, {len(src)}] for {src.name}, got {num}")

  def records():
    for lo in range(0, num, batch_size):
      idx = list(range(lo, min(num, lo + batch_size)))
      batch = src.stacked(idx, pad_to=batch_size)
      for j in range(len(idx)):
        yield {k: v[j] for k, v in batch.items()}

  return writer.write_sample_set(records(), out, src.class_names, log=log, extra_manifest={
      "source": src.name, "preset": preset, "split": split, "seed": seed}, overwrite=overwrite)


def format_summary(s: dict) -> str:
  """The human-readable `inspect` report."""
  from fabgen.platform import files  # pylint: disable=g-import-not-at-top
  lines = [f"{files.printable(s['name'])} ({s['layout']}): {s['samples']} samples, {s['inspected']} inspected, "
           f"{s['defect_free_images']} defect-free"]
  names = [n for n in s["class_names"] if n in s["instances_per_class"]]
  if names:
    lines.append(f"  {'class':<16}{'images':>8}{'instances':>11}{'boxes':>8}")
    for n in names:
      lines.append(f"  {n:<16}{s['images_per_class'].get(n, 0):>8}"
                   f"{s['instances_per_class'].get(n, 0):>11}{s['boxes_per_class'].get(n, 0):>8}")
  sizes = ", ".join(f"{k} x{v}" for k, v in sorted(s["image_sizes"].items(), key=lambda t: -t[1]))
  lines.append(f"  image sizes (HxW): {sizes or 'none'}")
  bad = s["skipped_files"] + s["failed"]
  lines.append(f"  skipped: {len(bad)}" + (f"  {s['reasons']}" if bad else ""))
  for path, reason in bad[:50]:
    lines.append(f"    {files.printable(path)}: {files.printable(reason)}")
  if len(bad) > 50:
    lines.append(f"    ... {len(bad) - 50} more (use --json for all)")
  if s["notes"]:
    lines.append(f"  notes: {s['notes']}")
  return "\n".join(lines)


def inspect(spec: str, limit: int | None = None, sheet: str | None = None) -> dict:
  """The summary of any source; optionally a contact sheet of its first images."""
  from fabgen.data import drawing  # pylint: disable=g-import-not-at-top
  from fabgen.data.readers import ReadError, open_source  # pylint: disable=g-import-not-at-top
  src = open_source(spec)
  summary = src.summary(limit)
  if sheet and len(src):
    samples = []
    for i in range(len(src)):
      if len(samples) == 16:
        break
      try:
        samples.append(src[i])
      except ReadError:
        continue
    if samples:
      drawing.contact_sheet(samples, src.class_names).save(sheet)
  return summary


def run(args: argparse.Namespace) -> int:
  try:
    if args.action == "synth":
      m = synth(args.preset, args.split, args.num, args.out, args.seed, args.batch_size,
                overwrite=args.overwrite)
      print(f"wrote {m['images']} images, {m['boxes']} boxes to {args.out}; instances per "
            f"class: {m['instances_per_class']}; contact sheet: {args.out}/contact_sheet.png")
    elif args.action == "inspect":
      s = inspect(args.spec, args.limit, args.sheet)
      print(json.dumps(s, indent=1) if args.json else format_summary(s))
      if s["samples"] == 0 or len(s["failed"]) == s["inspected"] > 0:
        return 1
    else:
      from fabgen.data import tfds_fabricsim  # pylint: disable=g-import-not-at-top
      splits = tuple(x for x in args.splits.split(",") if x)
      b = tfds_fabricsim.make_builder(args.preset, args.seed, args.data_dir, splits,
                                      args.max_records)
      b.download_and_prepare()
      print(f"built {b.builder_config.name} in {b.data_dir}: "
            f"{ {k: v.num_examples for k, v in b.info.splits.items()} }")
  except (ValueError, OSError) as e:  # ReadError is a ValueError; FileNotFoundError an OSError
    from fabgen.platform import files  # pylint: disable=g-import-not-at-top
    print(f"fabgen data {args.action}: error: {files.printable(e)}", file=sys.stderr)
    return 2
  return 0
