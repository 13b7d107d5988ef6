"""`DetectorTask` ("detector"): trains the RT-DETR-style detector + seg head on any source.

The platform (`fabgen.platform.trainer.train`) jits `train_step` with the state donated and the
batch sharded over the mesh; everything here is a pure function of (state, batch, rng):
  1. augmentation on device: per-image random horizontal / vertical flips (boxes and masks
     flipped with the image; fabric has no preferred orientation); random crops happen on the
     host in the grain pipeline (`config.data.transform = "crop"`);
  2. targets: global class ids -> head indices (`config.model.class_ids`), boxes -> normalized
     cxcywh, instance mask -> class map for the seg head;
  3. loss (fabgen/detector/losses.py), AdamW with warmup + cosine decay and global-norm clipping.

Public API used by evaluation, export and the adaptation protocol:
  task = DetectorTask(config); state = task.warm_start(task.init_state(rng))
  pred = task.predict(state, images)          # pure, jittable; see `predict`
  task.num_classes, task.class_ids
  DetectorTask.restore(workdir) -> (task, state)
  finetune_config(base_config, init_from, ...) -> config that starts from a trained detector
"""

from __future__ import annotations

import copy
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fabgen.data import pipeline
from fabgen.data import sample as sample_lib
from fabgen.data.readers import open_source, skips
from fabgen.detector import backbone
from fabgen.detector import boxes as box_ops
from fabgen.detector import losses as losses_lib
from fabgen.detector import model as model_lib
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import input_options
from fabgen.platform import nnx_bridge
from fabgen.platform import precision as precision_lib
from fabgen.platform import schedules
from fabgen.platform import task as task_lib
from fabgen.platform.task import Task


def head_index(class_ids, global_ids):
  """Global class ids (any shape, -1 = none) -> head indices; classes the head lacks -> -1."""
  ids = jnp.asarray(class_ids, jnp.int32)
  hit = global_ids[..., None] == ids
  return jnp.where(jnp.any(hit, -1) & (global_ids >= 0), jnp.argmax(hit, -1), -1).astype(jnp.int32)


def flip_batch(batch, flip_h, flip_v):
  """Flips image, instance mask and boxes of each sample where flip_h / flip_v [B] are set."""
  h, w = batch["image"].shape[1:3]

  def per_sample(image, mask, boxes, fh, fv):
    image = jnp.where(fh, image[:, ::-1], image)
    image = jnp.where(fv, image[::-1], image)
    mask = jnp.where(fh, mask[:, ::-1], mask)
    mask = jnp.where(fv, mask[::-1], mask)
    x0, y0, x1, y1 = jnp.moveaxis(boxes, -1, 0)
    x0, x1 = jnp.where(fh, w - x1, x0), jnp.where(fh, w - x0, x1)
    y0, y1 = jnp.where(fv, h - y1, y0), jnp.where(fv, h - y0, y1)
    return image, mask, jnp.stack([x0, y0, x1, y1], -1)

  image, mask, boxes = jax.vmap(per_sample)(batch["image"], batch["instance_mask"],
                                            batch["boxes"].astype(jnp.float32), flip_h, flip_v)
  return {**batch, "image": image, "instance_mask": mask, "boxes": boxes}


_MODULES: dict[str, nnx_bridge.PureModule] = {}


def _module(m: ml_collections.ConfigDict) -> nnx_bridge.PureModule:
  """The detector of model config `m` as a `PureModule` (jitted init), built once per process.

  Tracing the NNX model costs seconds of Python on a CPU, and the adaptation protocol builds the
  same architecture for every fine-tune and evaluation (task, restore, eval_shape, init): they
  all reuse this one trace. The init is a `jax.jit`, so tracing it again inside `init_state`
  (eval_shape, the trainer's jit) hits jit's own trace cache.
  """
  key = m.to_json()
  if key not in _MODULES:
    m = copy.deepcopy(m)
    _MODULES[key] = nnx_bridge.PureModule(lambda rngs: model_lib.DetectorModel.from_config(m, rngs),
                                      jit_init=True)
  return _MODULES[key]


class DetectorTask(Task):
  """RT-DETR-style detector with a DeepLabV3+ seg head (see configs/detector.py)."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m = config.model
    if len(m.class_ids) == 0:
      raise ValueError("config.model.class_ids is empty: the detector needs classes to predict")
    self.class_ids = tuple(int(c) for c in m.class_ids)
    self.num_classes = len(self.class_ids)
    self.module = _module(m)
    self.policy = precision_lib.Policy.from_config(config.precision)
    o = config.optim
    # AdamW, with the learning rate applied in `train_step` from numbers held in the state: a
    # fine-tune (other lr, length, warmup) then runs the very program the source training
    # compiled and loads it from the persistent compilation cache (the demo's first fine-tune
    # recompiled for 70 s when the schedule was a constant of the program).
    self.schedule_values = {"peak": o.lr, "end": o.lr * o.end_lr_factor,
                            "warmup": max(1, min(o.warmup_steps, config.total_steps - 1)),
                            "total": max(2, config.total_steps)}
    self.optimizer = optax.chain(optax.clip_by_global_norm(o.clip_norm),
                                 optax.scale_by_adam(b1=0.9, b2=0.999),
                                 optax.add_decayed_weights(o.weight_decay))
    self.source = None  # built lazily from config.data.source, or set by a caller
    self.mix_source = None  # config.data.mix_source, likewise
    mix_settings(config)  # a bad mix fails here, before any compile

  # ---- networks --------------------------------------------------------------------------------

  def model(self, params) -> model_lib.DetectorModel:
    """The NNX module with weights `params` (a pure dict); traceable inside jit/grad."""
    return self.module.bind(params)

  def init_state(self, rng):
    """Freshly initialized weights; `warm_start` then loads `init_from` / backbone weights."""
    params = self.module.init(rng)
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "opt_state": self.optimizer.init(params),
            "schedule": {k: jnp.asarray(v, jnp.float32) for k, v in self.schedule_values.items()}}

  def warm_start(self, state):
    """Loads `config.init_from` (a detector workdir) and/or `model.backbone_weights`.

    The weights arrive as arguments of the already-compiled init, in the fresh params' own
    shardings; AdamW's moments start at zero either way.
    """
    init_from = self.config.get("init_from", "")
    weights = self.config.model.get("backbone_weights", "")
    if not init_from and not weights:
      return state
    fresh = state["params"]
    params = jax.device_get(fresh)
    if init_from:
      source_task, trained = DetectorTask.restore(init_from)
      if tuple(source_task.class_ids) != self.class_ids:
        # Same shapes but another class order would silently swap the heads' meanings.
        raise ValueError(f"config.init_from={init_from!r} was trained with model.class_ids="
                         f"{tuple(source_task.class_ids)}; this config has "
                         f"model.class_ids={self.class_ids} (ids and their order must match)")
      loaded = jax.device_get(trained["params"])
      if jax.tree.map(np.shape, loaded) != jax.tree.map(np.shape, params):
        raise ValueError(f"config.init_from={init_from!r} holds a detector of another size "
                         f"(different model config or class_ids) than this config")
      params = loaded
    if weights:
      params["backbone"] = jax.device_get(backbone.load_weights(params["backbone"], weights))
    params = jax.tree.map(lambda new, old: np.asarray(new, old.dtype), params, fresh)
    placed = jax.device_put(params, jax.tree.map(lambda x: x.sharding, fresh))
    return {**state, "params": placed}

  # ---- targets and step ------------------------------------------------------------------------

  def targets(self, batch):
    """Head-space targets: classes [B,T], boxes normalized cxcywh [B,T,4], class_map [B,H,W]."""
    h, w = batch["image"].shape[1:3]
    classes = head_index(self.class_ids, batch["box_class"].astype(jnp.int32))
    xyxy = box_ops.normalize_xyxy(batch["boxes"], h, w)
    boxes = jnp.where(classes[..., None] >= 0, box_ops.xyxy_to_cxcywh(xyxy), 0.0)
    inst_head = head_index(self.class_ids, batch["instance_class"].astype(jnp.int32))  # [B,I]
    mask = batch["instance_mask"].astype(jnp.int32)
    per_pixel = jnp.take_along_axis(inst_head, jnp.clip(mask - 1, 0).reshape(mask.shape[0], -1),
                                    axis=1).reshape(mask.shape)
    class_map = jnp.where(mask > 0, per_pixel + 1, 0)
    return {"classes": classes, "boxes": boxes, "class_map": class_map}

  def loss(self, params, batch):
    """(total loss, metrics) of the model on a (augmented) batch."""
    outputs = self.policy.apply(self.module, params, batch["image"])
    c = self.config.loss
    weights = {"vfl": c.vfl, "l1": c.l1, "giou": c.giou, "seg": c.seg, "fg": c.seg_fg_weight}
    return losses_lib.detector_loss(
        outputs, self.targets(batch), weights=weights, matcher=c.matcher,
        cost_weights={"class": c.cost_class, "l1": c.cost_l1, "giou": c.cost_giou})

  def augment(self, batch, rng):
    a = self.config.data
    b = batch["image"].shape[0]
    kh, kv = jax.random.split(rng)
    flip_h = jax.random.bernoulli(kh, a.flip_prob, (b,)) if a.hflip else jnp.zeros((b,), bool)
    flip_v = jax.random.bernoulli(kv, a.flip_prob, (b,)) if a.vflip else jnp.zeros((b,), bool)
    return flip_batch(batch, flip_h, flip_v)

  def train_step(self, state, batch, rng):
    batch = self.augment(batch, rng)
    (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(state["params"], batch)
    updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
    lr = schedules.warmup_cosine(state["step"], state["schedule"])
    params = optax.apply_updates(state["params"], jax.tree.map(lambda u: -lr * u, updates))
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads), "lr": lr}
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state,
            "schedule": state["schedule"]}, metrics

  # ---- inference -------------------------------------------------------------------------------

  def predict(self, state, images) -> dict[str, jax.Array]:
    """uint8 [B,H,W,3] (H, W multiples of 32) -> predictions of the last decoder layer.

    boxes float32 [B,Q,4] pixel xyxy, scores [B,Q] (max class probability), labels int32 [B,Q]
    (global class ids), class_probs [B,Q,K], seg_probs float32 [B,H,W,K+1] (0 = background).
    Pure and jittable.
    """
    h, w = images.shape[1:3]
    outputs = self.model(state["params"])(images)
    return model_lib.postprocess(outputs, h, w, self.class_ids)

  @staticmethod
  def restore(workdir: str) -> tuple["DetectorTask", Any]:
    """(task, state) of the newest checkpoint in a detector training workdir."""
    _, task, state = checkpoint_lib.restore(workdir, expect="detector")
    return task, state

  # ---- input -----------------------------------------------------------------------------------

  def build_source(self):
    return open_source(self.config.data.source)

  def build_mix_source(self):
    return open_source(self.config.data.mix_source)

  def abstract_batch(self):
    """The batch `dataset` yields (`fabgen.data.sample` keys in `_KEYS`), data-free."""
    b, s = self.config.batch_size, self.config.image_size
    n, m = sample_lib.MAX_INSTANCES, sample_lib.MAX_BOXES
    return task_lib.batch_spec(image=((b, s, s, 3), np.uint8),
                               instance_mask=((b, s, s), np.int32),
                               instance_class=((b, n), np.int32), boxes=((b, m, 4), np.float32),
                               box_class=((b, m), np.int32))

  def dataset(self, process_index, process_count, seed):
    if self.source is None:
      self.source = self.build_source()
    d = self.config.data
    size = (self.config.image_size, self.config.image_size)
    transform = pipeline.make_transform(d.transform, size, d.get("crop_on_defect", 0.0))
    kwargs = dict(seed=seed, transform=transform, process_index=process_index,
                  process_count=process_count, skip_broken=skips.skip_broken(self.config))
    batch = self.config.batch_size // process_count
    mix_source, mix_weight = mix_settings(self.config)
    if mix_source:
      if self.mix_source is None:
        self.mix_source = self.build_mix_source()
      ds = pipeline.make_mixed_dataset([self.source, self.mix_source],
                                       [1.0 - mix_weight, mix_weight], batch, **kwargs)
    else:
      ds = pipeline.make_dataset(self.source, batch, **kwargs)
    return ds.map(_select_keys).to_iter_dataset(input_options.config_read_options(self.config))

  def input_report(self):
    return skips.report([self.source, self.mix_source])

  def param_count_tree(self, state):
    return state["params"]


_KEYS = ("image", "instance_mask", "instance_class", "boxes", "box_class")


def _select_keys(batch):
  """Only what the step reads (fewer host->device bytes; extra reader keys never retrace)."""
  missing = [k for k in _KEYS if k not in batch]
  if missing:
    raise KeyError(f"detector batch lacks keys {missing}; a sample needs {sample_lib.KEYS}")
  return {k: batch[k] for k in _KEYS}


def mix_settings(config: ml_collections.ConfigDict) -> tuple[str, float]:
  """(config.data.mix_source, config.data.mix_weight), validated; ("", 0.0) when off.

  mix_weight is the fraction of every batch drawn from mix_source (the rest from data.source):
  fine-tuning on a small new set mixed with replay of the original training set keeps the
  classes the new set lacks. Both keys are optional (configs without them train unmixed).
  """
  d = config.data
  source = d.get("mix_source", "") or ""
  weight = d.get("mix_weight", 0.0)
  if not isinstance(weight, (int, float)) or isinstance(weight, bool):
    raise ValueError(f"config.data.mix_weight={weight!r}: expected a number in (0, 1)")
  weight = float(weight)
  if not source:
    if weight != 0.0:
      raise ValueError(f"config.data.mix_weight={weight} but config.data.mix_source is empty; "
                       f"name the source to mix in, or set mix_weight=0")
    return "", 0.0
  if not 0.0 < weight < 1.0:
    raise ValueError(f"config.data.mix_weight={weight}: must be in (0, 1) when "
                     f"config.data.mix_source={source!r} is set (0 = off: clear mix_source)")
  return str(source), weight


def finetune_config(base_config: ml_collections.ConfigDict, init_from: str, *,
                    source: str | None = None, total_steps: int | None = None,
                    lr_factor: float = 0.1, warmup_steps: int | None = None,
                    mix_source: str | None = None, mix_weight: float = 0.0,
                    ) -> ml_collections.ConfigDict:
  """A config that fine-tunes the detector trained in `init_from` (fewer steps, lower lr).

  The model section (sizes, class_ids) must be the one `init_from` was trained with; the
  optimizer starts afresh on the new data (`source`, e.g. a synthesized set's folder).
  `mix_source` / `mix_weight` (e.g. the original training set, 0.5) replay it in every batch
  (config.data.mix_*), so classes the new data lacks are not forgotten.
  """
  config = copy.deepcopy(base_config)
  with config.unlocked():
    config.init_from = init_from
    if source is not None:
      config.data.source = source
    config.total_steps = total_steps or max(1, base_config.total_steps // 5)
    config.optim.lr = base_config.optim.lr * lr_factor
    config.optim.warmup_steps = (warmup_steps if warmup_steps is not None
                                 else max(1, config.total_steps // 20))
    config.data.mix_source = mix_source or ""
    config.data.mix_weight = float(mix_weight) if mix_source else 0.0
  mix_settings(config)
  return config
