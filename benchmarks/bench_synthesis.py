"""Synthesized images per second per method at 256x256, and the seam-quality table.

  python -m benchmarks.bench_synthesis [--num 64] [--batch 16] [--size 256]
      [--source fabricsim:simple:train --backgrounds fabricsim:simple:target_good]
      [--inpainter DIR] [--multistage STAGE1_DIR,FUSION_DIR]

`--source` / `--backgrounds` are any `open_source` specs (real crops for cutpaste and the seam
reference; defect-free target images); `--source procedural` uses a striped fabric with blob
defects instead, which costs no rendering. multistage is timed only with --multistage (it needs
a stage-1 and a fusion checkpoint). Without a trained inpainter checkpoint, the inpainter is
timed with freshly
initialised `configs/inpainter.py:64` weights: throughput does not depend on training, but
its seam-quality row then means nothing and is marked untrained. Timing excludes compilation
(one warm-up batch) and includes labelling and PNG writing, i.e. end-to-end `synthesize` speed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from fabgen.synthesis import backgrounds as backgrounds_lib
from fabgen.synthesis import base
from fabgen.synthesis import cutpaste
from fabgen.synthesis import seam_quality
from fabgen.synthesis import stream


def _procedural(n, size, seed, defects):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  out = []
  for i in range(n):
    period = rng.uniform(4, 9)
    img = 120 + 40 * np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / (period * 1.3))
    img = img[..., None] * rng.uniform(0.7, 1.1, 3) + rng.normal(0, 3, (size, size, 3))
    inst = np.zeros((size, size), np.int32)
    if defects:
      edge = min(40, size // 4)
      cy, cx = rng.integers(edge, size - edge, 2)
      m = (yy - cy) ** 2 / rng.uniform(20, 200) + (xx - cx) ** 2 / rng.uniform(20, 200) < 1
      img[m] *= 0.4
      inst[m] = 1
    out.append({"image": np.clip(img, 0, 255).astype(np.uint8), "instance_mask": inst,
                "instance_class": np.array([1 if defects else -1, -1, -1, -1], np.int32)})
  return out


def _untrained_inpainter():
  from configs import inpainter  # pylint: disable=g-import-not-at-top
  from fabgen.data import defect_crops  # pylint: disable=g-import-not-at-top
  from fabgen.stage2.inpainter_task import InpainterTask  # pylint: disable=g-import-not-at-top
  from fabgen.synthesis.inpainter import InpainterSynthesizer  # pylint: disable=g-import-not-at-top
  config = inpainter.get_config("64")
  task = InpainterTask(config)
  task.crops = defect_crops.extract_crops(_procedural(16, 128, 7, True), 64)
  return InpainterSynthesizer(task, task.warm_start(task.init_state(jax.random.key(0))))


def time_method(synth, bgs, num, batch, out_dir):
  run = stream.SynthesisRun(synth, bgs, num, out_dir, batch_size=batch)
  run.generate(list(range(run.batch_size)))  # compile
  start = time.perf_counter()
  run.run()
  return num / (time.perf_counter() - start)


def _pairs(out_dir):
  import json  # pylint: disable=g-import-not-at-top
  coco = json.load(open(os.path.join(out_dir, "annotations.json")))
  for im in coco["images"]:
    image = np.asarray(Image.open(os.path.join(out_dir, im["file_name"])))
    yield image, np.asarray(Image.open(os.path.join(out_dir, im["mask_file"]))) > 0


SMALL_ARGS = ["--num", "16", "--batch", "8", "--size", "64", "--source", "procedural"]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num", type=int, default=64)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--source", default="fabricsim:simple:train")
  parser.add_argument("--backgrounds", default="fabricsim:simple:target_good")
  parser.add_argument("--inpainter", default=None)
  parser.add_argument("--multistage", default=None)
  args = parser.parse_args(argv)

  if args.source != "procedural":
    from fabgen.data.readers import open_source  # pylint: disable=g-import-not-at-top
    src = open_source(args.source)
    real = [src[i] for i in range(min(len(src), 200))]
    bgs = backgrounds_lib.open_backgrounds(args.backgrounds, (args.size, args.size))
  else:
    real = _procedural(64, args.size, 0, True)
    bgs = backgrounds_lib.open_backgrounds(
        [r["image"] for r in _procedural(32, args.size, 1, False)])
  methods = {"cutpaste": (cutpaste.CutPasteSynthesizer.from_records(real, 64), True)}
  methods["inpainter"] = ((base.load("inpainter", args.inpainter), True) if args.inpainter
                      else (_untrained_inpainter(), False))
  if args.multistage:
    methods["multistage"] = (base.load("multistage", args.multistage), True)
  ref = seam_quality.set_statistics(seam_quality.source_pairs(real))
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}; {args.size}x{args.size}, "
        f"num={args.num}, batch={args.batch}")
  print(f"{'method':<12}{'img/s':>8}{'grad_gap':>10}{'band_fd':>10}  note")
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name, (synth, trained) in methods.items():
      out = os.path.join(tmp, name)
      ips = time_method(synth, bgs, args.num, args.batch, out)
      q = seam_quality.seam_quality(_pairs(out), ref)
      print(f"{name:<12}{ips:>8.1f}{q['grad_gap']:>10.3f}{q['band_fd']:>10.4f}  "
            f"{'' if trained else 'untrained weights: seam numbers not meaningful'}")
      rows.append({"method": name, "images_per_s": ips, **q, "trained": trained})
  return rows


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
