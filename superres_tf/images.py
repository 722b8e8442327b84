"""Image file I/O for the super-resolution side.

Every image enters and leaves the package here. Pixels are handled as numpy arrays in HWC layout:
``read_image`` returns the stored integers (uint8 or uint16, 1-4 channels) after EXIF orientation;
``to_unit_float`` / ``from_unit_float`` are the one conversion each way between those integers and
the float32 [0, 1] values the networks see. Files are opened through :func:`open_image` (regular
files of at most ``MAX_FILE_BYTES``, formats in ``ALLOWED_FORMATS`` only, at most ``MAX_PIXELS``)
and written atomically (:func:`atomic_write_bytes`: hidden temp name, fsync, rename).
"""

import io
import os
import stat
import tempfile
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from superres_tf.errors import ImageReadError, SuperResError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PIL modes and what they become: channel count of the decoded array.
_MODE_CONVERSIONS = {"1": "L", "P": None, "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
                     "RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "PA": "RGBA"}


def list_images(folder):
    """Sorted paths of the image files (by suffix) directly inside `folder`."""
    if not os.path.isdir(folder):
        raise ImageReadError(f"{folder}: not a directory")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    return [os.path.join(folder, n) for n in names]


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


# The rules of stylegan_tl.dataset.open_image, kept identical (the two readers are to be merged).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
MAX_FILE_BYTES = 512 << 20
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (about 9459 x 9459 pixels)


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


def _png_bit_depth(data):
    """Bit depth stored in a PNG's IHDR chunk, or None if `data` is not a PNG."""
    if len(data) >= 25 and data[:8] == _PNG_SIGNATURE:
        return data[24]
    return None


def _decode_png16(data, path):
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA) -> uint16 HWC; PIL keeps only 8 bits of RGB."""
    import tensorflow as tf  # imported here: reading 8-bit images needs no TensorFlow
    try:
        return tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except tf.errors.OpError as error:
        raise ImageReadError(f"{path}: broken 16-bit PNG ({error.message.splitlines()[0]})") from None


_MODE_CHANNELS = {"1": 1, "L": 1, "I;16": 1, "I;16B": 1, "I;16L": 1, "LA": 2, "La": 2, "RGBA": 4, "RGBa": 4,
                  "PA": 4}  # every other mode read_image accepts gives 3 channels
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # IHDR colour type -> channels (16-bit PNGs)


def probe_image(path):
    """``(channels, is 16-bit)`` of the array :func:`read_image` would return, from the header only."""
    image, data = open_image(path)
    if _png_bit_depth(data) == 16:
        return _PNG_CHANNELS.get(data[25], 3), True
    if image.mode == "P":
        return (4 if "transparency" in image.info else 3), False
    return _MODE_CHANNELS.get(image.mode, 3), image.mode.startswith("I;16")


def pil_to_array(image, path):
    """PIL image (any usual mode) -> uint8/uint16 HWC array with 1-4 channels."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image, dtype=np.uint16)[..., None]
    elif mode in _MODE_CONVERSIONS:
        image = image.convert(_MODE_CONVERSIONS[mode])
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageReadError(f"{path}: unsupported image mode {mode!r} "
                             "(expected grey, RGB, RGBA, palette or 16-bit PNG)")
    array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def read_image(path, min_side=1):
    """Read an image file -> (uint8 or uint16 HWC array with C in 1..4, EXIF bytes or None).

    EXIF orientation is applied (the array is upright). Palette images become RGB/RGBA, 16-bit PNGs
    stay 16-bit. Raises ImageReadError naming `path` for a missing, empty, broken, refused (see
    :func:`open_image`) or too-small file.
    """
    image, data = open_image(path)
    try:
        image.load()
        exif = image.info.get("exif")
        if _png_bit_depth(data) == 16:
            array = _decode_png16(data, path)
        else:
            array = pil_to_array(ImageOps.exif_transpose(image), path)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from None
    height, width = array.shape[:2]
    if min(height, width) < min_side:
        raise ImageReadError(f"{path}: too small ({width}x{height} pixels, need at least "
                             f"{min_side} on each side)")
    return array, exif


def _umask():
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data):
    """Write `data` to a hidden temp file beside `path` (``.<name>.<random>.tmp``, which no reader's
    suffix matches), fsync it, then rename it over `path`; on any failure the temp file is removed.

    The file gets the usual permissions (0o666 minus the umask), not mkstemp's private 0o600.
    A folder that cannot be created or written (or a full disk) raises SuperResError naming `path`.
    """
    folder, name = os.path.split(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{name[:80]}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise SuperResError(f"{path}: cannot write ({error.strerror}: {error.filename})") from None
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), 0o666 & ~_umask())
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as error:
        os.remove(tmp)
        raise SuperResError(f"{path}: cannot write ({error.strerror})") from None
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def encode_image(array, path, quality=95, exif=None):
    """uint8/uint16 HWC array (C in 1..4) -> file bytes in the format named by `path`'s suffix.

    16-bit arrays are written as 16-bit PNG (other formats raise). JPEG drops alpha only if asked
    by the caller: an RGBA or grey+alpha array given for a .jpg path raises SuperResError.
    """
    suffix = os.path.splitext(path)[1].lower()
    channels = array.shape[-1]
    if array.dtype == np.uint16:
        if suffix != ".png":
            raise SuperResError(f"{path}: 16-bit images can only be written as .png")
        import tensorflow as tf
        return tf.io.encode_png(array).numpy()
    if suffix in (".jpg", ".jpeg") and channels in (2, 4):
        raise SuperResError(f"{path}: JPEG cannot store an alpha channel, use .png")
    image = Image.fromarray(array[..., 0] if channels == 1 else array)
    buffer = io.BytesIO()
    options = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
    if exif and suffix in (".jpg", ".jpeg", ".png", ".webp"):
        options["exif"] = _upright_exif(exif)
    try:
        image.save(buffer, format=Image.registered_extensions().get(suffix, "PNG"), **options)
    except (OSError, ValueError, KeyError) as error:
        raise SuperResError(f"{path}: cannot encode image ({error})") from None
    return buffer.getvalue()


def _upright_exif(exif_bytes):
    """EXIF bytes with the orientation tag reset to 1 (pixels were already turned upright)."""
    exif = Image.Exif()
    exif.load(exif_bytes)
    exif[0x0112] = 1
    return exif.tobytes()


def write_image(path, array, quality=95, exif=None):
    """Atomically write a uint8/uint16 HWC array to `path` (format from the suffix)."""
    atomic_write_bytes(path, encode_image(array, path, quality=quality, exif=exif))
