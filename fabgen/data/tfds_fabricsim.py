"""FabricSim as a TFDS data set in array_record files, read back by grain (random access).

Rendering on the fly is the default input (it is jitted and deterministic), but a run that
wants its inputs frozen on disk (a shared data set for a team, a TPU pod where host CPU is short,
or exact reproducibility across FabricSim versions) builds this once:

  from fabgen.data import tfds_fabricsim
  builder = tfds_fabricsim.make_builder("simple", data_dir="~/tensorflow_datasets")
  builder.download_and_prepare()
  src = open_source("tfds:simple:train")              # or "tfds:simple:train:0@<data_dir>"

One builder config per preset (`tiny`, `simple`, `complex`, seed 0); `make_builder` makes others
(any seed, a subset of splits, a record cap). Records are exactly `FabricSim.record(split, i)`
(the features store the `fabgen.data.sample` arrays losslessly). Reading goes through
`builder.as_data_source`, a random-access source, so it plugs into `fabgen.data.pipeline` like any
reader, with the same per-process sharding and checkpointable iterators.
"""

from __future__ import annotations

import dataclasses
import inspect
import os

import numpy as np
import tensorflow_datasets as tfds

from fabgen.data import classes as classes_lib
from fabgen.data import sample as sample_lib
from fabgen.data.fabricsim import FabricSim
from fabgen.data.fabricsim import get_preset
from fabgen.data.readers import base

FILE_FORMAT = "array_record"
DEFAULT_DATA_DIR = os.path.expanduser("~/tensorflow_datasets")


@dataclasses.dataclass(eq=False)
class FabricSimConfig(tfds.core.BuilderConfig):
  """Which preset and seed to render, which splits, and at most how many records per split."""
  preset: str = "tiny"
  seed: int = 0
  splits: tuple[str, ...] = ()       # () = all FabricSim splits
  max_records: int | None = None     # None = the preset's split sizes


class FabgenFabricsim(tfds.core.GeneratorBasedBuilder):
  """TFDS builder of FabricSim records (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "fabgen.data.sample records of FabricSim presets."}
  BUILDER_CONFIGS = [FabricSimConfig(name=p, preset=p, description=f"FabricSim {p}, seed 0")
                     for p in ("tiny", "simple", "complex")]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    """This file. (TFDS 4.9.10's own version imports `importlib_resources`, which its metadata
    only installs on Python < 3.9, and fails; its fallback is this same path.)"""
    from etils import epath  # pylint: disable=g-import-not-at-top
    return epath.Path(inspect.getfile(cls))

  def _sim(self):
    return FabricSim(self.builder_config.preset, seed=self.builder_config.seed)

  def _info(self) -> tfds.core.DatasetInfo:
    size = int(get_preset(self.builder_config.preset).image_size)
    zlib = tfds.features.Encoding.ZLIB
    return self.dataset_info_from_configs(
        description="Procedural woven fabric with the six fabgen defect classes and exact "
                    "instance masks, in the fabgen.data.sample format.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3), dtype=np.uint8),
            "instance_mask": tfds.features.Tensor(shape=(size, size), dtype=np.int32,
                                                  encoding=zlib),
            "instance_class": tfds.features.Tensor(shape=(sample_lib.MAX_INSTANCES,),
                                                   dtype=np.int32),
            "boxes": tfds.features.Tensor(shape=(sample_lib.MAX_BOXES, 4), dtype=np.float32),
            "box_class": tfds.features.Tensor(shape=(sample_lib.MAX_BOXES,), dtype=np.int32),
            "box_instance": tfds.features.Tensor(shape=(sample_lib.MAX_BOXES,),
                                                 dtype=np.int32),
            "fabric_id": tfds.features.Scalar(dtype=np.int32),
        }),
        homepage="https://github.com/fabgen",
        # Record i of a split is FabricSim.record(split, i): no write-time shuffle (grain
        # shuffles at read time, per epoch and seed).
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    sim = self._sim()
    splits = self.builder_config.splits or sim.splits
    unknown = [s for s in splits if s not in sim.splits]
    if unknown:
      raise ValueError(f"FabricSimConfig {self.builder_config.name!r}: unknown splits {unknown}; "
                       f"FabricSim splits: {', '.join(sim.splits)}")
    return {s: self._generate_examples(sim, s) for s in splits}

  def _generate_examples(self, sim, split):
    n = sim.num_records(split)
    if self.builder_config.max_records is not None:
      n = min(n, self.builder_config.max_records)
    for i in range(n):
      yield i, sim.record(split, i)


def make_builder(preset: str = "tiny", seed: int = 0, data_dir: str | None = None,
                 splits: tuple[str, ...] = (), max_records: int | None = None
                 ) -> FabgenFabricsim:
  """A builder writing array_record files; a non-default seed/splits/cap get their own config."""
  data_dir = os.path.expanduser(data_dir or DEFAULT_DATA_DIR)
  if seed == 0 and not splits and max_records is None and preset in ("tiny", "simple", "complex"):
    config = preset
  else:
    name = f"{preset}_seed{seed}" + (f"_{'-'.join(splits)}" if splits else "") + (
        f"_max{max_records}" if max_records is not None else "")
    config = FabricSimConfig(name=name, preset=preset, seed=seed, splits=tuple(splits),
                             max_records=max_records)
  return FabgenFabricsim(config=config, data_dir=data_dir, file_format=FILE_FORMAT)


class TfdsSource(base.Source):
  """A built FabricSim TFDS split as a `fabgen.data.readers` source (random access)."""

  layout = "tfds"

  def __init__(self, builder: FabgenFabricsim, split: str):
    if split not in builder.info.splits:
      raise ValueError(f"{builder.data_dir}: TFDS split {split!r} not built; built: "
                       f"{', '.join(builder.info.splits)}")
    self.data_source = builder.as_data_source(split=split)
    self.split = split
    super().__init__(f"tfds:{builder.builder_config.name}:{split}", range(len(self.data_source)),
                     classes_lib.CLASSES)

  def _path(self, entry) -> str:
    return f"{self.name}[{entry}]"

  def _load(self, entry) -> dict[str, np.ndarray]:
    record = self.data_source[int(entry)]
    return {k: np.asarray(record[k]) for k in sample_lib.KEYS}

  def get_batch(self, indices):
    records = self.data_source.__getitems__([int(self._entry(i)) for i in indices])
    return [{k: np.asarray(r[k]) for k in sample_lib.KEYS} for r in records]


def open_tfds_source(spec: str) -> TfdsSource:
  """`tfds:<preset>:<split>[:seed][@data_dir]` (the data set must have been prepared)."""
  body, _, data_dir = spec[len("tfds:"):].partition("@")
  parts = body.split(":")
  if len(parts) not in (2, 3):
    raise ValueError(f"{spec!r}: expected tfds:<preset>:<split>[:seed][@data_dir]")
  seed = int(parts[2]) if len(parts) == 3 else 0
  builder = make_builder(parts[0], seed, data_dir or None)
  if not builder.is_prepared():
    raise FileNotFoundError(f"{spec!r}: not prepared under {builder.data_dir}; build it with "
                            f"`fabgen data tfds --preset {parts[0]} --seed {seed}`")
  return TfdsSource(builder, parts[1])
