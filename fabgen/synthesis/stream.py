"""Batched, jitted, sharded synthesis streamed to disk, resumable without duplicates.

Layout of an output folder (loadable with `fabgen.data.readers.open_source(folder)`):

  images/<id>.png        the synthesized image
  masks/<id>.png         its instance mask (0 background, 1 the defect)
  parts/<first id>.json  per-batch records (class, boxes, COCO entries, background index): the
                         resume log
  annotations.json       COCO, written at the end from the parts
  contact_sheet.png      a grid of the first samples with their boxes
  manifest.json          run parameters; `"complete": true` only once everything above exists

Memory stays flat in N: one batch lives in memory, records go to disk per batch, and the COCO
file is streamed from the part files. Every file is written under a temporary name and renamed,
so a crash leaves either a finished file or none, and `manifest.json` says `complete: false`
until the end.

Determinism: sample `i` uses background `i mod len(backgrounds)`, a class drawn from
`numpy.random.default_rng([seed, i])`, and JAX keys `fold_in(key(seed), i)`. Nothing depends on
batch composition, so a resumed run writes exactly the files the uninterrupted run would have
(and on resume only the indices without a part record are generated, so none is duplicated).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import time
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from PIL import Image

from fabgen.data import classes as classes_lib
from fabgen.data import drawing
from fabgen.data import writer as writer_lib
from fabgen.data.readers import skips
from fabgen.synthesis import base
from fabgen.synthesis import colour_space
from fabgen.synthesis import labelling
from fabgen.synthesis import placement as placement_lib
from fabgen.synthesis.backgrounds import Backgrounds

MANIFEST = "manifest.json"
FORMAT = "fabgen-synthesis-v1"


# The sample-set writer's atomic PNG / JSON writers (temporary name, then rename); the alias
# keeps the name other modules' tests use.
atomic_write_png = writer_lib.write_png
atomic_write_json = writer_lib.write_json


def sample_name(index: int) -> str:
  return f"{index:08d}"


def state_digest(state) -> str:
  """sha256 (16 hex digits) over every array of a synthesizer's state: shapes, dtypes, bytes."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(state):
    a = np.ascontiguousarray(jax.device_get(leaf))
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def _remove_write_debris(out_dir: str) -> None:
  """Deletes `.*.tmp` files (interrupted writes) in our set, following no symlink."""
  for folder in (out_dir,) + tuple(os.path.join(out_dir, s) for s in ("images", "masks", "parts")):
    if os.path.islink(folder) or not os.path.isdir(folder):
      continue
    for entry in os.scandir(folder):
      if (entry.name.startswith(".") and entry.name.endswith(".tmp")
          and entry.is_file(follow_symlinks=False)):
        os.remove(entry.path)


class SynthesisRun:
  """One synthesis run into `out_dir`: validates, resumes, generates, writes, finalises."""

  def __init__(self, synth: base.Synthesizer, backgrounds: Backgrounds, num: int, out_dir: str,
               seed: int = 0, class_ids: Sequence[int] | None = None, batch_size: int = 16,
               placement: placement_lib.PlacementPrior | None = None, tau: int = 6,
               min_area: int = 4, mesh: jax.sharding.Mesh | None = None,
               extra_manifest: dict | None = None, colour: str = "auto"):
    if num <= 0:
      raise base.SynthesisError(f"--num must be positive, got {num}")
    if batch_size <= 0:
      raise base.SynthesisError(f"batch_size must be positive, got {batch_size}")
    backgrounds.check_fits(synth.patch_size)
    self.class_ids = self._check_classes(synth, class_ids)
    self.synth, self.backgrounds, self.num, self.out_dir = synth, backgrounds, num, out_dir
    self.seed, self.placement, self.tau, self.min_area = seed, placement, tau, min_area
    self.colour = colour_space.check_mode(colour)
    self.mesh = mesh or jax.make_mesh((jax.device_count(),), ("data",))
    n_dev = self.mesh.devices.size
    self.batch_size = -(-batch_size // n_dev) * n_dev  # a multiple of the device count
    self.params = {
        "format": FORMAT, **synth.static_options(), "seed": int(seed),
        "classes": [int(c) for c in self.class_ids], "tau": int(tau), "min_area": int(min_area),
        "colour": colour,
        "image_size": [int(s) for s in backgrounds.size], "backgrounds": backgrounds.spec,
        "num_backgrounds": len(backgrounds),
        "placement": "uniform" if placement is None else "prior",
        # The model's identity, not only its path: a model retrained at the same path must not
        # extend a set the old one started.
        "model_digest": state_digest(synth.state), **(extra_manifest or {})}
    self._step = None
    self.input_sources = (*synth.input_sources, *((backgrounds.source,)
                                                  if getattr(backgrounds, "source", None) else ()))

  @staticmethod
  def _check_classes(synth, class_ids):
    if class_ids is None:
      return tuple(synth.class_ids)
    bad = [c for c in class_ids if c not in synth.class_ids]
    if bad:
      names = [classes_lib.CLASSES[c] if 0 <= c < classes_lib.NUM_CLASSES else str(c)
               for c in bad]
      known = [classes_lib.CLASSES[c] for c in synth.class_ids if c < classes_lib.NUM_CLASSES]
      raise base.SynthesisError(f"class {', '.join(names)} is not one the {synth.name} checkpoint "
                                f"was trained on; it knows: {', '.join(known)}")
    return tuple(int(c) for c in class_ids)

  # ---- resume ----------------------------------------------------------------------------------

  def _prepare_dir(self) -> set[int]:
    """Creates the layout, checks an existing manifest matches, returns indices already done.

    A non-empty folder without our manifest is not ours: refused, nothing in it touched. Only
    in our own set are interrupted-write temporaries removed, and never through a symlink.
    """
    path = os.path.join(self.out_dir, MANIFEST)
    if (not os.path.exists(path) and os.path.isdir(self.out_dir)
        and os.listdir(self.out_dir)):
      raise base.SynthesisError(
          f"--out {self.out_dir} is not empty and holds no fabgen synthesis {MANIFEST}; "
          f"refusing to write (or clean) there; use an empty or new folder")
    for sub in ("images", "masks", "parts"):
      os.makedirs(os.path.join(self.out_dir, sub), exist_ok=True)
    if os.path.exists(path):
      try:
        with open(path) as f:
          old = json.load(f)
      except (OSError, json.JSONDecodeError) as e:
        raise base.SynthesisError(f"{path} is not a readable manifest ({e}); use a fresh --out")
      for key, value in self.params.items():
        if old.get(key) != value:
          raise base.SynthesisError(
              f"{path}: cannot resume, {key}={old.get(key)!r} there but {value!r} now; use a "
              f"fresh --out or the same arguments")
      if old.get("num", 0) > self.num:
        raise base.SynthesisError(f"{path}: the run there has num={old['num']} > {self.num}")
    _remove_write_debris(self.out_dir)
    atomic_write_json(path, {**self.params, "num": self.num, "complete": False})
    done = set()
    for part in self._part_files():
      for rec in self._read_part(part):
        done.add(rec["index"])
    return done

  def _part_files(self) -> list[str]:
    return sorted(glob.glob(os.path.join(self.out_dir, "parts", "*.json")))

  @staticmethod
  def _read_part(path: str) -> list[dict]:
    try:
      with open(path) as f:
        return json.load(f)["records"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
      raise base.SynthesisError(f"corrupt part file {path}: {e!r}") from e

  # ---- device step -----------------------------------------------------------------------------

  def _build_step(self) -> Callable:
    h, w = self.backgrounds.size
    p, synth, placement, seed = self.synth.patch_size, self.synth, self.placement, self.seed

    def step(state, backgrounds, class_ids, indices):
      base_key = jax.random.key(seed)
      keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(indices)
      pair = jax.vmap(jax.random.split)(keys)
      offsets = placement_lib.make_offsets(placement, pair[:, 0], class_ids, h, w, p)
      return synth.apply(state, backgrounds, class_ids, offsets, pair[:, 1])

    rep, data = NamedSharding(self.mesh, P()), NamedSharding(self.mesh, P("data"))
    return jax.jit(step, in_shardings=(rep, data, data, data), out_shardings=data)

  def class_of(self, index: int) -> int:
    rng = np.random.default_rng([self.seed, index])
    return int(self.class_ids[rng.integers(len(self.class_ids))])

  def generate(self, indices: Sequence[int]) -> np.ndarray:
    """uint8 [len(indices), H, W, 3]; pads to the device-multiple batch and drops the padding."""
    if self._step is None:
      self._step = self._build_step()
      self._state = jax.device_put(self.synth.state, NamedSharding(self.mesh, P()))
    n = len(indices)
    padded = list(indices) + [indices[-1]] * (self.batch_size - n)
    bgs = np.stack([self.backgrounds[i % len(self.backgrounds)] for i in padded])
    cls = np.asarray([self.class_of(i) for i in padded], np.int32)
    out = self._step(self._state, bgs, cls, np.asarray(padded, np.uint32))
    return np.asarray(out)[:n]

  # ---- writing ---------------------------------------------------------------------------------

  def _write_batch(self, indices: Sequence[int], images: np.ndarray) -> list[dict]:
    records = []
    for i, image in zip(indices, images):
      bg_index = i % len(self.backgrounds)
      background = self.backgrounds[bg_index]
      image = colour_space.match_background(image, background, self.colour)
      lab = labelling.label_change(image, background, self.tau, self.min_area)
      name = sample_name(i)
      atomic_write_png(os.path.join(self.out_dir, "images", f"{name}.png"), lab.image)
      atomic_write_png(os.path.join(self.out_dir, "masks", f"{name}.png"),
                       lab.instance_mask.astype(np.uint8))
      # COCO entries as the sample-set writer makes them (one per component, RLE segmentation);
      # ids are renumbered when annotations.json is assembled.
      anns = writer_lib.coco_annotations(labelling.to_sample(lab, self.class_of(i)), int(i), 0)
      records.append({"index": int(i), "file_name": f"images/{name}.png",
                      "mask_file": f"masks/{name}.png", "class_id": self.class_of(i),
                      "background_index": int(bg_index), "boxes": lab.boxes.tolist(),
                      "areas": lab.areas.tolist(), "annotations": anns})
    # The part file is the commit record: written last, so its presence means the files exist.
    atomic_write_json(os.path.join(self.out_dir, "parts", f"{sample_name(indices[0])}.json"),
                      {"records": records})
    return records

  def run(self, log: Callable[[str], None] | None = None,
          stop_after_batches: int | None = None) -> dict:
    """Generates every missing sample, then finalises; returns the manifest."""
    done = self._prepare_dir()
    report = skips.report(self.input_sources)
    if report["skipped_at_open"] or report["unreadable"]:  # said at start, and in the manifest
      line = (f"inputs skipped {report['skipped_at_open']} file(s) at open and "
              f"{report['unreadable']} unreadable one(s), first: {report['files']}")
      logging.warning("synthesis into %s: %s", self.out_dir, line)
      if log:
        log(line)
    todo = [i for i in range(self.num) if i not in done]
    start, written = time.perf_counter(), 0
    for b, first in enumerate(range(0, len(todo), self.batch_size)):
      if stop_after_batches is not None and b >= stop_after_batches:
        return {"complete": False, "written": written}
      indices = todo[first:first + self.batch_size]
      self._write_batch(indices, self.generate(indices))
      written += len(indices)
      if log:
        rate = written / (time.perf_counter() - start)
        log(f"{len(done) + written}/{self.num} samples ({rate:.1f} img/s)")
    return self.finalise(skipped=len(done))

  def _records(self):
    """All part records with index < num, in index order (streams over part files)."""
    for part in self._part_files():
      for rec in sorted(self._read_part(part), key=lambda r: r["index"]):
        if rec["index"] < self.num:
          yield rec

  def finalise(self, skipped: int = 0) -> dict:
    """Streams annotations.json from the parts, draws the contact sheet, marks complete."""
    h, w = self.backgrounds.size
    ann_path = os.path.join(self.out_dir, "annotations.json")
    tmp = os.path.join(self.out_dir, ".annotations.json.tmp")
    n_images = n_boxes = n_empty = 0
    per_class = {}
    with open(tmp, "w") as f:
      f.write('{"info": {"description": "fabgen synthesis"},\n"categories": ')
      f.write(json.dumps([{"id": i, "name": n} for i, n in enumerate(classes_lib.CLASSES)]))
      f.write(',\n"images": [\n')
      for k, rec in enumerate(self._records()):
        f.write((",\n" if k else "") + json.dumps(
            {"id": rec["index"], "file_name": rec["file_name"], "width": w, "height": h,
             "mask_file": rec["mask_file"]}))
        n_images += 1
      f.write('],\n"annotations": [\n')
      ann_id = 0
      for rec in self._records():
        n_empty += not rec["boxes"]
        per_class[rec["class_id"]] = per_class.get(rec["class_id"], 0) + 1
        for ann in rec["annotations"]:
          f.write((",\n" if ann_id else "") + json.dumps({**ann, "id": ann_id + 1}))
          ann_id += 1
      n_boxes = ann_id
      f.write("]}\n")
    os.replace(tmp, ann_path)
    if n_images != self.num:
      raise base.SynthesisError(f"{self.out_dir}: {n_images} records for num={self.num}")
    self._contact_sheet()
    manifest = {**self.params, "num": self.num, "complete": True, "images": n_images,
                "boxes": n_boxes, "empty_images": n_empty, "resumed_from": skipped,
                "per_class": {classes_lib.CLASSES[c]: n for c, n in sorted(per_class.items())},
                # what the backgrounds and the method's banks skipped (indexing or a full decode)
                "input_report": skips.report(self.input_sources)}
    atomic_write_json(os.path.join(self.out_dir, MANIFEST), manifest)
    return manifest

  def _contact_sheet(self, count: int = 16) -> None:
    """The shared contact sheet of the first samples, read back from what was written."""
    samples = []
    for rec in self._records():
      if len(samples) == count:
        break
      image = np.asarray(Image.open(os.path.join(self.out_dir, rec["file_name"])).convert("RGB"))
      mask = np.asarray(Image.open(os.path.join(self.out_dir, rec["mask_file"])), np.int32)
      k = len(rec["boxes"])
      samples.append({"image": image, "instance_mask": mask,
                      "instance_class": np.asarray([rec["class_id"] if k else -1], np.int32),
                      "boxes": np.asarray(rec["boxes"], np.float32).reshape(-1, 4),
                      "box_class": np.full(k, rec["class_id"], np.int32),
                      "box_instance": np.ones(k, np.int32)})
    sheet = drawing.contact_sheet(samples, classes_lib.CLASSES)
    tmp = os.path.join(self.out_dir, ".contact_sheet.png.tmp")
    sheet.save(tmp, format="PNG")
    os.replace(tmp, os.path.join(self.out_dir, "contact_sheet.png"))
