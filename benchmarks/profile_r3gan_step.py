"""Where the `r3gan_compare` step spends its time: per-op CPU time from the JAX profiler.

  python -m benchmarks.profile_r3gan_step                      # batch 16, the compared step
  python -m benchmarks.profile_r3gan_step --batch 4 --top 40   # a quicker look

Runs the step of `benchmarks/bench_r3gan_compare.py` once to warm up and once under
`jax.profiler.trace`, then sums the XLA:CPU executor's events per HLO instruction and groups
them by what the instruction does (convolution, dot, the fused elementwise rest, copies): the
table that says which pass to work on. Durations are per-thread busy time, so on N intra-op
threads they can add up to N x the wall time of the step. An op XLA runs asynchronously (its
Eigen convolution, started on one thread and finished on the pool) is timed from its start event
to its `end:` event.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time

import jax
from jax.profiler import ProfileData

from benchmarks import bench_r3gan_compare
from fabgen.platform import cpu_runtime

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = [^=]*? ([\w\-]+)\(", re.M)


_CORES = ("convolution", "dot", "reduce", "concatenate", "pad", "transpose")


def opcodes(hlo_text: str) -> dict[str, tuple[str, str]]:
  """Instruction name -> (opcode, what it computes): for a fusion `fusion:<core op>` and the core
  instruction's text (shapes, window, feature_group_count), else the instruction's own shape."""
  ops = dict(_INSTRUCTION.findall(hlo_text))
  kinds = {}
  for name, op in ops.items():
    line = re.search(rf"^\s*(?:ROOT )?%?{re.escape(name)} = (.*)$", hlo_text, re.M).group(1)
    detail = line.split(" ", 1)[0]
    if op == "fusion":
      called = re.search(r"calls=%?([\w.\-]+)", line)
      comp = called and re.search(rf"^%?{re.escape(called.group(1))} .*?\{{\n(.*?)\n\}}",
                                  hlo_text, re.S | re.M)
      body = comp.group(1) if comp else ""
      core = next((k for k in _CORES if re.search(rf" {k}\(", body)), None)
      op = "fusion:" + (core or "elementwise")
      if core:
        inner = re.search(rf"= (.*? {core}\(.*)$", body, re.M).group(1)
        detail = re.sub(r", metadata=.*$", "", inner)
    kinds[name] = (op, re.sub(r"\{[0-9,]+\}", "", detail)[:160])
  return kinds


def profile(batch: int, conv_impl: str = "auto") -> tuple[list, float]:
  """(rows (seconds, count, name, kind, detail) per instruction, wall seconds of the step)."""
  run, _ = bench_r3gan_compare.build_fabgen(batch, conv_impl)  # compiles and warms up
  compiled_text = run.compiled.as_text()
  kinds = opcodes(compiled_text)
  with tempfile.TemporaryDirectory() as outdir:
    with jax.profiler.trace(outdir):
      wall = time.perf_counter()
      run(1)
      wall = time.perf_counter() - wall
    data = ProfileData.from_file(sorted(glob.glob(f"{outdir}/**/*.xplane.pb", recursive=True))[-1])
    starts, ends = collections.defaultdict(list), collections.defaultdict(list)
    for plane in data.planes:
      if "cpu" not in plane.name.lower() and "host" not in plane.name.lower():
        continue
      for line in plane.lines:
        if "PjRtCpuClient" in line.name:
          continue
        for event in line.events:
          name = event.name
          if name in kinds:  # the executor's event for one HLO instruction
            starts[name].append((event.start_ns, event.duration_ns))
          elif name.startswith("end: ") and name[5:] in kinds:
            ends[name[5:]].append(event.start_ns + event.duration_ns)
  # An op the executor runs asynchronously (XLA's Eigen convolution) has a short event where it
  # is started and an "end: <name>" event where a pool thread finishes it: time from one to the
  # other. A synchronous op's own event spans it.
  total, count = collections.Counter(), collections.Counter()
  for name, spans in starts.items():
    spans.sort()
    done = sorted(ends.get(name, ()))
    for i, (start, duration) in enumerate(spans):
      end = done[i] if i < len(done) else start + duration
      total[name] += max(end - start, duration) / 1e9
      count[name] += 1
  rows = [(s, count[n], n, *kinds[n]) for n, s in total.most_common()]
  return rows, wall


def main(argv: list[str] | None = None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--conv-impl", default="auto")
  parser.add_argument("--top", type=int, default=25, help="instructions listed one by one")
  args = parser.parse_args(argv)
  rows, wall = profile(args.batch, args.conv_impl)
  busy = sum(r[0] for r in rows)
  by_kind = collections.Counter()
  for seconds, _, _, kind, _ in rows:
    by_kind[kind] += seconds
  print(f"r3gan_compare step, batch {args.batch}: {wall:.2f} s wall, {busy:.2f} s of op time "
        f"in {len(rows)} instructions")
  for kind, seconds in by_kind.most_common():
    print(f"  {seconds:8.2f} s  {100 * seconds / busy:5.1f} %  {kind}")
  print("top instructions:")
  for seconds, n, name, kind, detail in rows[:args.top]:
    print(f"  {seconds:8.3f} s  x{n:<3d} {kind:20s} {name:28s} {detail}")


if __name__ == "__main__":
  cpu_runtime.start()
  main()
