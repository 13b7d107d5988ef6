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
    naming the path and what is wrong;
  * only regular files are opened (a FIFO would block a reader forever, a device would stream
    garbage); empty files, images over PIL's decompression limit and files whose content is not
    the format their extension says are refused from the header alone, at indexing time;
  * label values far above any class or instance count are refused before anything is sized by
    them (a 32-bit TIFF holding 2**31 would otherwise allocate gigabytes for a lookup table).

Paths that come from a data set (COCO `file_name`, directory entries that may be symlinks) are
confined to the data set's folder by `confine` before anything opens them.
"""

from __future__ import annotations

import os
import stat

import numpy as np
from PIL import Image, ImageFile

# Truncated files must fail, not decode as grey (PIL's default, but be explicit about it).
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# PIL format name -> the extensions that announce it. A file whose content is another format
# (a JPEG saved as .png) is refused: lossy data where a lossless file is claimed is a data error.
_FORMAT_EXTENSIONS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "BMP": (".bmp",),
                      "TIFF": (".tif", ".tiff"), "MPO": (".jpg", ".jpeg")}
# Largest label value a mask may hold; instance ids and class indices are far below it.
MAX_LABEL_VALUE = 65535


class ReadError(ValueError):
  """A file that cannot be used; the message names the file and the problem."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = path, reason


def is_image_file(name: str) -> bool:
  """Whether a directory entry looks like an image we can decode (by extension, not hidden)."""
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def check_regular_file(path: str) -> os.stat_result:
  """Stat `path` (following symlinks); a missing, special or empty file is a `ReadError`."""
  try:
    st = os.stat(path)
  except FileNotFoundError:
    raise ReadError(path, "file does not exist") from None
  except OSError as e:
    raise ReadError(path, f"cannot be read ({e.strerror})") from e
  if not stat.S_ISREG(st.st_mode):
    kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode)
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket" if stat.S_ISSOCK(st.st_mode) else "special")
    raise ReadError(path, f"not a regular file ({kind}); refused without opening it")
  if st.st_size == 0:
    raise ReadError(path, "empty file (0 bytes)")
  return st


def confine(root: str, path: str) -> str:
  """`path` itself if it resolves (symlinks followed) inside `root`; else a `ReadError`."""
  real_root = os.path.realpath(root)
  real = os.path.realpath(path)
  if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
    raise ReadError(path, f"outside the data set folder {root} (resolves to {real}); not read")
  return path


def member_path(root: str, name, what: str) -> str:
  """The path of a data-set-supplied relative `name` (e.g. a COCO `file_name`) under `root`.

  `what` names the record and key for the message (e.g. "images[3] 'file_name'"). The name must
  be a non-empty relative string that stays under `root` once `..` and symlinks are resolved.
  """
  if not isinstance(name, str) or not name:
    raise ReadError(what, f"must be a non-empty relative path string, got {name!r}")
  if os.path.isabs(name) or (os.name == "nt" and os.path.splitdrive(name)[0]):
    raise ReadError(name, f"absolute path in {what}; data set paths are relative to {root}")
  return confine(root, os.path.join(root, name))


def _check_header(im: Image.Image, path: str) -> None:
  """Refuses images over the decompression limit and content that contradicts the extension."""
  limit = Image.MAX_IMAGE_PIXELS
  width, height = im.size
  if limit is not None and width * height > limit:
    raise ReadError(path, f"{width}x{height} pixels exceed the decompression limit of {limit} "
                          f"(PIL.Image.MAX_IMAGE_PIXELS); not decoded")
  ext = os.path.splitext(path)[1].lower()
  wanted = _FORMAT_EXTENSIONS.get(im.format or "")
  if wanted is not None and ext in IMAGE_EXTENSIONS and ext not in wanted:
    raise ReadError(path, f"{im.format} data in a {ext} file; rename it {wanted[0]} to use it")


def _open(path: str) -> Image.Image:
  check_regular_file(path)
  try:
    im = Image.open(path)
  except FileNotFoundError:
    raise ReadError(path, "file does not exist") from None
  except Image.DecompressionBombError as e:
    raise ReadError(path, f"exceeds the decompression limit ({e})") from e
  except Exception as e:  # PIL raises several unrelated types for bad headers
    raise ReadError(path, f"not a readable image ({type(e).__name__}: {e})") from e
  try:
    _check_header(im, path)
  except ReadError:
    im.close()
    raise
  return im


def image_size(path: str) -> tuple[int, int]:
  """(height, width) from the header only: cheap, used to pair masks with images at open time.

  The header checks (regular file, decompression limit, format vs extension) happen here, so a
  file that fails them is skipped at indexing time rather than failing at its first read.
  """
  with _open(path) as im:
    width, height = im.size
  return int(height), int(width)


def _decode(path: str) -> Image.Image:
  """Opens and fully decodes (so that truncation is found now, not in a worker later).

  The decompression limit is checked on the header by `_open`, so no process-wide warning
  filter is toggled here (that is not thread-safe under grain's reader threads).
  """
  im = _open(path)
  try:
    im.load()
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
  """bool [H, W]: pixels above half range (127 for 8-bit) are defect; anti-aliasing is cut.

  A mask holding only the values 0 and 1 (a common export) is read as 0/1, not as empty.
  """
  array = _mask_array(path)
  _check_size(array, path, expected_hw)
  if array.dtype == bool:
    return array
  if array.max(initial=0) == 1:
    return array == 1
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
  top = int(array.max(initial=0))
  if top > MAX_LABEL_VALUE:
    raise ReadError(path, f"label value {top} is far above any class or instance count (at most "
                          f"{MAX_LABEL_VALUE}); is this a label mask?")
  return array.astype(np.int32)


def list_images(folder: str) -> list[str]:
  """Sorted image file names in `folder` (not recursive); [] if it does not exist.

  Every entry with an image extension that is not a directory is listed, special files and
  symlinks included, so that the reader's header check reports them instead of a silent drop.
  """
  if not os.path.isdir(folder):
    return []
  return sorted(n for n in os.listdir(folder) if is_image_file(n)
                and not os.path.isdir(os.path.join(folder, n)))
