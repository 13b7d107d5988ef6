"""`DGTTask` ("dgt"): G, DIS and DFC trained together through `fabgen.platform`.

One step, on a batch of aligned (N, D, M, y) quadruples (`data.py`), images in [0, 1]:
  1. X^ = [E~_fore, E~_back, N] with per-sample smoothing keys (`encoding.py`); X_fake = G(X^).
  2. DIS update on D, N and X_fake (stopped): reconstruct N from each, segment M (fake, real
     foreground, real background; `losses.py`).
  3. DFC update: cross-entropy on D and on X_fake (stopped).
  4. G update with the updated DIS and DFC:
       L_G = a1 L_fore + a2 L_back + a3 L_mix + a4 L_fake^seg + a5 L_real_fore^seg
             + a6 L_real_back^seg + a7 L_fake^cls + a8 L_real^cls
     the eight weights are `config.loss.weights.*`; a zero weight skips its term entirely.

How the *real-image* downstream losses reach G (the note says all five are "back-propagated to
optimise G", but a loss on real images alone does not depend on G): they are evaluated with
DIS / DFC parameters after one differentiable SGD step on the fake batch,
theta' = theta - eta grad_theta L_fake(theta; X_fake(G)), eta = `config.loss.lookahead_lr`.
L_real(theta') then measures how much training on G's fakes helps the downstream module on real
defects, which is what the note says the feedback is for ("samples useful for segmentation and
classification"), and its gradient reaches G through theta'. (A one-step unrolled look-ahead, as
in learning-to-teach / data-distillation work; it costs one Hessian-vector product per module.)

The state holds a fixed-size mask bank of real defect shapes (for synthesis); it is built from
the data, so `init_state` renders under `jax.ensure_compile_time_eval`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fabgen.dgt import data as data_lib
from fabgen.dgt import encoding
from fabgen.dgt import losses
from fabgen.dgt import networks
from fabgen.platform import input_options
from fabgen.platform import nnx_bridge
from fabgen.platform import precision as precision_lib
from fabgen.platform import sharding as sharding_lib
from fabgen.platform import task as task_lib
from fabgen.platform.task import Task


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks DGT's own keys; errors name the key and the value."""
  w = config.loss.weights
  for name in losses.TERMS:
    if name not in w:
      raise ValueError(f"config.loss.weights has no {name!r}; it needs all of {losses.TERMS}")
    if float(w[name]) < 0:
      raise ValueError(f"config.loss.weights.{name}={w[name]} must be >= 0")
  extra = sorted(set(w.keys()) - set(losses.TERMS))
  if extra:
    raise ValueError(f"config.loss.weights: unknown terms {extra}; known: {losses.TERMS}")
  if config.loss.reading not in losses.READINGS:
    raise ValueError(f"config.loss.reading={config.loss.reading!r}; use one of "
                     f"{losses.READINGS}")
  levels = len(config.model.g_widths) - 1
  if config.image_size % (2 ** max(levels, len(config.model.dis_widths) - 1)):
    raise ValueError(f"config.image_size={config.image_size} must be divisible by 2^levels of "
                     f"config.model.g_widths / dis_widths")
  data_lib.class_indices(data_lib.known_classes(config.data.classes, config.data.source))


class DGTTask(Task):
  """Defect generation and transfer with its downstream DIS and DFC modules."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    validate(config)
    m = config.model
    # Known classes: config.data.classes, or every class of the source preset when empty.
    self.class_names = data_lib.known_classes(config.data.classes, config.data.source)
    self.num_classes = len(self.class_names)
    s = self.num_classes
    self.g_net = nnx_bridge.PureModule(lambda rngs: networks.Generator(s, m.g_widths, rngs=rngs))
    self.dis_net = nnx_bridge.PureModule(
        lambda rngs: networks.DIS(m.dis_widths, m.dis_head_width, rngs=rngs))
    self.dfc_net = nnx_bridge.PureModule(
        lambda rngs: networks.Classifier(s, m.dfc_widths, rngs=rngs))
    self.policy = precision_lib.Policy.from_config(config.precision)
    sm = config.smoothing
    self.smoothing = encoding.Smoothing(sm.sigma_min, sm.sigma_max, sm.w_min, sm.w_max)
    o = config.optim
    self.opt_g = optax.adam(o.lr_g, b1=o.b1, b2=o.b2)
    self.opt_dis = optax.adam(o.lr_dis, b1=o.b1, b2=o.b2)
    self.opt_dfc = optax.adam(o.lr_dfc, b1=o.b1, b2=o.b2)
    self.pairs = None  # set by a caller (tests, benchmarks) or rendered from config.data

  # ---- data ------------------------------------------------------------------------------------

  def get_pairs(self) -> dict:
    if self.pairs is None:
      d = self.config.data
      self.pairs = data_lib.paired_set(d.source, self.class_names, d.num_records,
                                       self.config.image_size)
    return self.pairs

  def abstract_batch(self):
    """The batch `dataset` yields (`fabgen.dgt.data.dataset`), data-free."""
    b, s = self.config.batch_size, self.config.image_size
    return task_lib.batch_spec(clean=((b, s, s, 3), np.uint8), image=((b, s, s, 3), np.uint8),
                               mask=((b, s, s), np.float32), label=((b,), np.int32))

  def dataset(self, process_index, process_count, seed):
    return data_lib.dataset(self.get_pairs(), self.config.batch_size // process_count,
                            process_index, process_count, seed,
                            input_options.config_read_options(self.config))

  # ---- networks --------------------------------------------------------------------------------

  def init_state(self, rng):
    """Networks, optimizers and an empty mask bank (data-free; `warm_start` fills the bank)."""
    kg, kd, kc = jax.random.split(rng, 3)
    g, dis, dfc = self.g_net.init(kg), self.dis_net.init(kd), self.dfc_net.init(kc)
    size, s = self.config.model.mask_bank_size, self.config.image_size
    bank = {"masks": jnp.zeros((size, s, s), jnp.float32),
            "labels": jnp.full((size,), -1, jnp.int32)}
    return {"step": jnp.zeros((), jnp.int32), "g": g, "dis": dis, "dfc": dfc,
            "opt_g": self.opt_g.init(g), "opt_dis": self.opt_dis.init(dis),
            "opt_dfc": self.opt_dfc.init(dfc), "mask_bank": bank}

  def warm_start(self, state):
    """Fills the mask bank with real defect shapes of the training pairs (a fresh run only)."""
    bank = data_lib.mask_bank(self.get_pairs(), self.config.model.mask_bank_size)
    filled = {k: jax.device_put(v, state["mask_bank"][k].sharding) for k, v in bank.items()}
    return {**state, "mask_bank": filled}

  def generate(self, g_params, clean, mask, label, keys):
    """X_fake [B, H, W, 3] in [0, 1] and the smoothed encodings (E~_fore, E~_back)."""
    x_hat, ef, eb = encoding.generator_input(clean, mask, label, keys, self.num_classes,
                                             self.smoothing)
    return self.policy.apply(self.g_net, g_params, x_hat), ef, eb

  def segment(self, dis_params, images):
    """(reconstruction, heat-map logits) of DIS."""
    return self.policy.apply(self.dis_net, dis_params, images)

  def classify(self, dfc_params, images):
    """(logits over the known classes, features) of DFC."""
    return self.policy.apply(self.dfc_net, dfc_params, images)

  # ---- the step --------------------------------------------------------------------------------

  @staticmethod
  def unit_batch(batch):
    return (batch["clean"].astype(jnp.float32) / 255.0,
            batch["image"].astype(jnp.float32) / 255.0,
            batch["mask"].astype(jnp.float32), batch["label"].astype(jnp.int32))

  def dis_objective(self, dis_params, defect, clean, fake, mask):
    c = self.config.loss
    b = defect.shape[0]
    recon, logits = self.segment(dis_params, jnp.concatenate([defect, clean, fake], 0))
    rd, rn, rf = recon[:b], recon[b:2 * b], recon[2 * b:]
    ld, ln, lf = logits[:b], logits[b:2 * b], logits[2 * b:]
    terms = {"recon": (losses.recon_loss(rd, clean) + losses.recon_loss(rn, clean)
                       + losses.recon_loss(rf, clean)) / 3.0,
             "seg_fake": losses.seg_fake(lf, mask),
             "seg_real_fore": losses.seg_real_fore(ld, mask),
             "seg_real_back": losses.seg_real_back(ld, ln, mask)}
    total = (c.dis_recon * terms["recon"] + c.dis_fake * terms["seg_fake"]
             + terms["seg_real_fore"] + terms["seg_real_back"])
    return total, terms

  def dfc_objective(self, dfc_params, defect, fake, label):
    logits, _ = self.classify(dfc_params, jnp.concatenate([defect, fake], 0))
    b = defect.shape[0]
    real, fake_l = losses.cls_loss(logits[:b], label), losses.cls_loss(logits[b:], label)
    acc = jnp.mean(jnp.argmax(logits[:b], -1) == label)
    return real + self.config.loss.dfc_fake * fake_l, {"cls_real": real, "cls_fake": fake_l,
                                                        "accuracy": acc}

  def g_terms(self, g_params, dis_params, dfc_params, clean, defect, mask, label, keys):
    """The eight weighted terms of L_G (only those with a non-zero weight are computed)."""
    c = self.config.loss
    w = c.weights
    fake, ef, eb = self.generate(g_params, clean, mask, label, keys)
    terms = dict(losses.pixel_losses(fake, defect, clean, ef, eb, c.reading))
    eta = c.lookahead_lr
    if w.seg_fake:
      terms["seg_fake"] = losses.seg_fake(self.segment(dis_params, fake)[1], mask)
    if w.seg_real_fore or w.seg_real_back:
      inner = jax.grad(lambda p: losses.seg_fake(self.segment(p, fake)[1], mask))(dis_params)
      ahead = jax.tree.map(lambda p, g: p - eta * g, dis_params, inner)
      _, logits = self.segment(ahead, jnp.concatenate([defect, clean], 0))
      ld, ln = jnp.split(logits, 2)
      terms["seg_real_fore"] = losses.seg_real_fore(ld, mask)
      terms["seg_real_back"] = losses.seg_real_back(ld, ln, mask)
    if w.cls_fake:
      terms["cls_fake"] = losses.cls_loss(self.classify(dfc_params, fake)[0], label)
    if w.cls_real:
      inner = jax.grad(lambda p: losses.cls_loss(self.classify(p, fake)[0], label))(dfc_params)
      ahead = jax.tree.map(lambda p, g: p - eta * g, dfc_params, inner)
      terms["cls_real"] = losses.cls_loss(self.classify(ahead, defect)[0], label)
    terms = {k: v for k, v in terms.items() if float(w[k])}
    return terms, fake

  def train_step(self, state, batch, rng):
    c = self.config.loss
    clean, defect, mask, label = self.unit_batch(batch)
    keys = jax.random.split(rng, clean.shape[0])
    fake, _, _ = self.generate(state["g"], clean, mask, label, keys)
    fake = jax.lax.stop_gradient(fake)

    (_, dis_terms), dis_grads = jax.value_and_grad(self.dis_objective, has_aux=True)(
        state["dis"], defect, clean, fake, mask)
    upd, opt_dis = self.opt_dis.update(dis_grads, state["opt_dis"], state["dis"])
    dis_params = optax.apply_updates(state["dis"], upd)

    (_, dfc_terms), dfc_grads = jax.value_and_grad(self.dfc_objective, has_aux=True)(
        state["dfc"], defect, fake, label)
    upd, opt_dfc = self.opt_dfc.update(dfc_grads, state["opt_dfc"], state["dfc"])
    dfc_params = optax.apply_updates(state["dfc"], upd)

    def g_objective(g_params):
      terms, _ = self.g_terms(g_params, dis_params, dfc_params, clean, defect, mask, label, keys)
      total = sum(float(c.weights[k]) * v for k, v in terms.items())
      # Fault-injection hook for the platform's NaN-stop test; -1 (the default) never fires.
      total = total * jnp.where(state["step"] == c.nan_at_step, jnp.nan, 1.0)
      return total, terms

    (g_loss, g_terms), g_grads = jax.value_and_grad(g_objective, has_aux=True)(state["g"])
    upd, opt_g = self.opt_g.update(g_grads, state["opt_g"], state["g"])
    g_params = optax.apply_updates(state["g"], upd)
    new_state = {**state, "step": state["step"] + 1, "g": g_params, "dis": dis_params,
                 "dfc": dfc_params, "opt_g": opt_g, "opt_dis": opt_dis, "opt_dfc": opt_dfc}
    metrics = {"g_loss": g_loss, **{f"g/{k}": v for k, v in g_terms.items()},
               **{f"dis/{k}": v for k, v in dis_terms.items()},
               **{f"dfc/{k}": v for k, v in dfc_terms.items()},
               "grad_norm/g": optax.tree.norm(g_grads),
               "grad_norm/dis": optax.tree.norm(dis_grads),
               "grad_norm/dfc": optax.tree.norm(dfc_grads)}
    return new_state, metrics

  # ---- summaries -------------------------------------------------------------------------------

  def preview(self, params, batch, keys):
    """(X_fake, DIS heat map in [0, 1], DFC logits) for a batch, with {"g", "dis", "dfc"}."""
    clean, defect, mask, label = self.unit_batch(batch)
    fake, _, _ = self.generate(params["g"], clean, mask, label, keys)
    _, heat = self.segment(params["dis"], defect)
    logits, _ = self.classify(params["dfc"], defect)
    return fake, jax.nn.sigmoid(heat), logits

  def evaluate(self, state, step, writer, workdir):
    """A grid of N | D | X_fake | DIS heat map for 4 training pairs, and their L1 / accuracy."""
    del workdir
    p = self.get_pairs()
    n = min(4, len(p["label"]))
    batch = {k: v[:n] for k, v in p.items() if k != "class_id"}
    params = {k: sharding_lib.to_host(state[k]) for k in ("g", "dis", "dfc")}
    fake, heat, logits = jax.jit(self.preview)(params, batch,
                                               jax.random.split(jax.random.key(0), n))
    clean, defect, _, label = self.unit_batch(batch)
    out = {"eval/l1_fake_defect": float(jnp.mean(jnp.abs(fake - defect))),
           "eval/dfc_accuracy": float(jnp.mean(jnp.argmax(logits, -1) == label))}
    if writer is not None:
      heat3 = jnp.repeat(heat[..., None], 3, -1)
      rows = jnp.concatenate([clean, defect, fake, heat3], 2)  # [n, H, 4W, 3]
      writer.write_images(step, {"eval/n_d_fake_heat": np.asarray(
          jnp.concatenate(list(rows), 0))[None]})
    return out

  def param_count_tree(self, state):
    return {"g": state["g"], "dis": state["dis"], "dfc": state["dfc"]}
