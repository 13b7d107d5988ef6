"""Robust decoding of images and masks from disk, with errors that name the file.

Real data sets arrive in every PNG/JPEG/TIFF flavour: 8-bit greyscale line-scan strips, RGB,
RGBA with an alpha channel, 16-bit greyscale, palette images, truncated downloads. Every reader
goes through these functions so that each flavour is handled once, the same way:

  * images become uint8 [H, W, 3]: greyscale is replicated, alpha is dropped (inspection images
    are opaque; alpha is an export artefact), palettes are expanded, 16-bit and 32-bit integer
    images are rescaled from their full range to 8 bits;
  * binary masks (MVTec, AITEX) are thresholded *above 127*, so anti-aliased edges of exported
    masks do not become defect pixels at low opacity;
  * label masks (instance or class-index PNGs) keep their integer values (palette indices for
    palette PNGs, not the palette colours);
  * a corrupt or truncated file, or a mask whose size differs from its image, raises `ReadError`
    naming the path and what is wrong.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageFile

# Truncated files must fail, not decode as grey (PIL's default, but be explicit about it).
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ReadError(ValueError):
  """A file that cannot be used; the message names the file and the problem."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = path, reason


def is_image_file(name: str) -> bool:
  """Whether a directory entry looks like an image we can decode (by extension, not hidden)."""
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def image_size(path: str) -> tuple[int, int]:
  """(height, width) from the header only: cheap, used to pair masks with images at open time."""
  try:
    with Image.open(path) as im:
      width, height = im.size
  except FileNotFoundError:
    raise ReadError(path, "file does not exist") from None
  except Exception as e:  # PIL raises several unrelated types for bad headers
    raise ReadError(path, f"not a readable image ({type(e).__name__}: {e})") from e
  return int(height), int(width)


def _decode(path: str) -> Image.Image:
  """Opens and fully decodes (so that truncation is found now, not in a worker later)."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      im = Image.open(path)
      im.load()
  except FileNotFoundError:
    raise ReadError(path, "file does not exist") from None
  except OSError as e:
    reason = "truncated or corrupt image" if "truncat" in str(e).lower() else "corrupt image"
    raise ReadError(path, f"{reason} ({e})") from e
  except Exception as e:
    raise ReadError(path, f"cannot decode ({type(e).__name__}: {e})") from e
  return im


def _to_uint8(array: np.ndarray, path: str) -> np.ndarray:
  """Rescales a wide integer or float array to uint8 from its dtype's range."""
  if array.dtype == np.uint8:
    return array
  if array.dtype == bool:
    return array.astype(np.uint8) * 255
  if np.issubdtype(array.dtype, np.integer):
    # PIL hands 16-bit PNGs over as int32 ('I') or uint16 ('I;16'); both are 0..65535 data.
    top = 65535 if array.max(initial=0) > 255 or array.dtype in (np.uint16, np.int16) else 255
    return np.clip(np.round(array.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
  if np.issubdtype(array.dtype, np.floating):
    top = 1.0 if array.max(initial=0) <= 1.0 else 255.0
    return np.clip(np.round(array * (255.0 / top)), 0, 255).astype(np.uint8)
  raise ReadError(path, f"unsupported pixel type {array.dtype}")


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] from any supported file (see the module docstring for the conversions)."""
  im = _decode(path)
  mode = im.mode
  if mode in ("P", "PA"):
    im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
    mode = im.mode
  if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
    array = np.asarray(im.convert("RGB"))
  elif mode in ("L", "LA", "1"):
    array = np.asarray(im.convert("L"))
  elif mode.startswith("I") or mode == "F":
    array = _to_uint8(np.asarray(im), path)
  else:
    raise ReadError(path, f"unsupported image mode {mode!r}")
  if array.ndim == 2:
    array = np.repeat(array[..., None], 3, axis=-1)
  if array.ndim != 3 or array.shape[-1] != 3 or 0 in array.shape:
    raise ReadError(path, f"decoded to an unusable shape {list(array.shape)}")
  return np.ascontiguousarray(array)


def _mask_array(path: str) -> np.ndarray:
  """The raw 2-D value array of a mask file (palette indices for palette PNGs)."""
  im = _decode(path)
  if im.mode in ("P", "L", "1") or im.mode.startswith("I"):
    array = np.asarray(im)
  elif im.mode in ("LA", "PA"):
    array = np.asarray(im)[..., 0]
  elif im.mode in ("RGB", "RGBA"):
    array = np.asarray(im)[..., :3]
    # A greyscale mask saved as RGB: all channels equal. Otherwise the brightest channel.
    array = array[..., 0] if (array == array[..., :1]).all() else array.max(axis=-1)
  else:
    raise ReadError(path, f"unsupported mask mode {im.mode!r}")
  return np.asarray(array)


def _check_size(array: np.ndarray, path: str, expected_hw: tuple[int, int] | None) -> None:
  if expected_hw is not None and tuple(array.shape[:2]) != tuple(expected_hw):
    raise ReadError(path, f"wrong-size mask: {array.shape[0]}x{array.shape[1]} (HxW), its image is "
                          f"{expected_hw[0]}x{expected_hw[1]}")


def read_binary_mask(path: str, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
  """bool [H, W]: pixels above half range (127 for 8-bit) are defect; anti-aliasing is cut."""
  array = _mask_array(path)
  _check_size(array, path, expected_hw)
  if array.dtype == bool:
    return array
  if array.dtype != np.uint8:
    # 16-bit masks: the same threshold at half range.
    return array > (32767 if array.max(initial=0) > 255 else 127)
  return array > 127


def read_label_mask(path: str, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
  """int32 [H, W] of integer labels (instance ids or class indices), 0 = background."""
  array = _mask_array(path)
  _check_size(array, path, expected_hw)
  if array.dtype == bool:
    array = array.astype(np.int32)
  if np.issubdtype(array.dtype, np.floating):
    raise ReadError(path, "label mask has floating-point values; expected integer labels")
  if array.min(initial=0) < 0:
    raise ReadError(path, f"label mask has negative value {int(array.min())}")
  return array.astype(np.int32)


def list_images(folder: str) -> list[str]:
  """Sorted image file names in `folder` (not recursive); [] if it does not exist."""
  if not os.path.isdir(folder):
    return []
  return sorted(n for n in os.listdir(folder) if is_image_file(n)
                and os.path.isfile(os.path.join(folder, n)))
