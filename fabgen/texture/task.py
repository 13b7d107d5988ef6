"""`TextureTask` ("texture"): a VGG19-layout network trained on FabricSim to tell fabrics apart
*through its Gram matrices*, so that stage 1 can condition on texture statistics that carry
texture without ImageNet weights (which cannot be downloaded here).

The network is exactly the stage-1 conditioner's: `fabgen.nn.vgg` layers up to the deepest tap
(optionally narrowed by `width_scale`), Gram matrices at the taps, pooled/upper-triangle/sqrt
features (`fabgen.nn.gram.features_from_grams`). A linear head on those features
classifies which of `num_fabrics` FabricSim fabrics a random crop comes from. Training it shapes
the filters so that crops of one fabric have close Gram features and crops of different fabrics
do not -- which is what the stage-1 condition (and its conditioning check) needs. The fabrics
are drawn with their own FabricSim seed (`data.sim_seed`), so they are other fabrics than the
ones stage 1 trains and is evaluated on.

State: {"step", "params": {"vgg": {conv: {kernel, bias}}, "head": {kernel, bias}}, "opt",
"feature_stats": {mean, var}}. `fabgen.texture.features.load_vgg` reads `params["vgg"]` and the
feature statistics back into the stage-1 conditioner.
"""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fabgen.data.fabricsim import presets
from fabgen.data.fabricsim.simulator import FabricSim
from fabgen.nn import gram as gram_lib
from fabgen.nn import masks as mask_ops
from fabgen.nn import vgg
from fabgen.platform import input_options
from fabgen.platform import precision as precision_lib
from fabgen.platform import schedules
from fabgen.platform.task import Task

STATS_HALF_LIFE = 10.0  # steps


def render_pool(preset: str, sim_seed: int, num_fabrics: int, first_image: int,
                num_images: int) -> np.ndarray:
  """uint8 [num_fabrics, num_images, S, S, 3] defect-free FabricSim images (fabrics 0..F-1)."""
  sim = FabricSim(preset, sim_seed)
  fabrics = np.repeat(np.arange(num_fabrics), num_images)
  images = np.tile(np.arange(first_image, first_image + num_images), num_fabrics)
  out = []
  batch = 64  # fixed render batch: one compile
  for lo in range(0, len(fabrics), batch):
    f, i = fabrics[lo:lo + batch], images[lo:lo + batch]
    n = len(f)
    f = np.concatenate([f, np.repeat(f[-1:], batch - n)])
    i = np.concatenate([i, np.repeat(i[-1:], batch - n)])
    out.append(np.asarray(sim.render_batch(f, i, np.full(batch, -1))["image"])[:n])
  pool = np.concatenate(out)
  return pool.reshape(num_fabrics, num_images, *pool.shape[1:])


def crop_batch(pool: np.ndarray, indices, seed: int, size: int) -> dict:
  """Example k: fabric k mod F, a random image of it and a random `size` crop (pure in k)."""
  f_count, n_images, s = pool.shape[0], pool.shape[1], pool.shape[2]
  images, labels = [], []
  for k in np.asarray(indices):
    rng = np.random.default_rng([seed, int(k)])
    f = int(k) % f_count
    j = int(rng.integers(n_images))
    y, x = rng.integers(0, s - size + 1, 2)
    images.append(pool[f, j, y:y + size, x:x + size])
    labels.append(f)
  return {"image": np.stack(images), "label": np.asarray(labels, np.int32)}


class TextureTask(Task):
  """Fabric classification from Gram features of a VGG19-layout network (see module doc)."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m, d = config.model, config.data
    if d.patch_size > pipeline_size(d.preset):
      raise ValueError(f"config.data.patch_size={d.patch_size} is larger than the "
                       f"{d.preset!r} FabricSim images ({pipeline_size(d.preset)} px)")
    self.taps = tuple(m.taps)
    self.policy = precision_lib.Policy.from_config(config.precision)
    o = config.optim
    self.lr = schedules.cosine(o.lr, o.end_lr, config.total_steps)
    self.optimizer = optax.adamw(self.lr, b1=0.9, b2=0.99, weight_decay=o.weight_decay)
    self._feature_dim = int(jax.eval_shape(
        lambda x: self.features(self._random_vgg(), x),
        jax.ShapeDtypeStruct((1, d.patch_size, d.patch_size, 3), jnp.uint8)).shape[-1])
    self._eval = None
    self._pools = None

  def pools(self) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) images per fabric, rendered once in one call (one compile)."""
    if self._pools is None:
      d = self.config.data
      n = d.images_per_fabric
      pool = render_pool(d.preset, d.sim_seed, d.num_fabrics, 0, n + d.eval_images_per_fabric)
      self._pools = (pool[:, :n], pool[:, n:])
    return self._pools

  def _random_vgg(self):
    m = self.config.model
    return jax.tree.map(jnp.asarray, vgg.random_params(self.taps, m.init_seed, m.width_scale))

  def features(self, vgg_params, images) -> jax.Array:
    """[B, F] Gram features, exactly as the stage-1 conditioner computes them."""
    m = self.config.model
    # VGG in the policy's compute dtype; the Grams (sums over H*W products) are f32 in `gram`.
    grams = gram_lib.grams(self.policy.cast_to_compute(vgg_params), mask_ops.to_unit(images),
                           self.taps)
    return gram_lib.features_from_grams(grams, m.pool, m.kind)

  def logits(self, params, images) -> jax.Array:
    return self._head(params["head"], self.features(params["vgg"], images))

  def _head(self, head, feats):
    """The linear head in the compute dtype; logits back in f32 for the loss."""
    p = self.policy
    return p.cast_to_output(p.cast_to_compute(feats) @ p.cast_to_compute(head["kernel"])
                            + p.cast_to_compute(head["bias"]))

  def init_state(self, rng):
    del rng  # the filters start from the seeded random VGG (m.init_seed), the head from zero
    n = self.config.data.num_fabrics
    params = {"vgg": self._random_vgg(),
              "head": {"kernel": jnp.zeros((self._feature_dim, n)), "bias": jnp.zeros((n,))}}
    stats = {"mean": jnp.zeros((self._feature_dim,)), "var": jnp.ones((self._feature_dim,))}
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "opt": self.optimizer.init(params), "feature_stats": stats}

  def loss(self, params, batch):
    feats = self.features(params["vgg"], batch["image"])
    logits = self._head(params["head"], feats)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}
    return loss, (metrics, jax.lax.stop_gradient(feats))

  def train_step(self, state, batch, rng):
    """Adam(W) on the cross-entropy; the features' running mean/variance ride along.

    The statistics (an EMA over the last ~STATS_HALF_LIFE steps, so they describe the final
    filters) let the stage-1 conditioner hand its embedding standardized features whatever
    scale training gave the filters.
    """
    del rng  # deterministic given the batch
    grads, (metrics, feats) = jax.grad(self.loss, has_aux=True)(state["params"], batch)
    updates, opt = self.optimizer.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    decay = jnp.where(state["step"] == 0, 0.0, 0.5 ** (1.0 / STATS_HALF_LIFE))
    old = state["feature_stats"]
    mean = decay * old["mean"] + (1 - decay) * jnp.mean(feats, 0)
    var = decay * old["var"] + (1 - decay) * jnp.var(feats, 0)
    return ({"step": state["step"] + 1, "params": params, "opt": opt,
             "feature_stats": {"mean": mean, "var": var}},
            {**metrics, "grad_norm": optax.tree.norm(grads), "lr": self.lr(state["step"])})

  def dataset(self, process_index, process_count, seed):
    d = self.config.data
    b = self.config.batch_size
    if b % process_count:
      raise ValueError(f"batch_size={b} is not divisible by {process_count} processes")
    rows = b // process_count
    lo = process_index * rows
    pool = self.pools()[0]
    ds = grain.MapDataset.range(1 << 30).batch(b, drop_remainder=True)
    ds = ds.map(lambda idx: crop_batch(pool, np.asarray(idx)[lo:lo + rows], seed, d.patch_size))
    return ds.to_iter_dataset(input_options.config_read_options(self.config))

  def evaluate(self, state, step, writer, workdir):
    """Held-out images of the training fabrics: classification accuracy and the Gram margin.

    `eval/nearest_fabric`: share of held-out crops whose nearest *other* held-out crop (by
    Gram-feature distance) is of the same fabric -- the property stage 1's condition needs,
    with no head involved.
    """
    del step, writer, workdir
    d = self.config.data
    if self._eval is None:
      self._eval = crop_batch(self.pools()[1], np.arange(d.num_fabrics * 8),
                              self.config.seed + 1, d.patch_size)
    params = jax.tree.map(jnp.asarray, jax.device_get(state["params"]))
    ev = self._eval
    logits = jax.jit(self.logits)(params, ev["image"])
    feats = np.asarray(jax.jit(self.features)(params["vgg"], ev["image"]), np.float64)
    dist = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nearest = ev["label"][np.argmin(dist, 1)] == ev["label"]
    return {"eval/accuracy": float(np.mean(np.argmax(logits, -1) == ev["label"])),
            "eval/nearest_fabric": float(np.mean(nearest))}

  def param_count_tree(self, state):
    return {"params": state["params"]}


def pipeline_size(preset: str) -> int:
  return presets.get_preset(preset).image_size
