"""LoRA bookkeeping on pure-dict parameters: split trainable from frozen, fold LoRA into kernels.

A `Dense` built with a LoRA rank has `kernel`, `bias`, `lora_a` [in, r] and `lora_b` [r, out]
leaves; its output is x W + b + (alpha / r) x A B. With LoRA on, only the `lora_*` leaves train:
`partition` splits a tree into (trainable, frozen) dicts of the same nesting with disjoint leaves,
`combine` puts them back, and `merge` folds (alpha / r) A B into W and drops the pairs - the base
diffusers layout again, for export or faster sampling.
"""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp

LORA_KEYS = ("lora_a", "lora_b")


def is_lora_path(path: tuple) -> bool:
  return bool(path) and path[-1] in LORA_KEYS


def partition(tree: dict, trainable: Callable[[tuple], bool]) -> tuple[dict, dict]:
  """(trainable, frozen) sub-dicts by a predicate on the key path; empty branches are dropped."""
  def walk(node, path):
    if not isinstance(node, dict):
      return (node, None) if trainable(path) else (None, node)
    t, f = {}, {}
    for k, v in node.items():
      a, b = walk(v, path + (k,))
      if a is not None and not (isinstance(a, dict) and not a):
        t[k] = a
      if b is not None and not (isinstance(b, dict) and not b):
        f[k] = b
    return t, f
  return walk(tree, ())


def combine(a: dict, b: dict) -> dict:
  """Deep union of two disjoint nested dicts."""
  out = dict(a)
  for k, v in b.items():
    if k in out:
      if not (isinstance(out[k], dict) and isinstance(v, dict)):
        raise ValueError(f"lora.combine: key {k!r} is a leaf in both trees")
      out[k] = combine(out[k], v)
    else:
      out[k] = v
  return out


def merge(tree: dict, rank: int, alpha: float) -> dict:
  """W <- W + (alpha / rank) A B at every Dense with a LoRA pair; the pairs are removed."""
  if not isinstance(tree, dict):
    return tree
  if "lora_a" in tree and "lora_b" in tree:
    out = {k: v for k, v in tree.items() if k not in LORA_KEYS}
    delta = (alpha / rank) * (tree["lora_a"] @ tree["lora_b"])
    out["kernel"] = tree["kernel"] + delta.astype(tree["kernel"].dtype)
    return out
  return {k: merge(v, rank, alpha) for k, v in tree.items()}


def strip(tree: Any) -> Any:
  """The tree without LoRA leaves (what a rank-0 model expects)."""
  return partition(tree, is_lora_path)[1]


def count(tree: dict) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return int(sum(jnp.size(x) for x in jax.tree.leaves(tree)))
