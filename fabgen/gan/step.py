"""The adversarial update every GAN task shares: its state, one D-then-G step, the EMA of G.

A GAN task (stage 1, the fusion network, the single-stage inpainter, later models) differs in
its networks, its two objectives and its inputs; the update around them is the same and is
written here once:

  state = {"step", G, "d", G_ema, opt_G, "opt_d", ...task extras}   (`init_state`)
  D step: grads of `d_objective(d_params)`, Adam update;
  G step: grads of `g_objective(g_params, new d_params)` (G sees the *updated* D), Adam update;
  EMA:    G_ema <- decay * G_ema + (1 - decay) * G, or a copy of G when `ema_decay` is None.

G's key is a parameter (`"g"`, or `"t"` for the fusion network, whose checkpoints name it so).
Both objectives return `(loss, metrics)`; the update adds `grad_norm/d` and `grad_norm/<G>`.
Everything is pure and traceable, so `jax.vmap` over states (and a traced penalty weight inside
the objectives) trains a grid of runs in one program (`fabgen.gan.grid_task`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from fabgen.platform import ema as ema_lib

Objective = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def init_state(g_params, d_params, opt_g: optax.GradientTransformation,
               opt_d: optax.GradientTransformation, g: str = "g", **extras: Any) -> dict:
  """The GAN state pytree: step 0, both networks, G's EMA (a copy of G), both optimizer states."""
  return {"step": jnp.zeros((), jnp.int32), g: g_params, "d": d_params,
          f"{g}_ema": jax.tree.map(jnp.copy, g_params), f"opt_{g}": opt_g.init(g_params),
          "opt_d": opt_d.init(d_params), **extras}


def update(state: dict, d_objective: Objective, g_objective: Objective,
           opt_d: optax.GradientTransformation, opt_g: optax.GradientTransformation,
           ema_decay: jax.Array | None, g: str = "g") -> tuple[dict, dict[str, jax.Array]]:
  """One D step then one G step (against the updated D) and the EMA; returns (state, metrics).

  d_objective(d_params) -> (loss, metrics); g_objective(g_params, d_params) -> (loss, metrics).
  Keys of `state` other than the GAN's own (e.g. a mask bank) are carried over unchanged.
  """
  (_, d_metrics), d_grads = jax.value_and_grad(d_objective, has_aux=True)(state["d"])
  d_updates, opt_d_state = opt_d.update(d_grads, state["opt_d"], state["d"])
  d_params = optax.apply_updates(state["d"], d_updates)

  (_, g_metrics), g_grads = jax.value_and_grad(
      lambda params: g_objective(params, d_params), has_aux=True)(state[g])
  g_updates, opt_g_state = opt_g.update(g_grads, state[f"opt_{g}"], state[g])
  g_params = optax.apply_updates(state[g], g_updates)

  if ema_decay is None:
    g_ema = jax.tree.map(jnp.copy, g_params)
  else:
    g_ema = ema_lib.ema_update(state[f"{g}_ema"], g_params, ema_decay)
  new_state = {**state, "step": state["step"] + 1, g: g_params, "d": d_params,
               f"{g}_ema": g_ema, f"opt_{g}": opt_g_state, "opt_d": opt_d_state}
  metrics = {**d_metrics, **g_metrics, "grad_norm/d": optax.tree.norm(d_grads),
             f"grad_norm/{g}": optax.tree.norm(g_grads)}
  return new_state, metrics
