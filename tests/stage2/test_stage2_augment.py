"""Stage 2 can train with ADA augmentation of D_T's inputs (colour only: D_T's logit map is tied
to the window, so geometric transforms are refused with the key named)."""

import jax
import numpy as np
import pytest

from fabgen.platform import config as config_lib
from fabgen.stage2.fusion_task import FusionTask


def test_fusion_augmentation_is_a_switch_and_refuses_geometric_transforms():
  off = FusionTask(config_lib.get("configs/fusion.py:tiny"))
  x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3), minval=-1, maxval=1)
  np.testing.assert_array_equal(off.augmented(x, jax.random.key(1), 10), x)
  on = FusionTask(config_lib.get("configs/fusion.py:tiny", [
      "augment.enabled=True", "augment.p_start=1.0", "augment.p_end=1.0"]))
  y = on.augmented(x, jax.random.key(1), 10)
  assert y.shape == x.shape and not np.allclose(y, x)
  with pytest.raises(ValueError, match="config.augment.transforms=.*'xflip'"):
    FusionTask(config_lib.get("configs/fusion.py:tiny", [
        "augment.enabled=True", "augment.transforms=('xflip','brightness')"]))
