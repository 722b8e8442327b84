"""One image reader for both halves (superres_tf.images; stylegan_tl.dataset adds its crop on top): the
same file list for the same folder, the same pixels, and the same rules for hostile files: an
allow-list of formats, regular files only, a file-size cap and a pixel cap, each refused with one
line naming the file, quickly. Run in a child process: a reader that hangs cannot hang the suite."""

import os
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from stylegan_tl import dataset
from superres_tf import images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHILD = """
import sys
from stylegan_tl.dataset import load_image
from stylegan_tl.errors import StyleGANTLError
from superres_tf.errors import SuperResError
from superres_tf.images import read_image
for path in sys.argv[1:]:
    for name, read in (("stylegan", lambda: load_image(path, 16)), ("superres", lambda: read_image(path))):
        try:
            read()
            print(name, "read", path)
        except (StyleGANTLError, SuperResError) as e:
            print(name, "error:", e)
        except Exception as e:
            print(name, "UNEXPECTED", type(e).__name__, str(e).splitlines()[0][:200])
"""
POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(printed by Ghostscript) print flush\n{} loop\n"


def png_claiming(width, height):
    """A 65-byte PNG whose header claims ``width`` x ``height`` RGB pixels (and holds none)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def read_in_child(paths, timeout=60):
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths)], cwd=REPO, capture_output=True,
                              text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=REPO))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the readers did not finish in {timeout} s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def test_hostile_image_files_are_refused_by_both_readers(tmp_path):
    cases = {
        "photo.jpg": ("write", POSTSCRIPT, "not a readable image (not a JPEG, PNG, WEBP, BMP, TIFF or GIF file)"),
        "bomb.png": ("write", png_claiming(20000, 10000), "too many pixels"),
        "fifo.png": ("fifo", None, "not a regular file"),
        "zero.png": ("link", "/dev/zero", "not a regular file"),
        "huge.png": ("sparse", 600 << 20, "too large (629145600 bytes, at most 536870912)"),
    }
    paths = []
    for name, (kind, content, _) in cases.items():
        path = tmp_path / name
        if kind == "write":
            path.write_bytes(content)
        elif kind == "fifo":
            os.mkfifo(path)  # opening it for reading would wait for a writer forever
        elif kind == "link":
            os.symlink(content, path)  # reading /dev/zero never ends
        else:
            with open(path, "wb") as f:
                f.truncate(content)  # sparse: no disk space used
        paths.append(path)
    lines = read_in_child(paths)
    assert len(lines) == 2 * len(cases), lines
    for line, (reader, path) in zip(lines, [(r, p) for p in paths for r in ("stylegan", "superres")]):
        assert line == f"{reader} error: {path}: {cases[path.name][2]}" or (
            line.startswith(f"{reader} error: {path}: {cases[path.name][2]}")), line


@pytest.mark.parametrize("read", [lambda p: dataset.load_image(p, 16), images.read_image])
def test_allowed_formats_still_read(tmp_path, read):
    rgb = np.random.RandomState(0).randint(0, 255, (20, 24, 3)).astype(np.uint8)
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif"),
                     ("GIF", "gif")):
        path = tmp_path / f"a.{ext}"
        Image.fromarray(rgb).save(path, format=fmt)
        result = read(str(path))
        assert (result[0] if isinstance(result, tuple) else result).size > 0, fmt


def test_both_halves_list_the_same_files_of_a_folder(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    for name, fmt in (("b.jpg", "JPEG"), ("A.PNG", "PNG"), ("sky/c.tif", "TIFF"), ("sky/deep/d.bmp", "BMP"),
                      ("e.webp", "WEBP"), ("f.gif", "GIF")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(tmp_path / name, format=fmt)
    (tmp_path / "notes.txt").write_text("not an image")
    listed = images.list_images(str(tmp_path))
    assert dataset.list_image_files(str(tmp_path)) == listed
    assert [images.image_name(p, str(tmp_path)) for p in listed] == [
        "A.PNG", "b.jpg", "e.webp", os.path.join("sky", "c.tif"), os.path.join("sky", "deep", "d.bmp")]


def png16_turned(rgba, orientation):
    """A 16-bit RGBA PNG whose eXIf chunk (after IHDR) carries an EXIF orientation."""
    import tensorflow as tf
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = b"eXIf" + exif.tobytes()[len(b"Exif\x00\x00"):]
    png = tf.io.encode_png(rgba).numpy()
    ihdr_end = 8 + 25
    return png[:ihdr_end] + struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body)) + png[ihdr_end:]


def test_stylegan_pixels_are_the_readers_pixels_squared(tmp_path):
    # A 16-bit RGBA PNG turned by EXIF: both halves see it upright and at 16 bits (Pillow alone would
    # keep 8); StyleGAN rounds to 8 bits, composites the alpha on black and crops (nothing to crop here).
    rgba = np.random.RandomState(0).randint(0, 65536, (6, 6, 4)).astype(np.uint16)
    rgba[..., 3] = 65535
    path = tmp_path / "deep.png"
    path.write_bytes(png16_turned(rgba, 6))  # 6: turn 90 degrees clockwise to be upright
    pixels, _ = images.read_image(str(path))
    assert pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, np.rot90(rgba, -1))
    chw = dataset.load_image(str(path), 6)
    np.testing.assert_array_equal(chw.transpose(1, 2, 0), images.to_uint8(pixels)[..., :3])


def test_a_16_bit_photo_is_converted_in_float32(tmp_path):
    # 16-bit greyscale 1500x1500: the StyleGAN reader used float64 copies (24 bytes per pixel at the peak);
    # now the samples (2 bytes) and one float32 copy (4 bytes), converted in place.
    values = np.tile(np.linspace(0, 65535, 1500).astype(np.uint16), (1500, 1))  # a horizontal ramp
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    tracemalloc.start()
    try:
        out = dataset.load_image(str(path), 64, num_channels=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (1, 64, 64) and out.dtype == np.uint8 and out.max() > 240 and out.min() < 15
    assert peak < 8 * values.size, f"peak {peak / values.size:.1f} bytes per pixel"
