"""Ahead-of-time compile a train step for a target mesh; report memory per device.

  fabgen compile --config configs/reference.py:big --mesh data=8
  fabgen compile --config configs/fusion.py:128 --mesh data=16,fsdp=4 --platform cpu
  fabgen compile --config configs/reference.py:big --mesh data=4,fsdp=4 --topology v5e:4x4

Nothing is read or allocated: the state (`jax.eval_shape` of `init_state`) and the batch
(`Task.abstract_batch`) are abstract, so the answer (does it fit?) comes before holding the pod
and before any training set is built. `--platform cpu` compiles on this host with as many forced
CPU devices as the mesh needs (argument/state bytes are exact, temporaries are XLA:CPU's), with
code generation at -O0 (`aot.MEMORY_CHECK_OPTIONS`: the same memory and cost analysis, half the
time; `--full-codegen` turns it off); `--topology` compiles for a TPU slice through
`jax.experimental.topologies` where libtpu is installed (`pip install -e '.[tpu-compile]'`).
Prints memory per device and XLA's FLOPs and bytes accessed per device and per image.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys



def _parse_mesh(text: str) -> dict[str, int]:
  sizes = {}
  for kv in filter(None, text.split(",")):
    key, _, value = kv.partition("=")
    if key not in ("data", "fsdp", "tensor") or not value.lstrip("-").isdigit():
      raise SystemExit(f"fabgen compile: bad --mesh entry {kv!r}; use data=N,fsdp=N,tensor=N")
    sizes[key] = int(value)
  return sizes


TAKES_CONFIG_OVERRIDES = True  # `--config.a.b=v` reach run() as args.overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", required=True, help="config file and variant")
  parser.add_argument("--mesh", default="", help="target mesh, e.g. data=8,fsdp=2 (no -1)")
  parser.add_argument("--platform", default="auto", choices=("auto", "cpu"),
                      help="cpu: compile on forced host devices (any mesh size)")
  parser.add_argument("--topology", default=None, help="TPU topology, e.g. v5e:4x4 (needs libtpu)")
  parser.add_argument("--memory-limit-gib", type=float, default=None,
                      help="exit 1 if the per-device total exceeds this")
  parser.add_argument("--json", default=None, help="write the report here")
  parser.add_argument("--full-codegen", action="store_true",
                      help="with --platform cpu: optimise the machine code too (slower; the "
                           "memory and FLOP figures are the same)")


def run(args: argparse.Namespace) -> int:
  sizes = _parse_mesh(args.mesh)
  if args.platform == "cpu":
    # Must happen before JAX initialises its backends (nothing above imports jax).
    n = math.prod(v for v in sizes.values() if v > 0) or 1
    os.environ["JAX_PLATFORMS"] = "cpu"
    flags = os.environ.get("XLA_FLAGS", "")
    flags = " ".join(f for f in flags.split() if "force_host_platform_device_count" not in f)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
  import jax  # pylint: disable=g-import-not-at-top
  from fabgen.platform import aot  # pylint: disable=g-import-not-at-top
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.get(args.config, args.overrides)
  except config_lib.ConfigError as e:
    print(f"fabgen compile: {e}", file=sys.stderr)
    return 2
  devices = None
  if args.topology and config.get("model") and config.model.get("conv_impl") == "auto":
    # "auto" resolves on JAX's default backend, the host CPU here, whose grouped-conv custom VJP
    # is not what the target TPU runs; compile the TPU's choice (fabgen.nn.grouped_conv).
    from fabgen.nn import grouped_conv  # pylint: disable=g-import-not-at-top
    with config.unlocked():
      config.model.conv_impl = grouped_conv.default_impl("tpu")
    print(f"fabgen compile: model.conv_impl=auto compiles as {config.model.conv_impl!r}, the "
          f"formulation a TPU picks")
  if args.topology:
    try:
      from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
      devices = topologies.get_topology_desc(args.topology, "tpu").devices
    except Exception as e:  # pylint: disable=broad-except
      print(f"fabgen compile: cannot describe TPU topology {args.topology!r} here: {e}",
            file=sys.stderr)
      return 2
  needed = math.prod(v for v in sizes.values() if v > 0) if sizes else None
  available = len(devices) if devices is not None else jax.device_count()
  if needed and needed > available and -1 not in sizes.values():
    print(f"fabgen compile: mesh {sizes} needs {needed} devices, {available} here; use "
          f"--platform cpu (forced host devices) or --topology", file=sys.stderr)
    return 2
  if needed and needed < available and devices is None:
    devices = jax.devices()[:needed]
  options = None
  if args.platform == "cpu" and not args.full_codegen:
    options = aot.MEMORY_CHECK_OPTIONS  # same memory and FLOPs, half the compile time
  report = aot.aot_compile(config, sizes, devices=devices, compiler_options=options)
  mem = report["memory"]
  gib = mem.get("total_bytes_per_device", 0) / 2 ** 30
  print(f"{config.task}: mesh {report['mesh']} on {report['devices']} x {report['device_kind']}"
        f" compiled in {report['compile_s']:.1f}s (lowered in {report['lower_s']:.1f}s), "
        f"global batch {report['global_batch']}")
  print("  memory per device:")
  for key, value in mem.items():
    print(f"  {key:<32} {value / 2 ** 20:12.2f} MiB")
  print(f"  state (all devices)              {report['state_bytes_total'] / 2 ** 20:12.2f} MiB")
  per_device = report["flops_per_device"]
  if per_device is not None:
    print(f"  XLA cost per device: {per_device / 1e9:.2f} GFLOP, "
          f"{(report['bytes_accessed_per_device'] or 0) / 2 ** 30:.2f} GiB accessed; "
          f"{per_device * report['devices'] / report['global_batch'] / 1e9:.3f} GFLOP per image")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)
  if args.memory_limit_gib is not None and gib > args.memory_limit_gib:
    print(f"fabgen compile: {gib:.2f} GiB per device exceeds --memory-limit-gib "
          f"{args.memory_limit_gib}", file=sys.stderr)
    return 1
  return 0
