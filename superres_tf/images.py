"""Image files in and out, for both halves of the project (the one image reader).

Every photo and image enters the project here: ``superres_tf`` uses the arrays as they are,
``stylegan_tl.dataset`` adds its square crop and NCHW layout on top. One set of rules:

* :func:`list_images`: the image files of a folder and its sub-folders (suffixes
  ``IMAGE_SUFFIXES``, any case), sorted by their path relative to the folder.
* :func:`open_image`: regular files of at most ``MAX_FILE_BYTES``, formats in ``ALLOWED_FORMATS``
  only, at most ``MAX_PIXELS``; anything else is an ImageReadError naming the file.
* :func:`read_image`: the stored integers as a numpy HWC array - uint8, or uint16 for 16-bit files
  (decoded at 16 bits, also for colour PNGs), 1 to 4 channels (grey, grey+alpha, RGB, RGBA;
  palette and other modes converted) - turned upright by the EXIF orientation.
* :func:`to_uint8`, :func:`to_unit_float` / :func:`from_unit_float`: the one conversion each way
  between those integers and 8 bits or the float32 [0, 1] values the networks see.

Images are written atomically by :func:`write_image` (through :mod:`superres_tf.files`), the one image
writer of the project, raising the caller's exception class like the writers of ``files``. No TensorFlow
at import: it is imported only for 16-bit colour PNGs, which Pillow reduces to 8 bits.
"""

import io
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from superres_tf import files
from superres_tf.errors import ImageReadError, SuperResError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
MAX_FILE_BYTES = 512 << 20
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (about 9459 x 9459 pixels)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PIL modes and what they become: channel count of the decoded array.
_MODE_CONVERSIONS = {"1": "L", "P": None, "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
                     "RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "PA": "RGBA"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the numpy transform that makes the image upright (Pillow's exif_transpose).
_UPRIGHT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
            5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
            7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}


def list_images(folder):
    """Paths of the image files (by suffix) in `folder` and its sub-folders, sorted by their path
    relative to `folder` (:func:`image_name`). ImageReadError if `folder` is not a directory."""
    if not os.path.isdir(folder):
        raise ImageReadError(f"{folder}: not a directory")
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found, key=lambda path: image_name(path, folder))


def image_name(path, folder):
    """The name of an image of a folder: its path relative to the folder ('a.jpg', 'sky/b.png')."""
    return os.path.relpath(path, folder)


def to_unit_float(pixels):
    """uint8/uint16 HWC (or HW) integers -> float32 in [0, 1]; float input is clipped to [0, 1]."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    if np.issubdtype(pixels.dtype, np.floating):
        return np.clip(pixels, 0.0, 1.0).astype(np.float32)
    raise SuperResError(f"pixels of dtype {pixels.dtype}: expected uint8, uint16 or float")


def from_unit_float(values, dtype=np.uint8):
    """float [0, 1] HWC (or HW) -> rounded uint8 or uint16 (values outside [0, 1] are clipped)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise SuperResError(f"output dtype {dtype}: expected uint8 or uint16")
    peak = 255.0 if dtype == np.uint8 else 65535.0
    return np.round(np.clip(values, 0.0, 1.0) * peak).astype(dtype)


def open_image(path):
    """``(PIL image, file bytes)`` of an image file; the pixels are decoded lazily (``load()``).

    Refused, with an ImageReadError naming the file: what is not a regular file (a FIFO, a device),
    an empty file, more than MAX_FILE_BYTES, a format outside ALLOWED_FORMATS (Pillow otherwise
    picks the decoder from the content, e.g. Ghostscript for PostScript), more than MAX_PIXELS.
    """
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageReadError(f"{path}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise ImageReadError(f"{path}: too large ({info.st_size} bytes, at most {MAX_FILE_BYTES})")
            data = handle.read(info.st_size)
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from None
    if not data:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{path}: too many pixels (more than {MAX_PIXELS})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image (not a {', '.join(ALLOWED_FORMATS[:-1])} or "
                             f"{ALLOWED_FORMATS[-1]} file)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from None
    if image.width * image.height > MAX_PIXELS:
        raise ImageReadError(f"{path}: too many pixels ({image.width}x{image.height}, at most {MAX_PIXELS})")
    return image, data


def _png_colour_16(data):
    """The IHDR colour type of a 16-bit colour PNG (RGB, grey+alpha, RGBA), else None (Pillow
    decodes 16-bit grey exactly but keeps only 8 bits of colour)."""
    if len(data) >= 26 and data[:8] == _PNG_SIGNATURE and data[24] == 16 and data[25] in (2, 4, 6):
        return data[25]
    return None


def _decode_png16(data, path):
    """A 16-bit colour PNG -> uint16 HWC (2, 3 or 4 channels)."""
    import tensorflow as tf  # imported here: every other image needs no TensorFlow
    try:
        return tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except tf.errors.OpError as error:
        raise ImageReadError(f"{path}: broken 16-bit PNG ({error.message.splitlines()[0]})") from None


_MODE_CHANNELS = {"1": 1, "L": 1, "LA": 2, "La": 2, "RGBA": 4, "RGBa": 4, "PA": 4,
                  **{mode: 1 for mode in _SIXTEEN_BIT_MODES}}  # every other mode read_image accepts gives 3
_PNG_CHANNELS = {2: 3, 4: 2, 6: 4}  # IHDR colour type -> channels (16-bit colour PNGs)


def probe_image(path):
    """``(channels, is 16-bit)`` of the array :func:`read_image` would return, from the header only."""
    image, data = open_image(path)
    colour = _png_colour_16(data)
    if colour is not None:
        return _PNG_CHANNELS[colour], True
    if image.mode == "P":
        return (4 if "transparency" in image.info else 3), False
    return _MODE_CHANNELS.get(image.mode, 3), image.mode in _SIXTEEN_BIT_MODES


def pil_to_array(image, path):
    """PIL image (any usual mode) -> uint8/uint16 HWC array with 1-4 channels."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in _SIXTEEN_BIT_MODES:  # 16-bit grey ('I': 32-bit integers, clipped to 16 bits)
        values = np.asarray(image)
        values = np.clip(values, 0, 65535) if mode == "I" else values
        return values.astype(np.uint16, copy=False)[..., None]
    elif mode in _MODE_CONVERSIONS:
        image = image.convert(_MODE_CONVERSIONS[mode])
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageReadError(f"{path}: unsupported image mode {mode!r} "
                             "(expected grey, RGB, RGBA, palette or 16-bit)")
    array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def read_image(path, min_side=1):
    """Read an image file -> (uint8 or uint16 HWC array with C in 1..4, EXIF bytes or None).

    EXIF orientation is applied (the array is upright). Palette images become RGB/RGBA, 16-bit
    files stay 16-bit. Raises ImageReadError naming `path` for a missing, empty, broken, refused
    (see :func:`open_image`) or too-small file.
    """
    image, data = open_image(path)
    try:
        image.load()
        exif = image.info.get("exif")
        if _png_colour_16(data) is not None:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            array = _UPRIGHT.get(orientation, lambda a: a)(_decode_png16(data, path))
        else:
            array = pil_to_array(ImageOps.exif_transpose(image), path)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from None
    height, width = array.shape[:2]
    if min(height, width) < min_side:
        raise ImageReadError(f"{path}: too small ({width}x{height} pixels, need at least "
                             f"{min_side} on each side)")
    return np.ascontiguousarray(array), exif


def upright_size(path):
    """``(width, height)`` of an image file after its EXIF orientation, from the header only."""
    image, _ = open_image(path)
    width, height = image.size
    return (height, width) if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (width, height)


def to_uint8(pixels):
    """uint8/uint16 HWC integers -> uint8 (16-bit rounded to 8: x * 255/65535, in float32 in place,
    so a large 16-bit photo costs its samples plus one float32 copy at most)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype != np.uint16:
        raise SuperResError(f"pixels of dtype {pixels.dtype}: expected uint8 or uint16")
    values = pixels.astype(np.float32)
    del pixels
    values *= np.float32(255.0 / 65535.0)
    return np.rint(values, out=values).astype(np.uint8)


def encode_image(array, path, quality=95, exif=None, error=SuperResError):
    """uint8/uint16 HWC array (C in 1..4) -> file bytes in the format named by `path`'s suffix
    (PNG for an unknown suffix).

    16-bit arrays are written as 16-bit PNG (other formats raise). JPEG drops alpha only if asked
    by the caller: an RGBA or grey+alpha array given for a .jpg path raises. What cannot be
    encoded raises ``error`` (the caller's project exception class) naming `path`.
    """
    suffix = os.path.splitext(path)[1].lower()
    channels = array.shape[-1]
    if array.dtype == np.uint16:
        if suffix != ".png":
            raise error(f"{path}: 16-bit images can only be written as .png")
        import tensorflow as tf
        return tf.io.encode_png(array).numpy()
    if suffix in (".jpg", ".jpeg") and channels in (2, 4):
        raise error(f"{path}: JPEG cannot store an alpha channel, use .png")
    image = Image.fromarray(array[..., 0] if channels == 1 else array)
    buffer = io.BytesIO()
    options = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
    if exif and suffix in (".jpg", ".jpeg", ".png", ".webp"):
        options["exif"] = _upright_exif(exif)
    try:
        image.save(buffer, format=Image.registered_extensions().get(suffix, "PNG"), **options)
    except (OSError, ValueError, KeyError) as e:
        raise error(f"{path}: cannot encode image ({e})") from None
    return buffer.getvalue()


def image_grid(images, cols=None):
    """Tile uint8 NHWC images into one [rows*H, cols*W, C] image, row by row (blank cells are
    black); ``cols`` defaults to the smallest square grid."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    grid = np.zeros([rows * h, cols * w, c], dtype=np.uint8)
    for i, image in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = image
    return grid


def _upright_exif(exif_bytes):
    """EXIF bytes with the orientation tag reset to 1 (pixels were already turned upright)."""
    exif = Image.Exif()
    exif.load(exif_bytes)
    exif[_EXIF_ORIENTATION] = 1
    return exif.tobytes()


def write_image(path, array, quality=95, exif=None, error=SuperResError):
    """Atomically write a uint8/uint16 HWC array (C in 1..4) to `path`, format from the suffix,
    creating its folder (:func:`superres_tf.files.write_bytes`): the project's one image writer
    (PNGs of ``stylegan_tl`` included). A file that cannot be encoded or written raises ``error``,
    the caller's project exception class, with one line naming `path`; nothing is left behind."""
    return files.write_bytes(path, encode_image(array, path, quality=quality, exif=exif, error=error), error)
