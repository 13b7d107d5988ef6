"""Component boxes: the jittable jax labelling equals the scipy reference."""

import jax
import numpy as np
import pytest
from scipy import ndimage

from fabgen.data import labels


def _random_masks(seed, count=6, size=(24, 32)):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    noise = ndimage.gaussian_filter(rng.normal(size=size), 1.2)
    inst = np.zeros(size, np.int32)
    inst[noise > 0.15] = 1
    inst[(noise < -0.2)] = 2
    inst[rng.random(size) < 0.02] = 3  # isolated specks
    out.append(inst)
  # Shapes that defeat naive propagation: a spiral-ish snake and a long diagonal.
  snake = np.zeros(size, np.int32)
  snake[1::4, 1:-1] = 1
  snake[1:-1:8, -2] = 1
  for r in range(3, size[0] - 1, 8):
    snake[r - 2:r + 1, -2] = 1
    if r + 2 < size[0]:
      snake[r:r + 3, 1] = 1
  out.append(snake)
  diag = np.zeros(size, np.int32)
  idx = np.arange(min(size))
  diag[idx, idx] = 4
  out.append(diag)
  return out


@pytest.mark.parametrize("min_area", [1, 3])
def test_jax_boxes_equal_scipy_reference(min_area):
  fn = jax.jit(lambda m: labels.component_boxes(m, max_boxes=16, min_area=min_area,
                                                max_candidates=256))
  for mask in _random_masks(0):
    ref = labels.component_boxes_np(mask, max_boxes=16, min_area=min_area)
    got = jax.tree.map(np.asarray, fn(mask))
    np.testing.assert_array_equal(got.boxes, ref.boxes)
    np.testing.assert_array_equal(got.box_instance, ref.box_instance)
    np.testing.assert_array_equal(got.areas, ref.areas)
    np.testing.assert_array_equal(got.kept, ref.kept)


def test_boxes_are_minimal_rectangles_of_components():
  mask = np.zeros((10, 12), np.int32)
  mask[2:4, 3:7] = 1   # one rectangle
  mask[6, 0] = 1       # a separate pixel of the same instance
  mask[7, 1] = 2       # diagonal neighbour, but another instance: its own box
  got = jax.tree.map(np.asarray, labels.component_boxes(mask, max_boxes=4))
  np.testing.assert_array_equal(got.boxes[:3], [[3, 2, 7, 4], [0, 6, 1, 7], [1, 7, 2, 8]])
  np.testing.assert_array_equal(got.box_instance, [1, 1, 2, 0])
  np.testing.assert_array_equal(got.areas, [8, 1, 1, 0])


def test_vmap_matches_per_image_and_drops_surplus():
  masks = np.stack(_random_masks(1, count=4))
  batched = jax.vmap(lambda m: labels.component_boxes(m, max_boxes=5, max_candidates=128))(masks)
  for b, mask in enumerate(masks):
    ref = labels.component_boxes_np(mask, max_boxes=5)
    np.testing.assert_array_equal(np.asarray(batched.boxes[b]), ref.boxes)
    np.testing.assert_array_equal(np.asarray(batched.kept[b]), ref.kept)
    if b < 4:  # the random masks hold more than 5 components: the surplus really is dropped
      assert ref.kept.sum() < (mask > 0).sum()


def test_bad_shape_is_named():
  with pytest.raises(ValueError, match="instance_mask"):
    labels.component_boxes_np(np.zeros((2, 3, 4), np.int32))


def test_long_spiral_and_candidate_cap():
  """A 1-pixel spiral (the worst case for propagation) is one component; components past
  `max_candidates` in raster order are dropped, never mis-ranked into another's box."""
  size = 48
  spiral = np.zeros((size, size), np.int32)
  top, left, bottom, right = 0, 0, size - 1, size - 1
  while top <= bottom and left <= right:
    spiral[top, left:right + 1] = 1
    spiral[top:bottom + 1, right] = 1
    spiral[bottom, left:right + 1] = 1
    if top + 2 <= bottom:
      spiral[top + 2:bottom + 1, left] = 1
    top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    if left - 2 + 2 <= right:
      spiral[top, left - 2:left] = 1  # join the next ring
  specks = np.zeros((size, size), np.int32)
  specks[1::4, 1::4] = 2  # 144 isolated pixels
  fn = jax.jit(lambda m: labels.component_boxes(m, max_boxes=16, max_candidates=8))
  for mask in (spiral, specks):
    ref = labels.component_boxes_np(mask, max_boxes=16 if mask is spiral else 8)
    got = jax.tree.map(np.asarray, fn(mask))
    np.testing.assert_array_equal(got.boxes[:len(ref.boxes)], ref.boxes)
    np.testing.assert_array_equal(got.areas[:len(ref.areas)], ref.areas)
    np.testing.assert_array_equal(got.kept, ref.kept)
  assert labels.component_boxes_np(spiral).areas[1] == 0  # the spiral really is one component
