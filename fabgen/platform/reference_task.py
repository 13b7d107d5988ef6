"""`ReferenceTask` ("reference"): a small but real conv classifier the platform is tested with.

It exercises everything a model task needs (an NNX network kept as a pure-dict pytree, an
optax optimizer with a cosine schedule, an EMA copy, a mixed-precision policy, a checkpointable
grain input, periodic evaluation with an image grid) while training in seconds on a CPU.

The data are procedural: class k is a sinusoidal grating at angle k*pi/K with a random phase,
frequency, contrast and noise, so the task is learnable but not trivial. Example i is a pure
function of (seed, i), and a global batch is the same set of examples however many processes
share it (each process builds its rows of the global batch): a 2-process run sees exactly the
batches of a 1-process run, which is what the multi-process test checks.
"""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from fabgen.platform import ema as ema_lib
from fabgen.platform import input_options
from fabgen.platform import nnx_bridge
from fabgen.platform import precision as precision_lib
from fabgen.platform import schedules
from fabgen.platform import sharding as sharding_lib
from fabgen.platform import task as task_lib
from fabgen.platform.task import Task


class ConvClassifier(nnx.Module):
  """Strided convs -> global mean -> linear; widths and classes are explicit arguments."""

  def __init__(self, in_channels: int, widths, num_classes: int, *, rngs: nnx.Rngs):
    self.convs = nnx.List()
    c = in_channels
    for w in widths:
      self.convs.append(nnx.Conv(c, w, (3, 3), strides=(2, 2), rngs=rngs))
      c = w
    self.head = nnx.Linear(c, num_classes, rngs=rngs)

  def __call__(self, x):
    for conv in self.convs:
      # Activations stay split over the batch axes (a no-op outside the platform's mesh).
      x = sharding_lib.constrain(jax.nn.gelu(conv(x)), "batch", None, None, None)
    return self.head(jnp.mean(x, axis=(1, 2)))


def grating(seed: int, index: int, size: int, channels: int, num_classes: int):
  """Example `index`: (image float32 [size, size, channels] in [-1, 1], label int32)."""
  rng = np.random.default_rng([seed, index])
  label = int(rng.integers(num_classes))
  angle = np.pi * label / num_classes + rng.normal(0.0, 0.05)
  freq = rng.uniform(0.15, 0.35)
  y, x = np.mgrid[:size, :size].astype(np.float32)
  wave = np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 6.3))
  image = rng.uniform(0.4, 0.9) * wave[..., None] + rng.normal(0.0, 0.3, (size, size, channels))
  return np.clip(image, -1, 1).astype(np.float32), np.int32(label)


def make_batch(indices, seed: int, size: int, channels: int, num_classes: int):
  examples = [grating(seed, int(i), size, channels, num_classes) for i in indices]
  return {"image": np.stack([e[0] for e in examples]),
          "label": np.asarray([e[1] for e in examples], np.int32)}


def grating_dataset(num_examples: int, global_batch: int, process_index: int,
                    process_count: int, seed: int, size: int, channels: int,
                    num_classes: int,
                    options: grain.ReadOptions | None = None) -> grain.IterDataset:
  """This process's rows of an infinite sequence of shuffled global batches."""
  if global_batch % process_count:
    raise ValueError(f"batch_size={global_batch} is not divisible by {process_count} processes")
  rows = global_batch // process_count
  lo = process_index * rows
  ds = grain.MapDataset.range(num_examples).shuffle(seed=seed).repeat(None)
  ds = ds.batch(global_batch, drop_remainder=True)
  ds = ds.map(lambda idx: make_batch(np.asarray(idx)[lo:lo + rows], seed, size, channels,
                                     num_classes))
  return ds.to_iter_dataset(options or input_options.read_options())


class ReferenceTask(Task):
  """Classifier with EMA. Config: model.{widths, num_classes}, data.{image_size, channels,
  num_examples}, optim.{lr, end_lr, b2, clip_norm}, ema_half_life (images), loss.nan_at_step."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m, d = config.model, config.data
    self.policy = precision_lib.Policy.from_config(config.precision)
    self.module = nnx_bridge.PureModule(
        lambda rngs: ConvClassifier(d.channels, m.widths, m.num_classes, rngs=rngs))
    o = config.optim
    self.lr = schedules.cosine(o.lr, o.end_lr, config.total_steps)
    self.optimizer = schedules.adam(self.lr, b1=0.9, b2=o.b2, clip_norm=o.get("clip_norm"))

  def apply(self, params, images):
    """Logits (f32) of `images` [B, H, W, C] under the precision policy."""
    model = self.module.bind(self.policy.cast_to_compute(params))
    return self.policy.cast_to_output(model(self.policy.cast_to_compute(images)))

  def init_state(self, rng):
    params = self.policy.cast_to_param(self.module.init(rng))
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "ema": jax.tree.map(jnp.copy, params), "opt": self.optimizer.init(params)}

  def loss(self, params, batch, step):
    logits = self.apply(params, batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    # A fault-injection hook for the platform's NaN-stop test; -1 (the default) never fires.
    loss = loss * jnp.where(step == self.config.loss.nan_at_step, jnp.nan, 1.0)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, {"loss": loss, "accuracy": accuracy}

  def train_step(self, state, batch, rng):
    del rng  # deterministic given the batch
    grads, metrics = jax.grad(self.loss, has_aux=True)(state["params"], batch, state["step"])
    updates, opt = self.optimizer.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    decay = ema_lib.ema_decay(state["step"], self.config.batch_size, self.config.ema_half_life)
    new_state = {"step": state["step"] + 1, "params": params, "opt": opt,
                 "ema": ema_lib.ema_update(state["ema"], params, decay)}
    return new_state, {**metrics, "grad_norm": optax.tree.norm(grads),
                       "lr": self.lr(state["step"])}

  def abstract_batch(self):
    """The batch `dataset` yields (`make_batch`), from the config alone."""
    b, d = self.config.batch_size, self.config.data
    return task_lib.batch_spec(image=((b, d.image_size, d.image_size, d.channels), np.float32),
                               label=((b,), np.int32))

  def dataset(self, process_index, process_count, seed):
    d, m = self.config.data, self.config.model
    return grating_dataset(d.num_examples, self.config.batch_size, process_index, process_count,
                           seed, d.image_size, d.channels, m.num_classes,
                           input_options.config_read_options(self.config))

  def eval_batch(self, n: int = 64):
    """Held-out examples (indices past the training set), the same on every call."""
    d, m = self.config.data, self.config.model
    return make_batch(range(d.num_examples, d.num_examples + n), self.config.seed,
                      d.image_size, d.channels, m.num_classes)

  def evaluate(self, state, step, writer, workdir):
    """Held-out accuracy of the raw and EMA weights, and a grid of held-out inputs."""
    del workdir
    batch = self.eval_batch()
    out = {}
    for name in ("params", "ema"):
      params = sharding_lib.to_host(state[name])
      logits = self.apply(params, jnp.asarray(batch["image"]))
      out[f"eval/accuracy_{name}"] = float(jnp.mean(jnp.argmax(logits, -1) == batch["label"]))
    if writer is not None:  # the platform writes the returned scalars
      images = (batch["image"][:16] + 1.0) / 2.0
      n, h, w, c = images.shape
      grid = images.reshape(4, 4, h, w, c).transpose(0, 2, 1, 3, 4).reshape(4 * h, 4 * w, c)
      if c == 1:
        grid = np.repeat(grid, 3, axis=-1)
      writer.write_images(step, {"eval/inputs": grid[None, ..., :3]})
    return out

  def param_count_tree(self, state):
    return {"params": state["params"]}
