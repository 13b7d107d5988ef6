"""The grain pipeline: disjoint complete process shards, resume equals uninterrupted."""

import time

import numpy as np
import orbax.checkpoint as ocp
import grain
import pytest

from fabgen.data import pipeline
from fabgen.data.readers import base
from fabgen.data.readers import records
from fabgen.platform import input_options


class _Synthetic(base.Source):
  """In-memory records of varying size; the image encodes the sample index."""

  def __init__(self, n, sizes=((12, 16),)):
    entries = []
    for i in range(n):
      h, w = sizes[i % len(sizes)]
      image = np.full((h, w, 3), i, np.uint8)
      mask = np.zeros((h, w), np.int32)
      mask[2:5, 3:7] = 1
      entries.append(records.make_sample(image, mask, [i % 6], fabric_id=i)[0])
    super().__init__("synthetic", entries, tuple("abcdef"))

  def _load(self, entry):
    return entry

  def _path(self, entry):
    return f"synthetic[{int(entry['fabric_id'])}]"


def _ids(batches):
  return [int(i) for b in batches for i in b["fabric_id"]]


def test_two_processes_read_disjoint_halves_that_are_complete():
  src = _Synthetic(20)
  seen = []
  for p in range(2):
    ds = pipeline.make_dataset(src, 5, seed=3, num_epochs=1, process_index=p, process_count=2)
    ids = _ids(list(ds))
    assert len(ids) == 10 and len(set(ids)) == 10
    seen.append(set(ids))
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(20))


def test_shuffle_differs_per_epoch_and_is_seeded():
  src = _Synthetic(8)
  a = _ids(list(pipeline.make_dataset(src, 4, seed=1, num_epochs=2, process_count=1,
                                      process_index=0)))
  b = _ids(list(pipeline.make_dataset(src, 4, seed=1, num_epochs=2, process_count=1,
                                      process_index=0)))
  assert a == b and sorted(a[:8]) == list(range(8)) and sorted(a[8:]) == list(range(8))
  assert a[:8] != a[8:] and a[:8] != list(range(8))


def test_resume_from_orbax_checkpoint_equals_uninterrupted(tmp_path):
  src = _Synthetic(10, sizes=((12, 16), (20, 9)))
  make = lambda: pipeline.make_dataset(src, 3, seed=0, transform=pipeline.make_transform(
      "crop", (8, 8)), process_index=0, process_count=1)
  full = [b for _, b in zip(range(7), pipeline.make_iterator(make()))]
  it = pipeline.make_iterator(make())
  for _ in range(4):
    next(it)
  with ocp.CheckpointManager(str(tmp_path)) as mngr:
    mngr.save(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
  fresh = pipeline.make_iterator(make())
  with ocp.CheckpointManager(str(tmp_path)) as mngr:
    mngr.restore(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  for want in full[4:]:
    got = next(fresh)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])
  assert full[4]["image"].shape == (3, 8, 8, 3)


def test_mixed_sizes_need_a_transform():
  src = _Synthetic(4, sizes=((12, 16), (20, 9)))
  ds = pipeline.make_dataset(src, 2, shuffle=False, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="synthetic: images of different sizes"):
    ds[0]
  ds = pipeline.make_dataset(src, 2, shuffle=False, process_index=0, process_count=1,
                             transform=pipeline.make_transform("resize", (10, 10)))
  b = ds[0]
  assert b["image"].shape == (2, 10, 10, 3) and b["instance_mask"].shape == (2, 10, 10)
  for s in range(2):  # boxes are the resized mask's components
    ys, xs = np.nonzero(b["instance_mask"][s])
    np.testing.assert_array_equal(b["boxes"][s, 0], [xs.min(), ys.min(), xs.max() + 1,
                                                     ys.max() + 1])


class _Counting(_Synthetic):
  """Counts the samples read, to see how far ahead grain works."""

  reads = 0

  def get_batch(self, indices):
    type(self).reads += len(indices)
    return super().get_batch(indices)


def test_read_ahead_is_bounded_by_read_options():
  """grain's defaults read 500 batches ahead on 16 threads; ours stop at threads + buffer."""
  src = _Counting(200)
  ds = pipeline.make_dataset(src, 2, seed=0, process_index=0, process_count=1)
  it = iter(ds.to_iter_dataset(input_options.read_options(threads=1, buffer=3)))
  next(it)
  time.sleep(1.0)  # let the reader fill its buffer
  assert 2 <= _Counting.reads <= 2 * (1 + 3 + 1 + 1), _Counting.reads
  opts = input_options.read_options()
  assert 1 <= opts.num_threads <= 8 and opts.prefetch_buffer_size == 2 * opts.num_threads
  with pytest.raises(ValueError, match="data_threads=-1"):
    input_options.read_options(threads=-1)


def test_config_read_options_reads_the_platform_keys():
  from fabgen.platform import config as config_lib  # pylint: disable=g-import-not-at-top
  c = config_lib.base_config()
  c.data_threads, c.data_buffer = 3, 5
  opts = input_options.config_read_options(c)
  assert (opts.num_threads, opts.prefetch_buffer_size) == (3, 5)


def _two_defects():
  """64x64: a big class-0 stain (rows 0-40) and a 4-px class-3 knot near the far corner."""
  mask = np.zeros((64, 64), np.int32)
  mask[0:40, 0:40] = 1
  mask[56:60, 58:62] = 2
  return records.make_sample(np.zeros((64, 64, 3), np.uint8), mask, [0, 3])[0]


def test_defect_crops_hold_a_whole_defect_drawn_class_balanced():
  sample, crop = _two_defects(), pipeline.make_transform("crop", (16, 16), on_defect=1.0)
  knots = 0
  for i in range(400):
    out = crop(sample, np.random.default_rng(i))
    kinds = {int(c) for c in out["instance_class"] if c >= 0}
    assert kinds, "a defect crop lost its defect"
    if 3 in kinds:  # the knot is whole: all 16 of its pixels are in the crop
      k = 1 + list(out["instance_class"]).index(3)
      assert (out["instance_mask"] == k).sum() == 16
      knots += 1
  assert 160 < knots < 240  # one class of two, not one pixel area of ~1600
  uniform = pipeline.make_transform("crop", (16, 16))
  hits = sum(3 in set(uniform(sample, np.random.default_rng(i))["instance_class"].tolist())
             for i in range(400))
  assert hits < 40  # what uniform crops give the knot


def test_defect_crop_probability_is_checked():
  with pytest.raises(ValueError, match="on_defect=1.5"):
    pipeline.make_transform("crop", (16, 16), on_defect=1.5)
  with pytest.raises(ValueError, match="'resize'"):
    pipeline.make_transform("resize", (16, 16), on_defect=0.5)
