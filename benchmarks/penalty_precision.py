"""R1/R2 in bf16 vs f32: relative error of the penalty and of its parameter gradient.

  python -m benchmarks.penalty_precision          # the stage-1 tiny D and the fusion tiny D_T

The zero-centred penalties differentiate D twice (input gradient, then its squared norm's
parameter gradient), so bf16's 8-bit mantissa could compound through the double backward. This
measures it on tiny production discriminators at init (real = random images; fake = other
random images): the penalty and d(penalty)/d(params) under compute_dtype=bfloat16 against the
same computation in f32, next to the bf16 error of the adversarial loss's own gradient (the
noise every bf16 step already carries). The README's Scale section quotes the output.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fabgen.gan import losses
from fabgen.platform import precision as precision_lib

F32, BF16 = precision_lib.Policy(), precision_lib.Policy(compute_dtype=jnp.bfloat16)


def _rel(a, b):
  a, b = jax.tree.leaves(a), jax.tree.leaves(b)
  num = np.sqrt(sum(float(jnp.sum(jnp.square(x - y))) for x, y in zip(a, b)))
  den = np.sqrt(sum(float(jnp.sum(jnp.square(y))) for y in b))
  return num / max(den, 1e-30)


def measure(d_apply, d_params, real, fake):
  """{penalty, penalty_grad, adversarial_grad} relative errors of bf16 against f32."""
  def terms(policy):
    def r1r2(params):
      d_fn = lambda x: d_apply(policy, params, x)
      logits, grads = losses.logits_and_input_grads(d_fn, jnp.concatenate([real, fake]))
      n = real.shape[0]
      return losses.squared_grad_norm(grads[:n]) + losses.squared_grad_norm(grads[n:])

    def adv(params):
      logits = d_apply(policy, params, jnp.concatenate([real, fake]))
      return losses.d_loss("rpgan", logits[:real.shape[0]], logits[real.shape[0]:])
    pen, pen_grad = jax.jit(jax.value_and_grad(r1r2))(d_params)
    return pen, pen_grad, jax.jit(jax.grad(adv))(d_params)
  p32, g32, a32 = terms(F32)
  p16, g16, a16 = terms(BF16)
  return {"penalty_f32": float(p32), "penalty": abs(float(p16 - p32)) / abs(float(p32)),
          "penalty_grad": _rel(g16, g32), "adversarial_grad": _rel(a16, a32)}


def main():
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "platform"))
  import production_models  # pylint: disable=g-import-not-at-top
  out = {}
  task, batch = production_models.stage1()
  state = task.init_state(jax.random.key(0))
  cond = jnp.concatenate([batch["cond"]] * 2)
  cls = jnp.concatenate([batch["class_id"]] * 2)
  rng = np.random.default_rng(1)
  b, s = batch["patch"].shape[:2]
  real, fake = (jnp.asarray(rng.uniform(-1, 1, (b, s, s, 4)), jnp.float32) for _ in range(2))
  out["stage1_d"] = measure(lambda pol, p, x: pol.apply(task.d, p, x, cond, cls), state["d"],
                            real, fake)
  task, batch = production_models.fusion()
  state = task.init_state(jax.random.key(0))
  w = jnp.concatenate([jnp.asarray(batch["window"])] * 2)[..., None]
  b, s = batch["x"].shape[:2]
  real, fake = (jnp.asarray(rng.uniform(-1, 1, (b, s, s, 3)), jnp.float32) for _ in range(2))
  out["fusion_d"] = measure(lambda pol, p, x: pol.apply(task.d_net, p, x, w), state["d"],
                            real, fake)
  print(json.dumps(out, indent=1))
  return out


if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
