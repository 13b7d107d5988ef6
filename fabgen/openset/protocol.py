"""Open-set recognition of defect types: train on k known classes, test on all six.

For each split (a tuple of known class names; the rest of FabricSim's six classes are unknown):
  1. train DGT (`configs/dgt.py` with `data.classes` = the known classes) through the platform,
     in `<workdir>/split<i>/dgt` (resumable: a finished split keeps `result.json`);
  2. fit OpenMax (`fabgen.dgt.openmax`) to DFC's logits on the training frames;
  3. on test frames of every class (FabricSim `test` images, never seen in training):
       closed-set accuracy   argmax over the known classes, on known-class frames only;
       unknown AUROC         P(unknown) from OpenMax | 1 - max softmax (the baseline), with the
                             unknown-class frames as positives;
       open-set macro-F1     over the k known classes + "unknown", OpenMax's decision vs the
                             softmax baseline's (unknown when max softmax < threshold);
       DIS pixel F1 / AUROC  the heat map against the exact masks, over all frames (known and
                             unknown classes): segmentation is class-agnostic, so unseen types
                             should be found too; F1 at heat > 0.5.
The table has one row per split and a mean row; `openset.json` keeps every number.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fabgen.data import classes as classes_lib
from fabgen.dgt import data as data_lib
from fabgen.dgt import openmax
from fabgen.openset import metrics

COLUMNS = ("closed acc", "AUROC DFC", "AUROC softmax", "macro-F1 DFC", "macro-F1 softmax",
           "DIS pixel F1", "DIS pixel AUROC")
_ABBREV = {"color_spot": "CS", "oil_stain": "OS", "knot": "KN", "broken_end": "BE",
           "broken_yarn": "BY", "white_stripe": "WS"}


def validate(config: ml_collections.ConfigDict) -> None:
  if not config.splits:
    raise ValueError("config.splits is empty; give at least one tuple of known class names")
  for i, known in enumerate(config.splits):
    ids = [classes_lib.class_id(n) for n in known]
    if len(set(ids)) != len(ids) or not 2 <= len(ids) < classes_lib.NUM_CLASSES:
      raise ValueError(f"config.splits[{i}]={tuple(known)}: need 2..5 distinct known classes "
                       f"(the rest are the unknowns)")


def _batched(fn, arrays, batch: int):
  """Applies jitted `fn` to fixed-size batches (padded: one compile) and concatenates."""
  n = len(arrays[0])
  outs = []
  for lo in range(0, n, batch):
    part = [a[lo:lo + batch] for a in arrays]
    k = len(part[0])
    padded = [np.concatenate([p, np.repeat(p[-1:], batch - k, 0)]) for p in part]
    outs.append(jax.tree.map(lambda x: np.asarray(x)[:k], fn(*padded)))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def evaluate_split(task, state, config: ml_collections.ConfigDict) -> dict:
  """The protocol's numbers for one trained DGT state (see the module docstring)."""
  dfc_params, dis_params = jax.device_get(state["dfc"]), jax.device_get(state["dis"])
  unit = lambda x: jnp.asarray(x, jnp.float32) / 255.0  # noqa: E731
  logits_fn = jax.jit(lambda x: task.classify(dfc_params, unit(x))[0])
  heat_fn = jax.jit(lambda x: jax.nn.sigmoid(task.segment(dis_params, unit(x))[1]))
  b = int(config.eval.batch_size)
  train = task.get_pairs()
  f = task.config.dfc
  om = openmax.OpenMax.fit(_batched(logits_fn, [train["image"]], b), train["label"],
                           f.tail_size, f.alpha, f.threshold, f.distance)

  test = data_lib.paired_set(config.eval.source, classes_lib.CLASSES, config.eval.num_records,
                             task.config.image_size)
  known_ids = list(data_lib.class_indices(task.class_names))
  truth = np.asarray([known_ids.index(c) if c in known_ids else openmax.UNKNOWN
                      for c in test["class_id"]])
  is_unknown = truth == openmax.UNKNOWN
  logits = _batched(logits_fn, [test["image"]], b)
  heat = _batched(heat_fn, [test["image"]], b)
  dfc_pred, dfc_unknown = om.predict(logits)
  soft_pred, soft_unknown = openmax.softmax_predict(logits, config.eval.softmax_threshold)
  labels = list(range(len(known_ids))) + [openmax.UNKNOWN]
  mask = test["mask"] > 0.5
  return {
      "known": list(task.class_names),
      "num_test": int(len(truth)), "num_unknown": int(is_unknown.sum()),
      "closed acc": float(np.mean(np.argmax(logits[~is_unknown], -1) == truth[~is_unknown])),
      "AUROC DFC": metrics.auroc(dfc_unknown, is_unknown),
      "AUROC softmax": metrics.auroc(soft_unknown, is_unknown),
      "macro-F1 DFC": metrics.macro_f1(truth, dfc_pred, labels),
      "macro-F1 softmax": metrics.macro_f1(truth, soft_pred, labels),
      "DIS pixel F1": metrics.f1(heat > 0.5, mask),
      "DIS pixel AUROC": metrics.auroc(heat, mask),
      "DIS pixel F1 unknown classes": metrics.f1(heat[is_unknown] > 0.5, mask[is_unknown]),
      "openmax": om.to_dict(),
  }


def _train_config(config, known, cache_dir: str):
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  spec = f"{config.dgt.spec},classes={'+'.join(known)}"
  # Splits with the same number of known classes share one step program: a persistent XLA cache
  # in the protocol's workdir compiles it once for all of them.
  return config_lib.get(spec, [f"compilation_cache_dir={cache_dir}"] + list(config.dgt.overrides))


def run_split(config, known, out_dir: str, log, cache_dir: str = "") -> dict:
  from fabgen.platform import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  cfg = _train_config(config, known, cache_dir)
  workdir = os.path.join(out_dir, "dgt")
  t0 = time.time()
  trainer.train(cfg, workdir)
  _, task, state = checkpoint_lib.restore(workdir)
  result = evaluate_split(task, state, config)
  result["seconds"] = round(time.time() - t0, 1)
  result["steps"] = int(jax.device_get(state["step"]))
  log(f"[split {'+'.join(known)}] {', '.join(f'{k} {result[k]:.3f}' for k in COLUMNS)}")
  return result


def table(results: list[dict]) -> str:
  """Markdown: one row per split (known classes abbreviated) and the mean over splits."""
  head = "| known (unknown) | " + " | ".join(COLUMNS) + " |"
  lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
  for r in results:
    unknown = [n for n in classes_lib.CLASSES if n not in r["known"]]
    name = (",".join(_ABBREV[n] for n in r["known"]) + " (" +
            ",".join(_ABBREV[n] for n in unknown) + ")")
    lines.append(f"| {name} | " + " | ".join(f"{100 * r[c]:.1f}" for c in COLUMNS) + " |")
  if len(results) > 1:
    lines.append("| mean | " + " | ".join(
        f"{100 * np.nanmean([r[c] for r in results]):.1f}" for c in COLUMNS) + " |")
  return "\n".join(lines)


def run_openset(config: ml_collections.ConfigDict, workdir: str,
                log: Callable[[str], None] = print) -> dict:
  """Runs (or resumes) every split in `workdir`; returns {"splits", "table"} and writes both."""
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  results = []
  for i, known in enumerate(config.splits):
    out = os.path.join(workdir, f"split{i}")
    done = os.path.join(out, "result.json")
    if os.path.exists(done):
      with open(done) as f:
        results.append(json.load(f))
      log(f"[split {'+'.join(known)}] done earlier")
      continue
    os.makedirs(out, exist_ok=True)
    result = run_split(config, tuple(known), out, log, os.path.join(workdir, "xla_cache"))
    with open(done + ".tmp", "w") as f:
      json.dump(result, f, indent=1)
    os.replace(done + ".tmp", done)
    results.append(result)
  text = table(results)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(workdir, "openset.json"), "w") as f:
    json.dump({"splits": results, "table": text, "config": config.to_dict()}, f, indent=1,
              default=str)
  return {"splits": results, "table": text}
