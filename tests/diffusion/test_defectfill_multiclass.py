"""A multi-class DefectFill synthesizer paints each sample with its own class's fine-tune: the
sample of class B equals what B's single-class synthesizer paints with the same key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fabgen.diffusion import defectfill_task
from fabgen.synthesis import base
from fabgen.synthesis.defectfill import DefectFillSynthesizer
from tests.diffusion.conftest import synthetic_crops


def _fine_tune(make, class_name, seed):
  task = defectfill_task.DefectFillTask(make("lora", **{"data.class_name": class_name}))
  task.crops = synthetic_crops(size=task.config.data.image_size, seed=seed)
  state = task.init_state(jax.random.key(seed))       # eager (a jitted init compiles slowly)
  # Distinct fine-tunes: another [V*] and nonzero LoRA B, so the two classes paint differently.
  train = dict(state["train"])
  train["unet"] = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.3 * (seed + 1) if "lora_b" in jax.tree_util.keystr(p) else x,
      train["unet"])
  masks = np.zeros_like(np.asarray(state["mask_bank"]))
  masks[:, 4:12, 4:12] = 1.0
  return task, {**state, "train": train, "mask_bank": jnp.asarray(masks)}


def test_each_sample_paints_with_its_own_class(defectfill_config):
  knot = _fine_tune(defectfill_config, "knot", 0)
  stain = _fine_tune(defectfill_config, "oil_stain", 1)
  opts = dict(steps=1, guidance=2.0, candidates=1)
  both = DefectFillSynthesizer(*knot, **opts, more=[stain])
  only_stain = DefectFillSynthesizer(*stain, **opts)
  assert both.class_ids == (knot[0].class_id, stain[0].class_id)
  assert jax.tree.leaves(both.state)[0].shape[0] == 2
  rng = np.random.default_rng(0)
  bg = jnp.asarray(rng.integers(60, 200, (2, 16, 16, 3)), jnp.uint8)
  offsets = jnp.zeros((2, 2), jnp.int32)
  keys = jax.random.split(jax.random.key(5), 2)
  classes = jnp.asarray([stain[0].class_id, knot[0].class_id], jnp.int32)
  painted = jax.jit(both.apply)(both.state, bg, classes, offsets, keys)
  alone = jax.jit(only_stain.apply)(only_stain.state, bg, classes, offsets, keys)
  np.testing.assert_array_equal(painted[0], alone[0])       # sample 0 is oil_stain
  assert np.abs(np.asarray(painted[1], np.int32) - np.asarray(alone[1], np.int32)).max() > 0
  with pytest.raises(base.SynthesisError, match="same class"):
    DefectFillSynthesizer(*knot, **opts, more=[knot])
