"""Synthesized pixels stay in the colour space of the camera that took the background.

Most inspection cameras (line-scan ones above all) are monochrome: every image they deliver has
R = G = B. A generator knows nothing of that, and a briefly trained one paints colour casts (the
stage-1 patches on the grey `simple_far` target fabrics of the medium aggregate were bluish white)
that no image of that camera can show; a detector fine-tuned on them learns the cast as the
defect. So where a background is monochrome, the synthesized image is projected onto grey (the
channel mean, rounded) before it is labelled: the label is what changed on the camera's terms.
Colour backgrounds are left as they are.
"""

from __future__ import annotations

import numpy as np

from fabgen.synthesis.base import SynthesisError

MODES = ("auto", "keep")


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise SynthesisError(f"synthesis colour={mode!r}; use 'auto' (grey where the background is "
                     f"monochrome) or 'keep' (the generator's colours as they are)")
  return mode


def is_monochrome(image: np.ndarray) -> bool:
  """True when every pixel of a uint8 [H, W, 3] image has equal channels."""
  return bool(image.ndim == 3 and image.shape[-1] == 3
              and np.array_equal(image[..., 0], image[..., 1])
              and np.array_equal(image[..., 0], image[..., 2]))


def to_grey(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] -> the same with every channel set to the rounded channel mean (exact on
  images that are already grey: the mean of three equal integers is that integer)."""
  grey = np.rint(image.astype(np.float32).mean(-1)).astype(np.uint8)
  return np.repeat(grey[..., None], 3, axis=-1)


def match_background(image: np.ndarray, background: np.ndarray, mode: str = "auto") -> np.ndarray:
  """`image` in `background`'s colour space (`mode` "auto"), or unchanged ("keep")."""
  if mode == "auto" and is_monochrome(background):
    return to_grey(image)
  return image
