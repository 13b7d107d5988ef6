"""TFDS builder for FabricSim: array_record files that read back equal to FabricSim.record."""

import numpy as np
import pytest

from fabgen.data import pipeline
from fabgen.data import tfds_fabricsim


@pytest.mark.slow
def test_tiny_builds_to_array_record_and_reads_back_equal(tmp_path):
  builder = tfds_fabricsim.make_builder("tiny", data_dir=str(tmp_path), splits=("train",),
                                        max_records=6)
  builder.download_and_prepare()
  files = [p.name for p in (tmp_path).rglob("*array_record*")]
  assert files, "no array_record files written"
  src = tfds_fabricsim.TfdsSource(builder, "train")
  assert len(src) == 6
  sim = builder._sim()  # pylint: disable=protected-access
  for i in (0, 5):
    want = sim.record("train", i)
    got = src[i]
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=f"record {i} key {k}")
  # Through the grain pipeline: two processes, disjoint and complete.
  seen = []
  for p in range(2):
    ds = pipeline.make_dataset(src, 3, num_epochs=1, process_index=p, process_count=2)
    batch = ds[0]
    assert batch["image"].shape == (3, 64, 64, 3)
    seen.append({bytes(b) for b in batch["image"].reshape(3, -1)})
  assert len(seen[0] | seen[1]) == 6
  with pytest.raises(ValueError, match="split 'test' not built"):
    tfds_fabricsim.TfdsSource(builder, "test")
