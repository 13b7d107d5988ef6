"""`fabgen evaluate` on line-scan strips: strips/s and peak resident memory, at two set sizes.

  python -m benchmarks.bench_evaluate --checkpoint DET --data STRIPS [--good GOOD] \
      [--sizes 26,104] [--pitch 0.1]

Runs the real command in a child process under `/usr/bin/time -v` once per size (`--limit N`
spread over the set, plus the defect-free images) and reports the wall time, strips/s and
"Maximum resident set size". Peak memory per strip is the growth of the peak between the two
sizes divided by the extra strips: near zero when evaluation memory is bounded (before it was,
30 real 4096x256 strips peaked at 5.1 GB and 103 at 24 GB). Without --checkpoint / --data it
builds what it needs: 2-step `configs/detector.py:small` training and `fabricsim:linescan`
strips written to disk (minutes).

SMALL_ARGS (run_all) evaluates 3 and 6 `linescan_tiny` strips (all its target_test) with a tiny
detector.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

SMALL_ARGS = ["--preset", "linescan_tiny", "--variant", "tiny", "--sizes", "3,6", "--good-num", "4"]


def _fabgen(*args: str, env=None) -> list[str]:
  return [sys.executable, "-m", "fabgen.cli.main", *args]


def measure(cmd: list[str]) -> dict:
  """Runs cmd under /usr/bin/time -v: wall seconds, peak RSS (bytes), exit status."""
  t = time.time()
  proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                        check=False)
  wall = time.time() - t
  m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
  if proc.returncode != 0 or m is None:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                       f"{proc.stderr[-3000:]}")
  return {"wall_s": wall, "peak_rss_bytes": int(m.group(1)) * 1024, "stdout": proc.stdout}


def prepare(workdir: str, preset: str, variant: str, num: int, good_num: int) -> tuple[str, ...]:
  """A briefly trained detector and strips on disk (reused when already there)."""
  det = os.path.join(workdir, f"det_{variant}")
  if not os.path.isdir(det):
    subprocess.run(_fabgen("train", "--config", f"configs/detector.py:{variant},steps=2",
                           "--workdir", det), check=True, capture_output=True)
  strips, good = os.path.join(workdir, f"{preset}_test"), os.path.join(workdir, f"{preset}_good")
  for out, split, n in ((strips, "target_test", num), (good, "target_good", good_num)):
    if not os.path.exists(os.path.join(out, "manifest.json")):
      subprocess.run(_fabgen("data", "synth", "--preset", preset, "--split", split, "--num",
                             str(n), "--out", out, "--batch-size", "4"), check=True,
                     capture_output=True)
  return det, strips, good


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", default="")
  parser.add_argument("--data", default="")
  parser.add_argument("--good", default="")
  parser.add_argument("--sizes", default="26,104", help="two numbers of defect strips")
  parser.add_argument("--pitch", type=float, default=0.1, help="mm per row (false alarms / m)")
  parser.add_argument("--preset", default="linescan")
  parser.add_argument("--variant", default="small")
  parser.add_argument("--good-num", type=int, default=24)
  parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "bench_evaluate"))
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)
  sizes = [int(s) for s in args.sizes.split(",")]
  det, strips, good = args.checkpoint, args.data, args.good
  if not (det and strips):
    det, strips, good = prepare(args.workdir, args.preset, args.variant, max(sizes),
                                args.good_num)
  results = {"checkpoint": det, "data": strips, "good": good, "runs": []}
  for n in sizes:
    out = os.path.join(args.workdir, f"eval_{n}")
    cmd = _fabgen("evaluate", "--checkpoint", det, "--data", strips, "--limit", str(n),
                  "--out", out, "--threshold", "0.3", "--pixel-pitch-mm", str(args.pitch),
                  "--no-progress")
    if good:
      cmd += ["--good", good]
    r = measure(cmd)
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
      report = json.load(f)
    images = report["num_images"]
    run = {"strips": n, "images": images, "wall_s": round(r["wall_s"], 1),
           "strips_per_s": round(images / r["wall_s"], 3),
           "peak_rss_gb": round(r["peak_rss_bytes"] / 2**30, 3),
           "false_alarms_per_good_image": report["false_alarms"]["per_good_image"]}
    results["runs"].append(run)
    print(f"evaluate {images} images ({n} defect strips): {run['wall_s']} s, "
          f"{run['strips_per_s']} images/s (compile included), peak RSS {run['peak_rss_gb']} GB",
          flush=True)
  a, b = results["runs"][0], results["runs"][-1]
  extra = b["images"] - a["images"]
  results["peak_mb_per_extra_strip"] = (round((b["peak_rss_gb"] - a["peak_rss_gb"]) * 1024 / extra,
                                              2) if extra else None)
  print(f"peak memory growth: {results['peak_mb_per_extra_strip']} MB per extra strip", flush=True)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)
  return results


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
