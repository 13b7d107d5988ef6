"""A sha256 of FabricSim's outputs over six presets, to prove a speed-up renders the same data set.

  python -m benchmarks.fabricsim_digest [--save before.npz]      # on the old code
  python -m benchmarks.fabricsim_digest [--save after.npz]       # on the new code: same digest

Renders `simple` train 0-127 (batch 64) and test 0-31, `tiny` train, `complex` train 0-31,
`simple_far` target_test, `linescan_tiny` train 0-7, `tiny` `render_pairs` and one single
`render`, and hashes every output array with its name. Equal digests on one machine mean the
records are bit-identical; the digest is not a cross-machine golden (XLA:CPU may round a
transcendental differently on another instruction set). `--save` keeps the arrays for a diff.
Slow to compile (about 10 min of wall time on the 2 loaded cores; 2.6 CPU-minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # pylint: disable=wrong-import-position

from fabgen.data.fabricsim import FabricSim  # pylint: disable=wrong-import-position

# (preset, split, records, batch size)
CASES = (("simple", "train", 128, 64), ("simple", "test", 32, 16), ("tiny", "train", 24, 8),
         ("complex", "train", 32, 16), ("simple_far", "target_test", 16, 16),
         ("linescan_tiny", "train", 8, 4))


def outputs() -> dict[str, np.ndarray]:
  out = {}

  def put(name, arrays):
    for key, value in arrays.items():
      out[f"{name}/{key}"] = np.asarray(value)

  for preset, split, n, batch in CASES:
    sim = FabricSim(preset, seed=1)
    put(f"{preset}_{split}", sim.records(split, 0, min(n, sim.num_records(split)),
                                         batch_size=batch))
  sim = FabricSim("tiny", seed=3)
  specs = sim.record_specs("train", 0, 16)
  put("tiny_pairs", sim.render_pairs(specs[:, 0], specs[:, 1], specs[:, 2]))
  put("tiny_single", sim.render(*specs[5]))
  return out


def digest(arrays: dict[str, np.ndarray]) -> str:
  h = hashlib.sha256()
  for key in sorted(arrays):
    h.update(key.encode())
    h.update(np.ascontiguousarray(arrays[key]).tobytes())
  return h.hexdigest()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--save", default=None, help="also write the arrays to this .npz")
  args = parser.parse_args(argv)
  arrays = outputs()
  if args.save:
    np.savez_compressed(args.save, **arrays)
  print(f"{len(arrays)} arrays, sha256 {digest(arrays)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
