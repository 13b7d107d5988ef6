"""Model pieces: deformable sampling against a reference, shapes, weight loading, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.scipy import ndimage

from fabgen.detector import backbone as backbone_lib
from fabgen.detector import deformable_attention as da
from fabgen.detector.model import DetectorModel, postprocess

TINY = dict(widths=(8, 8, 16, 16), depths=(1, 1, 1, 1), dim=16, heads=2, ffn=32,
            fusion_depth=1, num_queries=10, decoder_layers=2, points=2, seg_dim=8,
            seg_rates=(1, 2))


def test_bilinear_sample_matches_map_coordinates():
  rng = np.random.default_rng(0)
  h, w, d = 5, 7, 3
  img = rng.normal(size=(h, w, d)).astype(np.float32)
  # Include points outside the image, where zero padding applies.
  loc = rng.uniform(-0.2, 1.2, size=(40, 2)).astype(np.float32)
  got = da.bilinear_sample(jnp.asarray(img.reshape(1, 1, h * w, d)), jnp.asarray(loc[None, None]),
                           h, w)[0, 0]
  rows = loc[:, 1] * h - 0.5
  cols = loc[:, 0] * w - 0.5
  ref = np.stack([ndimage.map_coordinates(jnp.asarray(img[..., c]), [rows, cols], order=1,
                                          mode="constant", cval=0.0) for c in range(d)], -1)
  np.testing.assert_allclose(got, ref, atol=1e-5)


def test_deformable_attention_gradient_flows_to_offsets():
  attn = da.MSDeformableAttention(8, 2, 2, 2, rngs=nnx.Rngs(0))
  shapes = [(4, 4), (2, 2)]
  rng = np.random.default_rng(1)
  memory = jnp.asarray(rng.normal(size=(1, 20, 8)), jnp.float32)
  query = jnp.asarray(rng.normal(size=(1, 3, 8)), jnp.float32)
  ref = jnp.asarray([[[0.5, 0.5, 0.5, 0.5], [0.2, 0.3, 0.2, 0.2], [0.8, 0.7, 0.3, 0.1]]])
  graphdef, state = nnx.split(attn)

  def f(state):
    return jnp.sum(nnx.merge(graphdef, state)(query, ref, memory, shapes) ** 2)

  grads = jax.jit(jax.grad(f))(state)
  assert float(jnp.abs(grads["offsets"]["kernel"][...]).sum()) > 0


def test_model_output_shapes_and_predictions():
  model = DetectorModel(3, rngs=nnx.Rngs(0), **TINY)
  images = jnp.zeros((2, 64, 96, 3), jnp.uint8)
  out = nnx.jit(lambda m, x: m(x))(model, images)   # eager dispatch is far slower than jit
  assert out["logits"].shape == (2, 2, 10, 3)
  assert out["boxes"].shape == (2, 2, 10, 4)
  assert out["seg_logits"].shape == (2, 16, 24, 4)
  pred = postprocess(out, 64, 96, [1, 4, 5])
  assert pred["boxes"].shape == (2, 10, 4) and pred["seg_probs"].shape == (2, 64, 96, 4)
  assert set(np.unique(pred["labels"]).tolist()) <= {1, 4, 5}
  assert float(pred["boxes"][..., 2].max()) <= 96 and float(pred["boxes"].min()) >= 0
  np.testing.assert_allclose(pred["seg_probs"].sum(-1), 1.0, atol=1e-5)


def test_model_rejects_sizes_not_multiple_of_32():
  model = DetectorModel(2, rngs=nnx.Rngs(0), **TINY)
  with pytest.raises(ValueError, match="70x64 is not a multiple of 32"):
    model(jnp.zeros((1, 70, 64, 3), jnp.uint8))


def test_backbone_weights_round_trip(tmp_path):
  a = backbone_lib.ResNet((8, 8, 16, 16), (1, 1, 1, 1), rngs=nnx.Rngs(0))
  b = backbone_lib.ResNet((8, 8, 16, 16), (1, 1, 1, 1), rngs=nnx.Rngs(1))
  pa = nnx.to_pure_dict(nnx.state(a, nnx.Param))
  pb = nnx.to_pure_dict(nnx.state(b, nnx.Param))
  path = str(tmp_path / "backbone.safetensors")
  backbone_lib.save_weights(pa, path)
  loaded = backbone_lib.load_weights(pb, path)
  jax.tree.map(np.testing.assert_array_equal, loaded, pa)
  other = nnx.to_pure_dict(nnx.state(backbone_lib.ResNet((8, 16, 16, 16), (1, 1, 1, 1),
                                                         rngs=nnx.Rngs(0)), nnx.Param))
  with pytest.raises(ValueError, match="backbone.safetensors.*has shape"):
    backbone_lib.load_weights(other, path)


def test_multilevel_sampling_equals_per_level_reference():
  rng = np.random.default_rng(2)
  shapes = [(4, 6), (2, 3)]
  b, q, nh, npt, d = 2, 3, 2, 2, 4
  value = jnp.asarray(rng.normal(size=(b, 24 + 6, nh, d)), jnp.float32)
  loc = jnp.asarray(rng.uniform(-0.1, 1.1, size=(b, q, nh, 2, npt, 2)), jnp.float32)
  weights = jax.nn.softmax(jnp.asarray(rng.normal(size=(b, q, nh, 2 * npt))), -1)
  weights = weights.reshape(b, q, nh, 2, npt)
  got = da.ms_deform_sample(value, shapes, loc, weights)
  ref = np.zeros((b, q, nh, d), np.float32)
  start = 0
  for level, (h, w) in enumerate(shapes):
    img = np.asarray(value[:, start:start + h * w]).reshape(b, h, w, nh, d)
    start += h * w
    for bi, qi, hi, pi in np.ndindex(b, q, nh, npt):
      x, y = np.asarray(loc[bi, qi, hi, level, pi])
      sample = [ndimage.map_coordinates(jnp.asarray(img[bi, :, :, hi, c]), [[y * h - 0.5],
                                        [x * w - 0.5]], order=1, mode="constant", cval=0.0)[0]
                for c in range(d)]
      ref[bi, qi, hi] += float(weights[bi, qi, hi, level, pi]) * np.asarray(sample)
  np.testing.assert_allclose(got, ref.reshape(b, q, nh * d), atol=1e-5)
