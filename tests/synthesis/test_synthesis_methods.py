"""Methods through the one interface: multistage with a stage-1 double, the CLI, bad inputs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import fusion as fusion_config
from fabgen.cli import main as cli_main
from fabgen.platform import checkpoint as checkpoint_lib
from fabgen.stage2 import fusion_task
from fabgen.synthesis import backgrounds as backgrounds_lib
from fabgen.synthesis import base
from fabgen.synthesis import multistage
from fabgen.synthesis import seam_quality
from fabgen.synthesis import stream


class _Stage1Double:
  """Implements the published Stage1Generator interface with a deterministic dark blob."""
  patch_size = 16
  class_ids = (0, 2)

  def generate(self, backgrounds, class_ids, rng):
    b = backgrounds.shape[0]
    yy, xx = jnp.mgrid[:16, :16]
    r = 3 + 2 * jax.random.uniform(rng, (b, 1, 1))
    mask = ((yy - 8) ** 2 + (xx - 8) ** 2 < r ** 2).astype(jnp.float32)
    patch = backgrounds[..., :16, :16, :].astype(jnp.float32) / 255 * (1 - 0.6 * mask[..., None])
    return {"patch": patch, "mask": mask}


def _fabric(seed, size=48):
  rng = np.random.default_rng(seed)
  x = np.arange(size)
  img = 120 + 40 * np.sin(2 * np.pi * x / 6)[None, :, None] * np.ones((size, 1, 3))
  return np.clip(img + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8)


def test_multistage_writes_exact_labels_and_keeps_change_near_the_patch(tmp_path):
  config = fusion_config.get_config("tiny")
  task = fusion_task.FusionTask(config)
  state = task.init_state(jax.random.key(0))
  state["t_ema"] = jax.tree.map(lambda a: a + 0.01, state["t_ema"])  # a non-identity T
  checkpoint_lib.write(str(tmp_path / "runs" / "fusion"), config, state)
  os.makedirs(tmp_path / "runs" / "stage1")
  synth = multistage.MultistageSynthesizer(
      _Stage1Double(), *base.restore_trained(str(tmp_path / "runs" / "fusion"), "fusion"))
  bgs = backgrounds_lib.open_backgrounds([_fabric(i) for i in range(3)])
  manifest = stream.SynthesisRun(synth, bgs, 8, str(tmp_path / "out"), batch_size=8).run()
  assert manifest["complete"] and manifest["boxes"] > 0
  coco = json.load(open(tmp_path / "out" / "annotations.json"))
  for im in coco["images"]:
    idx = im["id"]
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{idx:08d}.png")) > 0
    image = np.asarray(Image.open(tmp_path / "out" / im["file_name"]))
    diff = np.abs(image.astype(int) - bgs[idx % 3].astype(int)).max(-1)
    np.testing.assert_array_equal(mask, diff > 6)
    ys, xs = np.nonzero(mask)
    if len(ys):  # everything changed lies within the 32px fusion window
      assert ys.max() - ys.min() < 32 and xs.max() - xs.min() < 32
  assert multistage.split_checkpoint(str(tmp_path / "runs"))[1].endswith("fusion")


def test_wrong_checkpoint_kind_is_named(tmp_path):
  config = fusion_config.get_config("tiny")
  task = fusion_task.FusionTask(config)
  checkpoint_lib.write(str(tmp_path / "f"), config, task.init_state(jax.random.key(0)))
  with pytest.raises(base.SynthesisError, match="holds a 'fusion' model.*'inpainter'"):
    base.load("inpainter", str(tmp_path / "f"))
  with pytest.raises(base.SynthesisError, match="no stage-1 model"):
    multistage.split_checkpoint(str(tmp_path / "nowhere"))
  with pytest.raises(base.SynthesisError, match="unknown synthesis method 'nope'"):
    base.load("nope", str(tmp_path))


def test_cli_reads_a_plain_folder_of_backgrounds_and_names_an_unreadable_one(tmp_path, capsys,
                                                                            monkeypatch):
  """`--backgrounds FOLDER` of plain images works as the help says; a broken file is named.

  Only the checkpoint is replaced (a one-crop cut-paste bank); the background reading is real.
  """
  from fabgen.synthesis import cutpaste
  folder = tmp_path / "bgs"
  folder.mkdir()
  for i in range(2):
    Image.fromarray(_fabric(i)[:24, :24]).save(folder / f"bg{i}.png")
  bank = cutpaste.CutPasteSynthesizer(np.full((1, 8, 8, 3), 255, np.uint8),
                                      np.ones((1, 8, 8), np.float32), np.zeros(1, np.int32))
  monkeypatch.setattr(cutpaste.CutPasteSynthesizer, "from_checkpoint",
                      classmethod(lambda cls, ckpt, **kw: bank))
  args = ["synthesize", "--method", "cutpaste", "--checkpoint", "x", "--backgrounds",
          str(folder), "--num", "2"]
  assert cli_main.main(args + ["--out", str(tmp_path / "o")]) == 0, capsys.readouterr().err
  coco = json.load(open(tmp_path / "o" / "annotations.json"))
  assert len(coco["images"]) == 2 and coco["annotations"]
  (folder / "broken.png").write_bytes(b"not a png")
  assert cli_main.main(args + ["--out", str(tmp_path / "o2")]) == 2
  err = capsys.readouterr().err
  assert "cannot read background" in err and "broken.png" in err


def test_seam_quality_prefers_blended_over_hard_seams():
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:48, :48]
  mask = (yy - 24) ** 2 + (xx - 24) ** 2 < 100
  soft = np.clip(1 - (np.sqrt((yy - 24) ** 2 + (xx - 24) ** 2) - 7) / 6, 0, 1)[..., None]
  real, hard = [], []
  for i in range(6):
    bg = _fabric(i)
    real.append(((bg * (1 - 0.5 * soft)).astype(np.uint8), mask))
    other = np.roll(_fabric(100 + i), 3, axis=1)
    hard.append((np.where(mask[..., None], (other * 0.5).astype(np.uint8), bg), mask))
  ref = seam_quality.set_statistics(real)
  same = seam_quality.seam_quality(real, ref)
  pasted = seam_quality.seam_quality(hard, ref)
  assert same["grad_gap"] < 1e-9 and same["band_fd"] < 1e-6
  assert pasted["grad_gap"] > 0.1 and pasted["band_fd"] > same["band_fd"]
  del rng

