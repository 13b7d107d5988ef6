"""The device mesh: named axes (data, fsdp, tensor) sized by the config, -1 = the rest.

A run moves from one CPU to a pod by changing `config.mesh`, never code: the same named axes
exist on every mesh (size 1 where unused), so sharding rules and batch specs never change.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Resolves -1 and checks that the axis sizes multiply to `num_devices`."""
  shape = [int(sizes.get(a, 1)) for a in AXES]
  unknown = [i for i, s in enumerate(shape) if s == -1]
  if len(unknown) > 1:
    raise ValueError(f"mesh {dict(zip(AXES, shape))}: at most one axis may be -1")
  known = math.prod(s for s in shape if s != -1)
  if unknown:
    if num_devices % known:
      raise ValueError(f"mesh {dict(zip(AXES, shape))}: {num_devices} devices are not divisible "
                       f"by the fixed axes' product {known}")
    shape[unknown[0]] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(f"mesh {dict(zip(AXES, shape))} needs {math.prod(shape)} devices, "
                     f"but {num_devices} are available")
  return tuple(shape)


def make_mesh(sizes: Mapping[str, int],
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """`jax.make_mesh` over `devices` (default: all, every process) with the named axes."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(sizes, len(devices))
  if len(devices) == len(jax.devices()):
    # Let JAX pick a topology-aware device order (ICI rings on TPU, NVLink on GPU).
    return jax.make_mesh(shape, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES),
                         devices=devices)
  return jax.sharding.Mesh(np.asarray(devices).reshape(shape), AXES,
                           axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))


def describe(mesh: jax.sharding.Mesh) -> str:
  """`data=4 fsdp=2 tensor=1 (8 devices, 1 process)` for logs."""
  sizes = " ".join(f"{k}={v}" for k, v in mesh.shape.items())
  return f"{sizes} ({mesh.size} devices, {jax.process_count()} process(es))"
