"""Trace cost of building a diffusion U-Net with `nnx.Rngs` vs the bridge's `KeyStream`.

  python -m benchmarks.bench_nnx_trace --variant tiny      # or sd2 (about a minute on a CPU)

Why `nnx_bridge.PureModule(key_stream=True)` exists: it times `nnx.eval_shape` of the module and
`jax.make_jaxpr` of its init (what `jit(init_state)` traces) with both key sources. Nothing is
compiled or allocated; the figures are Python/trace time only.
"""

from __future__ import annotations

import argparse
import time

import jax
from flax import nnx

from fabgen.diffusion import unet as unet_lib
from fabgen.diffusion.sizes import model_config
from fabgen.platform import nnx_bridge

SMALL_ARGS = ["--variant", "tiny"]


def _seconds(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="tiny", choices=("tiny", "64", "sd2"))
  args = parser.parse_args(argv)
  cfg = unet_lib.UNetConfig.from_dict(model_config(args.variant).unet.to_dict())
  build = lambda rngs: unet_lib.UNet2DConditionModel(cfg, rngs=rngs)
  init = lambda rngs: nnx.to_pure_dict(nnx.state(build(rngs)))
  key = jax.random.key(0)
  result = {"variant": args.variant}
  for name, rngs in (("key_stream", nnx_bridge.KeyStream), ("nnx_rngs", nnx.Rngs)):
    result[f"eval_shape_s/{name}"] = _seconds(lambda: nnx.eval_shape(lambda: build(rngs(0))))
    result[f"trace_init_s/{name}"] = _seconds(
        lambda: jax.make_jaxpr(lambda k: init(rngs(k)))(key))
  for k, v in result.items():
    print(f"{k}: {v if isinstance(v, str) else f'{v:.2f}'}")
  return result


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
