"""Through the platform: pre-train (diffusion) -> DefectFill fine-tune (resumed exactly) ->
`synthesize --method defectfill` writes a labelled set whose changed pixels lie inside the masks."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.platform import config as config_lib
from fabgen.platform import faults
from fabgen.platform import trainer
from tests.diffusion.conftest import shrink

pytestmark = pytest.mark.e2e


def _losses(workdir, key):
  out = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if key in row:
        out[row["step"]] = row[key]
  return out


def test_pretrain_defectfill_resume_and_synthesize(tmp_path):
  pre = str(tmp_path / "pre")
  c = shrink(config_lib.load_config("configs/diffusion.py:tiny,steps=4"), size=32)
  with c.unlocked():
    c.data.max_records = 24
  one = jax.devices()[:1]
  out = trainer.train(c, pre, devices=one)
  assert np.isfinite(out["loss/diffusion"])

  def df_config():
    d = shrink(config_lib.load_config(
        f"configs/defectfill.py:tiny,steps=4,init_from={pre},class_name=knot"), size=32)
    with d.unlocked():
      d.data.max_records = 24
      d.sampling.steps = 3
      d.sampling.candidates = 2
    return d

  full = str(tmp_path / "full")
  trainer.train(df_config(), full, devices=one)
  part = str(tmp_path / "part")
  stop = faults.StopSignal()
  stop.request()
  assert trainer.train(df_config(), part, stop=stop, devices=one)["step"] == 1
  trainer.train(df_config(), part, devices=one)
  for key in ("train/loss/def", "train/loss/obj", "train/loss/attn"):
    a, b = _losses(full, key), _losses(part, key)
    assert all(np.isfinite(v) for v in a.values())
    np.testing.assert_allclose([b[s] for s in range(1, 5)], [a[s] for s in range(1, 5)],
                               rtol=1e-5, atol=1e-7)
  s_full = checkpoint_lib.restore(full)[2]
  s_part = checkpoint_lib.restore(part)[2]
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               s_full["train"], s_part["train"])

  from fabgen.synthesis import synthesize  # pylint: disable=g-import-not-at-top
  synth_dir = str(tmp_path / "synth")
  manifest = synthesize("defectfill", full, "fabricsim:tiny:target_good", num=2,
                        out_dir=synth_dir, batch_size=2)
  assert os.path.exists(os.path.join(synth_dir, "contact_sheet.png"))
  assert os.path.exists(os.path.join(synth_dir, "annotations.json"))
  assert manifest is not None
