"""FabricSim presets: which fabrics, classes, sizes and camera a simulated data set mirrors.

`simple` mirrors the paper's simple-texture set (greyscale line-scan look, plain/twill/basket
weaves, AITEX-like), `complex` its complex-texture set (colour area-scan, yarn-dyed stripes and
checks, printed patterns, every weave), with the paper's class lists and train/test sizes
(the paper's numbers). `tiny` is for tests: 64x64, all six classes, a handful of images.
`linescan` renders whole 256x4096 greyscale strips with fine yarns (2-8 px), the line-scan
camera's column gain and banding, motion blur, selvages and AITEX-like defect shapes
(`fabricsim/linescan.py`; its randomisation ranges are `LineScanRanges` config values);
`linescan_tiny` is the same at 64x512 for tests.
"""

from __future__ import annotations

import dataclasses

from fabgen.data import classes as classes_lib
from fabgen.data.fabricsim import weaves
from fabgen.data.fabricsim.linescan_ranges import LineScanRanges

SPLITS: tuple[str, ...] = ("train", "test", "source_good", "target_good", "target_test")
PRESETS: tuple[str, ...] = ("tiny", "simple", "complex", "simple_far", "linescan", "linescan_tiny")


@dataclasses.dataclass(frozen=True)
class Preset:
  """Everything that defines a FabricSim data set except the seed.

  Lengths are in pixels at `image_size`; ranges are (low, high) uniform draws per fabric.
  """
  name: str
  image_size: int
  classes: tuple[str, ...]
  colour: bool
  split_sizes: tuple[tuple[str, int], ...]   # (split, number of records) for every SPLITS entry
  num_source_fabrics: int
  num_target_fabrics: int
  weaves: tuple[str, ...]                    # weave names a fabric may use
  pitch: tuple[float, float] = (4.0, 8.0)    # pixels per yarn (warp and weft drawn separately)
  stripe_prob: float = 0.0                   # yarn-dyed warp stripes (both directions = checks)
  check_prob: float = 0.0
  print_prob: float = 0.0                    # printed pattern over the weave
  max_rotation_deg: float = 2.0
  max_skew: float = 0.02
  line_scan: bool = False                    # column-wise gain (PRNU) and across-line light profile
  noise_levels: tuple[float, float] = (1.5, 4.0)   # sensor noise sigma, uint8 levels
  blur: tuple[float, float] = (0.08, 0.22)   # weight of each neighbour in the 3-tap blur
  instance_probs: tuple[float, ...] = (0.6, 0.28, 0.08, 0.04)  # P(1..4 defect instances)
  min_component_area: int = 4                # smaller mask components are reverted, not labelled
  linescan: LineScanRanges | None = None     # whole strips (image_size rows x linescan.width)
  # Held-out target fabrics from a family absent from the sources (empty / None: the same
  # distribution as the sources): their weaves, and their yarn pitch range.
  target_weaves: tuple[str, ...] = ()
  target_pitch: tuple[float, float] | None = None

  @property
  def shape(self) -> tuple[int, int]:
    """(height, width) of a record: square, or a line-scan strip."""
    return (self.image_size, self.linescan.width if self.linescan else self.image_size)

  def __post_init__(self):
    for name in self.classes:
      classes_lib.class_id(name)
    for name in self.weaves + self.target_weaves:
      weaves.weave_id(name)
    sizes = dict(self.split_sizes)
    if set(sizes) != set(SPLITS):
      raise ValueError(f"preset {self.name!r}: split_sizes must name exactly {SPLITS}, got "
                       f"{tuple(sizes)}")
    if self.image_size < 16:
      raise ValueError(f"preset {self.name!r}: image_size {self.image_size} is below 16")

  def split_size(self, split: str) -> int:
    """Number of records in a split."""
    sizes = dict(self.split_sizes)
    if split not in sizes:
      raise ValueError(f"unknown split {split!r}; FabricSim splits: {', '.join(SPLITS)}")
    return sizes[split]


_SIMPLE_WEAVES = ("plain", "twill_2_1_z", "twill_2_1_s", "twill_2_2_z", "twill_3_1_z",
                  "basket_2_2", "warp_rib", "weft_rib")

_PRESETS = {
    "tiny": Preset(
        name="tiny", image_size=64, classes=classes_lib.CLASSES, colour=True,
        split_sizes=(("train", 24), ("test", 12), ("source_good", 8), ("target_good", 8),
                     ("target_test", 12)),
        num_source_fabrics=4, num_target_fabrics=2, weaves=weaves.NAMES, pitch=(3.0, 5.0),
        stripe_prob=0.3, check_prob=0.2, print_prob=0.2),
    # Paper sizes: simple 4,232 train / 1,057 test images.
    "simple": Preset(
        name="simple", image_size=256, classes=classes_lib.SIMPLE_CLASSES, colour=False,
        split_sizes=(("train", 4232), ("test", 1057), ("source_good", 1000),
                     ("target_good", 400), ("target_test", 1057)),
        num_source_fabrics=40, num_target_fabrics=8, weaves=_SIMPLE_WEAVES, pitch=(3.5, 7.0),
        max_rotation_deg=1.0, max_skew=0.01, line_scan=True),
    # Paper sizes: complex 4,170 train / 1,073 test images.
    "complex": Preset(
        name="complex", image_size=256, classes=classes_lib.COMPLEX_CLASSES, colour=True,
        split_sizes=(("train", 4170), ("test", 1073), ("source_good", 1000),
                     ("target_good", 400), ("target_test", 1073)),
        num_source_fabrics=40, num_target_fabrics=8, weaves=weaves.NAMES, pitch=(4.0, 10.0),
        stripe_prob=0.35, check_prob=0.25, print_prob=0.3, max_rotation_deg=3.0),
    # `simple` with a domain shift to recover: source fabrics are plain and twill weaves at
    # 3.5-6 px per yarn; the held-out target fabrics are basket and rib weaves at 6.5-9 px per
    # yarn, a weave family and a scale no source has (the adaptation aggregate's targets).
    "simple_far": Preset(
        name="simple_far", image_size=256, classes=classes_lib.SIMPLE_CLASSES, colour=False,
        split_sizes=(("train", 4232), ("test", 1057), ("source_good", 1000),
                     ("target_good", 400), ("target_test", 1057)),
        num_source_fabrics=40, num_target_fabrics=8,
        weaves=("plain", "twill_2_1_z", "twill_2_1_s", "twill_2_2_z", "twill_3_1_z"),
        pitch=(3.5, 6.0), max_rotation_deg=1.0, max_skew=0.01, line_scan=True,
        target_weaves=("basket_2_2", "warp_rib", "weft_rib"), target_pitch=(6.5, 9.0)),
    # AITEX-like: 245 strips of 7 fabrics in the real set; more fabrics here so that targets
    # can be held out.
    "linescan": Preset(
        name="linescan", image_size=256, classes=classes_lib.CLASSES, colour=False,
        split_sizes=(("train", 2000), ("test", 500), ("source_good", 500),
                     ("target_good", 200), ("target_test", 300)),
        num_source_fabrics=40, num_target_fabrics=8, weaves=_SIMPLE_WEAVES + ("satin_5_warp",),
        pitch=(2.0, 8.0), max_rotation_deg=0.3, max_skew=0.004, line_scan=True,
        noise_levels=(1.0, 3.5), blur=(0.04, 0.2), instance_probs=(0.75, 0.25, 0.0, 0.0),
        min_component_area=6, linescan=LineScanRanges()),
    "linescan_tiny": Preset(
        name="linescan_tiny", image_size=64, classes=classes_lib.CLASSES, colour=False,
        split_sizes=(("train", 12), ("test", 6), ("source_good", 4), ("target_good", 4),
                     ("target_test", 6)),
        num_source_fabrics=3, num_target_fabrics=2, weaves=_SIMPLE_WEAVES, pitch=(2.0, 8.0),
        max_rotation_deg=0.3, max_skew=0.004, line_scan=True, noise_levels=(1.0, 3.5),
        blur=(0.04, 0.2), instance_probs=(0.75, 0.25, 0.0, 0.0), min_component_area=6,
        linescan=LineScanRanges(width=512, selvage_prob=0.5, selvage_width=(20.0, 60.0),
                                edge_gap=(0.0, 60.0))),
}


def get_preset(preset: "str | Preset") -> Preset:
  """A preset by name (or a Preset passed through), with an error listing the known names."""
  if isinstance(preset, Preset):
    return preset
  try:
    return _PRESETS[preset]
  except KeyError:
    raise ValueError(f"unknown FabricSim preset {preset!r}; known: {', '.join(PRESETS)}") from None
