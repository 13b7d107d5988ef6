"""The defect classes fabgen knows, and the paper's two class lists.

Class ids are indices into `CLASSES`; every FabricSim dataset uses these global ids. A reader of
real data that meets other defect names (AITEX's codes, MVTec's folders) appends them after the
six, in the dataset's own `class_names`, so ids below six always mean the same thing.
"""

CLASSES: tuple[str, ...] = (
    "color_spot",    # 色斑: yarns tinted over a blob
    "oil_stain",     # 油渍: darker, more saturated, diffuse edge
    "knot",          # 结头: a local lump of yarn
    "broken_end",    # 断端: a missing or broken warp thread
    "broken_yarn",   # 断纱: a broken weft pick or torn yarn
    "white_stripe",  # 白条: a long light band along warp or weft
)
NUM_CLASSES = len(CLASSES)
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}

# The paper's two data sets (TIP 2020): which classes each one has.
SIMPLE_CLASSES = ("color_spot", "oil_stain", "knot", "broken_end")
COMPLEX_CLASSES = ("color_spot", "broken_end", "broken_yarn", "white_stripe")


def class_id(name: str) -> int:
  """The global id of a defect class, with an error that lists the known names."""
  try:
    return CLASS_ID[name]
  except KeyError:
    raise ValueError(f"unknown defect class {name!r}; known: {', '.join(CLASSES)}") from None
