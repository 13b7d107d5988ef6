"""Shardings of the state and the batch, from config rules and abstract shapes only.

The state's shardings are computed from `jax.eval_shape(task.init_state, rng)`, so that
`jax.jit(init_state, out_shardings=...)` creates every parameter already in place and nothing is
materialised whole on one device. Rules are (param-path regex, tactic) pairs, first match wins,
as in big_vision: "replicate", "fsdp" (largest divisible dim over the fsdp axis), or an explicit
per-dim tuple of mesh or logical axis names. Unmatched leaves are replicated, except big ones
(>= `fsdp_min_size` elements) when the fsdp axis is larger than 1.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from fabgen.platform import mesh as mesh_lib


# Rules of the production configs (configs/*.py `sharding_rules`), first match wins; leaves no
# rule names fall to the default: fsdp over their largest divisible dim when at least
# `fsdp_min_size` elements, replicated below (an all-gather of a few KB costs more than it saves).
#  - Per-channel vectors (biases, norm scales, R3GAN's biased activations) are replicated at any
#    size: every example reads all of them, in every block.
#  - Convolutional GANs (stage 1, fusion, inpainter, DGT) and the texture VGG: no tensor
#    parallelism. Their largest layer is a 1x1 conv of 768 x 1536 (r3gan_compare; 256 x 512 at
#    stage1:64/128, ~0.5 MB in f32) and a 64-128 px step is dominated by activations, which the
#    batch axes already split; fsdp alone bounds parameter + Adam memory.
#  - Detector (base): the transformer FFNs (256 x 1024 per layer, 6 decoder + encoder layers)
#    split their hidden dim over `tensor` (logical "mlp") and their model dim over fsdp
#    ("embed"), Megatron-style: ffn1 column-, ffn2 row-parallel; with mesh.tensor = 1 this is
#    plain fsdp.
VECTOR_RULES = ((r"(^|/)(bias|scale)$", "replicate"),)
CONV_GAN_RULES = VECTOR_RULES
DETECTOR_RULES = ((r"(^|/)ffn1/kernel$", ("embed", "mlp")),
                  (r"(^|/)ffn2/kernel$", ("mlp", "embed"))) + VECTOR_RULES


def path_str(path) -> str:
  """`("params", "conv", "kernel")` key path -> "params/conv/kernel" (what rules match)."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def _logical_to_mesh(name, logical_rules: Mapping[str, Any]):
  if name is None or name in mesh_lib.AXES:
    return name
  if isinstance(name, (tuple, list)):
    return tuple(_logical_to_mesh(n, logical_rules) for n in name)
  if name not in logical_rules:
    raise ValueError(f"sharding: {name!r} is neither a mesh axis {mesh_lib.AXES} nor a logical "
                     f"axis in logical_axis_rules {sorted(logical_rules)}")
  return logical_rules[name]


def fsdp_spec(shape: Sequence[int], fsdp: int) -> P:
  """Shards the largest dim divisible by `fsdp` over the fsdp axis; replicated if none is."""
  if fsdp <= 1:
    return P()
  dims = sorted(range(len(shape)), key=lambda d: -shape[d])
  for d in dims:
    if shape[d] % fsdp == 0:
      spec = [None] * len(shape)
      spec[d] = "fsdp"
      return P(*spec)
  return P()


def leaf_spec(path: str, shape: Sequence[int], mesh: jax.sharding.Mesh, rules,
              logical_rules: Mapping[str, Any], fsdp_min_size: int) -> P:
  """The PartitionSpec of one state leaf under the rules (see module docstring)."""
  fsdp = mesh.shape["fsdp"]
  if len(shape) == 0:
    return P()
  for regex, tactic in rules:
    if not re.search(regex, path):
      continue
    if tactic == "replicate":
      return P()
    if tactic == "fsdp":
      return fsdp_spec(shape, fsdp)
    if isinstance(tactic, str):
      raise ValueError(f"sharding rule {regex!r}: unknown tactic {tactic!r}")
    tactic = tuple(tactic)
    if len(tactic) != len(shape):
      raise ValueError(f"sharding rule {regex!r} -> {tactic} has {len(tactic)} entries, but "
                       f"{path} has shape {tuple(shape)}")
    spec = tuple(_logical_to_mesh(t, logical_rules) for t in tactic)
    for dim, axes in zip(shape, spec):
      size = int(np.prod([mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else
                                                  (axes or ()))]))
      if dim % size:
        raise ValueError(f"sharding rule {regex!r}: {path} dim {dim} is not divisible by "
                         f"{axes} (size {size}) of the mesh")
    return P(*spec)
  if fsdp > 1 and int(np.prod(shape)) >= fsdp_min_size:
    return fsdp_spec(shape, fsdp)
  return P()


def state_specs(abstract_state, mesh: jax.sharding.Mesh, rules=(), logical_axis_rules=(),
                fsdp_min_size: int = 2 ** 14):
  """PartitionSpecs for every leaf of an abstract state (a pytree of ShapeDtypeStructs)."""
  logical = dict((k, tuple(v) if isinstance(v, list) else v) for k, v in logical_axis_rules)
  rules = [(r, t if isinstance(t, str) else tuple(t)) for r, t in rules]
  return jax.tree_util.tree_map_with_path(
      lambda p, x: leaf_spec(path_str(p), x.shape, mesh, rules, logical, fsdp_min_size),
      abstract_state)


def state_shardings(abstract_state, mesh: jax.sharding.Mesh, config) -> Any:
  """NamedShardings of the state under `config.sharding_rules` / `logical_axis_rules`."""
  specs = state_specs(abstract_state, mesh, config.get("sharding_rules", ()),
                      config.get("logical_axis_rules", ()),
                      config.get("fsdp_min_size", 2 ** 14))
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                      is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: jax.sharding.Mesh, axes: Mapping[str, Any] | None = None, key=None):
  """Leading (batch) axis over (data, fsdp); `axes[key]` (a PartitionSpec) overrides it."""
  if axes and key in axes:
    return NamedSharding(mesh, axes[key])
  return NamedSharding(mesh, P(mesh_lib.BATCH_AXES))


def constrain(x: jax.Array, *names, logical_axis_rules=(("batch", ("data", "fsdp")),)):
  """Activation sharding constraint by logical (or mesh) axis names, one per dim.

  Inside the platform's jitted step the mesh is set (`jax.set_mesh`), so a model may say
  `constrain(h, "batch", None, None, "channels", logical_axis_rules=rules)`; outside any mesh
  (host-side evaluation, unit tests) it is a no-op, so model code runs unchanged everywhere.
  Axes the current mesh does not have, or that do not divide the dim, are left unsharded.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  logical = dict((k, tuple(v) if isinstance(v, list) else v) for k, v in logical_axis_rules)
  spec = []
  for dim, name in zip(x.shape, names):
    axes = _logical_to_mesh(name, logical) if name is not None else None
    group = (axes,) if isinstance(axes, str) else tuple(axes or ())
    size = int(np.prod([mesh.shape.get(a, 0) for a in group])) if group else 1
    spec.append(axes if group and size > 0 and dim % size == 0 else None)
  return jax.lax.with_sharding_constraint(x, P(*spec))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh,
                 axes: Mapping[str, Any] | None = None) -> dict[str, jax.Array]:
  """This process's batch -> global arrays laid out over the mesh (works for 1 or N processes).

  Each process holds `global_batch / process_count` rows; `make_array_from_process_local_data`
  stitches them without any host seeing the global batch.
  """
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    sharding = batch_sharding(mesh, axes, key)
    global_shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
    n = mesh.shape["data"] * mesh.shape["fsdp"]
    if global_shape[0] % n:
      raise ValueError(f"batch[{key!r}]: global batch {global_shape[0]} is not divisible by the "
                       f"data x fsdp mesh axes ({n})")
    out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  return out


def with_shardings(abstract_state, shardings):
  """ShapeDtypeStructs carrying shardings: the restore target for orbax and AOT compiles."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract_state, shardings)


def to_host(tree):
  """Numpy copy of a (possibly sharded, possibly multi-process) pytree, on every process.

  For host-side evaluation (`Task.evaluate`): fully addressable or replicated arrays are fetched
  directly, arrays sharded across processes are all-gathered first.
  """
  def fetch(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
      return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree.map(fetch, tree)
