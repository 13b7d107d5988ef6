"""The CLIP text transformer (transformers `CLIPTextModel`) in NNX.

SD-2 conditions on the penultimate layer of OpenCLIP-H: its diffusers folder ships the tower cut
to 23 layers, and the pipeline reads `last_hidden_state` (after `final_layer_norm`), which is
what `__call__` returns. `placeholder_id` / `placeholder_embedding` let DefectFill's new token
[V*] use a trainable vector without resizing (or training) the frozen vocabulary table.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from fabgen.diffusion import layers as L


@dataclasses.dataclass(frozen=True)
class TextConfig:
  vocab_size: int = 49408
  hidden_size: int = 1024
  intermediate_size: int = 4096
  num_hidden_layers: int = 23
  num_attention_heads: int = 16
  max_position_embeddings: int = 77
  hidden_act: str = "gelu"   # SD-2 (OpenCLIP); OpenAI CLIP uses "quick_gelu"
  layer_norm_eps: float = 1e-5
  lora_rank: int = 0
  lora_alpha: float = 0.0

  @classmethod
  def from_dict(cls, d) -> "TextConfig":
    return cls(**dict(d))


def _act(name):
  if name == "gelu":
    return lambda x: jax.nn.gelu(x, approximate=False)
  if name == "quick_gelu":
    return lambda x: x * jax.nn.sigmoid(1.702 * x)
  raise ValueError(f"text encoder: unknown hidden_act {name!r} (gelu, quick_gelu)")


class Embeddings(nnx.Module):
  def __init__(self, cfg: TextConfig, *, rngs):
    self.token_embedding = L.Embed(cfg.vocab_size, cfg.hidden_size, rngs=rngs)
    self.position_embedding = L.Embed(cfg.max_position_embeddings, cfg.hidden_size, rngs=rngs)


class SelfAttention(nnx.Module):
  def __init__(self, cfg: TextConfig, *, rngs):
    d, lora = cfg.hidden_size, dict(lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha, rngs=rngs)
    self.heads = cfg.num_attention_heads
    self.q_proj = L.Dense(d, d, **lora)
    self.k_proj = L.Dense(d, d, **lora)
    self.v_proj = L.Dense(d, d, **lora)
    self.out_proj = L.Dense(d, d, **lora)

  def __call__(self, x, mask):
    return self.out_proj(L.attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads,
                                     mask=mask))


class MLP(nnx.Module):
  def __init__(self, cfg: TextConfig, *, rngs):
    self.act = _act(cfg.hidden_act)
    self.fc1 = L.Dense(cfg.hidden_size, cfg.intermediate_size, rngs=rngs)
    self.fc2 = L.Dense(cfg.intermediate_size, cfg.hidden_size, rngs=rngs)

  def __call__(self, x):
    return self.fc2(L.batch_sharded(self.act(self.fc1(x))))


class EncoderLayer(nnx.Module):
  def __init__(self, cfg: TextConfig, *, rngs):
    self.self_attn = SelfAttention(cfg, rngs=rngs)
    self.layer_norm1 = L.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, rngs)
    self.mlp = MLP(cfg, rngs=rngs)
    self.layer_norm2 = L.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, rngs)

  def __call__(self, x, mask):
    x = L.batch_sharded(x + self.self_attn(self.layer_norm1(x), mask))
    return L.batch_sharded(x + self.mlp(self.layer_norm2(x)))


class Encoder(nnx.Module):
  def __init__(self, cfg: TextConfig, *, rngs):
    self.layers = nnx.List([EncoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])


class TextTransformer(nnx.Module):
  def __init__(self, cfg: TextConfig, *, rngs):
    self.embeddings = Embeddings(cfg, rngs=rngs)
    self.encoder = Encoder(cfg, rngs=rngs)
    self.final_layer_norm = L.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, rngs)


class CLIPTextModel(nnx.Module):
  """ids [B, N] int -> last_hidden_state [B, N, D] (causal attention, pre-LN)."""

  def __init__(self, cfg: TextConfig, *, rngs: L.KeyGen):
    self.cfg = cfg
    self.text_model = TextTransformer(cfg, rngs=rngs)

  def __call__(self, ids, placeholder_id: int | None = None, placeholder_embedding=None):
    tm = self.text_model
    table = tm.embeddings.token_embedding.embedding[...]
    n = ids.shape[1]
    x = jnp.take(table, jnp.clip(ids, 0, table.shape[0] - 1), axis=0)
    if placeholder_id is not None:
      x = jnp.where((ids == placeholder_id)[..., None],
                    placeholder_embedding.astype(x.dtype)[None, None], x)
    x = x + tm.embeddings.position_embedding.embedding[...][:n][None]
    causal = jnp.tril(jnp.ones((n, n), bool))[None, None]
    for layer in tm.encoder.layers:
      x = layer(x, causal)
    return tm.final_layer_norm(x)
