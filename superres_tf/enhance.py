"""Enhance (enlarge) images of any size with a super-resolution model, tile by tile, without seams.

The image is cut into tiles of `tile` x `tile` low-resolution pixels that overlap by at least
`overlap` pixels; tiles start at multiples of the model's pooling factor so every tile sees the same
pixel grid as the whole image would. Each tile's output is weighted by a separable window that is 0
in the outer quarter of the overlap at an inner tile edge (where the tile lacks context), rises as
a raised cosine across the middle half and is 1 elsewhere; outputs are accumulated and divided by
the summed weights. Tiles are run `batch_size` at a time, one strip of tiles at a time, and each
finished strip is written straight into the output array: memory is the output plus one strip,
never a whole-image activation (a 3840x2160 input at x4 fits in a few GB).

Colour is RGB through the network; alpha is upscaled separately (bicubic); grey images are run as
RGB and turned back to grey; uint8 -> uint8, uint16 (16-bit PNG) -> uint16, float [0, 1] -> float32.

CLI (Real-ESRGAN's habits):
  python -m superres_tf.enhance -i IN -o OUT [--model=M.keras] [-s 4] [--tile=256] [--overlap=32]
IN is a file or a folder; results go to OUT/<name>_<suffix>.<ext>.
"""

import os

import keras
import numpy as np
from absl import flags
from PIL import Image

from superres_tf import images
from superres_tf.conventions import StatusLine
from superres_tf.errors import ConfigError, ImageReadError, SuperResError
from superres_tf.unet import load_model, model_multiple

DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "sr_x4.keras")
MIN_SIDE = 4


def model_scale(model):
    """Upscaling factor of an NHWC image-to-image model (output side / input side)."""
    probe = 64
    return model.compute_output_shape((1, probe, probe, 3))[1] // probe


def tile_starts(length, tile, overlap, multiple):
    """Start offsets (multiples of `multiple`) of tiles of ~`tile` px covering `length` px with
    at least `overlap` px shared between neighbours. The last tile runs to the end."""
    if length <= tile:
        return [0]
    step = max(multiple, (tile - overlap) // multiple * multiple)
    last = (length - tile) // multiple * multiple
    starts = list(range(0, last, step)) + [last]
    return sorted(set(starts))


def _spans(starts, tile, length):
    """(start, end) of each tile; the last one runs to `length`."""
    return [(s, length if i == len(starts) - 1 else min(s + tile, length)) for i, s in enumerate(starts)]


def ramp(length, left, right, width):
    """1-D blending weights of a tile's output: ramps of `width` px at the flagged ends.

    Within a ramp: 0 for the outer quarter, raised cosine over the middle half, 1 after, so that
    two ramps facing each other across the same `width` px sum to exactly 1.
    """
    weights = np.ones(length, np.float32)
    if width <= 0:
        return weights
    margin = width // 4
    distance = np.arange(length, dtype=np.float32)
    rise = np.clip((distance - margin + 0.5) / max(1, width - 2 * margin), 0.0, 1.0)
    rise[distance < margin] = 0.0
    window = (0.5 - 0.5 * np.cos(np.pi * rise)).astype(np.float32)
    if left:
        weights *= window
    if right:
        weights *= window[::-1]
    return weights


def _run_tiles(model, tiles, batch_size, multiple):
    """Run a list of HWC float tiles (same shape) through the model in batches; yields each output.

    Tiles are padded at the bottom/right (symmetric) to multiples of `multiple`; outputs are cropped
    back to scale * tile size.
    """
    height, width = tiles[0].shape[:2]
    pad_h, pad_w = -height % multiple, -width % multiple
    for first in range(0, len(tiles), batch_size):
        batch = np.stack(tiles[first:first + batch_size])
        if pad_h or pad_w:
            batch = np.pad(batch, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
        result = keras.ops.convert_to_numpy(model(batch, training=False)).astype(np.float32)
        scale = result.shape[1] // batch.shape[1]
        yield from result[:, :height * scale, :width * scale]


def enhance_rgb(model, rgb, finish, out, tile=256, overlap=32, batch_size=1, progress=False):
    """Tiled, blended inference on an HWC float32 RGB [0, 1] image, written into `out`.

    Args:
      model: NHWC image model (upscaling by an integer factor s).
      rgb: float32 [H, W, 3] in [0, 1].
      finish: f(float32 rows [h, W*s, 3]) -> rows of `out`'s dtype/channels.
      out: preallocated [H*s, W*s, C] array the finished rows are written into.
      tile, overlap: tile size and minimum overlap in input pixels.
      batch_size: tiles per network call.
      progress: show the strips of tiles done on a progress line (stderr).
    """
    if tile < 8 or not 0 <= overlap < tile:
        raise ConfigError(f"tile={tile}, overlap={overlap}: expected tile >= 8 and 0 <= overlap < tile")
    height, width = rgb.shape[:2]
    scale, multiple = model_scale(model), model_multiple(model)
    tile = max(multiple, tile // multiple * multiple)
    ys, xs = tile_starts(height, tile, overlap, multiple), tile_starts(width, tile, overlap, multiple)
    rows, cols = _spans(ys, tile, height), _spans(xs, tile, width)
    line = StatusLine() if progress else None
    ramp_width = overlap * scale
    acc_top, acc, weight = 0, np.zeros((0, width * scale, 3), np.float32), np.zeros((0, width * scale, 1), np.float32)
    for index, (y0, y1) in enumerate(rows):
        bottom = y1 * scale
        grow = bottom - acc_top - acc.shape[0]
        if grow > 0:
            acc = np.concatenate([acc, np.zeros((grow,) + acc.shape[1:], np.float32)])
            weight = np.concatenate([weight, np.zeros((grow,) + weight.shape[1:], np.float32)])
        wy = ramp((y1 - y0) * scale, y0 > 0, y1 < height, ramp_width)
        by_shape = {}
        for x0, x1 in cols:
            by_shape.setdefault(x1 - x0, []).append((x0, x1))
        for group in by_shape.values():
            outputs = _run_tiles(model, [rgb[y0:y1, x0:x1] for x0, x1 in group], batch_size, multiple)
            for (x0, x1), result in zip(group, outputs):
                wx = ramp((x1 - x0) * scale, x0 > 0, x1 < width, ramp_width)
                w2 = (wy[:, None] * wx[None, :])[..., None]
                top = y0 * scale - acc_top
                acc[top:top + result.shape[0], x0 * scale:x1 * scale] += result * w2
                weight[top:top + result.shape[0], x0 * scale:x1 * scale] += w2
        done = (rows[index + 1][0] if index + 1 < len(rows) else height) * scale - acc_top
        out[acc_top:acc_top + done] = finish(acc[:done] / np.maximum(weight[:done], 1e-12))
        acc, weight, acc_top = acc[done:], weight[done:], acc_top + done
        if line is not None:
            line.count(index + 1, len(rows), "strips")
    return out


def _resize_channel(channel, size):
    """Bicubic resize of an HW float32 [0, 1] plane to `size` (W, H), clipped to [0, 1]."""
    return np.clip(np.asarray(Image.fromarray(channel, mode="F").resize(size, Image.BICUBIC)), 0.0, 1.0)


def enhance_image(model, image, tile=256, overlap=32, batch_size=1, progress=False):
    """Enlarge one image with `model`, seamlessly, in bounded memory.

    Args:
      model: keras.Model, NHWC float32 RGB [0, 1] -> s times larger (e.g. from build_unet).
      image: PIL image, or an HWC/HW numpy array (uint8, uint16 or float in [0, 1]) with 1 (grey),
        2 (grey + alpha), 3 (RGB) or 4 (RGBA) channels.
      tile: tile side in input pixels (smaller = less memory).
      overlap: minimum overlap of neighbouring tiles in input pixels; results equal untiled
        inference when it is at least 4x the model's receptive-field radius.
      batch_size: tiles per network call (activation memory grows with it: about 0.75 GB per
        256 px tile for the embedded x4 model).
      progress: show the tile strips done on a progress line (stderr).

    Returns:
      The enlarged image of the same kind: PIL -> PIL (same mode), array -> array of the same
      dtype and channel count (float input -> float32 in [0, 1]).
    """
    pil_mode = image.mode if isinstance(image, Image.Image) else None
    array = images.pil_to_array(image, "<image>") if pil_mode else np.asarray(image)
    squeeze = array.ndim == 2
    array = array[..., None] if squeeze else array
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(f"image of shape {array.shape}: expected HW or HWC with 1-4 channels")
    height, width, channels = array.shape
    if min(height, width) < MIN_SIDE:
        raise ImageReadError(f"image too small ({width}x{height}): need at least {MIN_SIDE}x{MIN_SIDE} pixels")
    pixels = images.to_unit_float(array)
    colour = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=-1)
    is_float = np.issubdtype(array.dtype, np.floating)
    dtype = np.float32 if is_float else array.dtype
    grey = channels <= 2

    def finish(rows):
        rows = rows.mean(axis=-1, keepdims=True) if grey else rows
        return np.clip(rows, 0.0, 1.0) if is_float else images.from_unit_float(rows, dtype)

    scale = model_scale(model)
    out = np.zeros((height * scale, width * scale, channels), dtype)
    colour_channels = 1 if grey else 3
    enhance_rgb(model, np.ascontiguousarray(colour), finish, out[..., :colour_channels], tile=tile,
                overlap=overlap, batch_size=batch_size, progress=progress)
    if channels in (2, 4):
        alpha = _resize_channel(pixels[..., -1], (width * scale, height * scale))
        out[..., -1] = alpha if is_float else images.from_unit_float(alpha, dtype)
    if pil_mode:
        result = out[..., 0] if channels == 1 else out
        return Image.fromarray(result)
    return out[..., 0] if squeeze else out


def _outscale(array, outscale, scale):
    """Resize an enhanced HWC array by outscale/scale with Lanczos (Real-ESRGAN's -s habit)."""
    if outscale == scale:
        return array
    size = (round(array.shape[1] * outscale / scale), round(array.shape[0] * outscale / scale))
    planes = [np.clip(np.asarray(Image.fromarray(images.to_unit_float(array[..., c]), mode="F")
                                 .resize(size, Image.LANCZOS)), 0, 1) for c in range(array.shape[-1])]
    return images.from_unit_float(np.stack(planes, axis=-1), array.dtype)


def output_path(in_path, outdir, suffix="out", ext="auto", channels=3, bit16=False):
    """Real-ESRGAN naming: OUT/<stem>_<suffix>.<ext>; alpha and 16-bit force .png."""
    stem, in_ext = os.path.splitext(os.path.basename(in_path))
    ext = in_ext.lstrip(".") if ext == "auto" else ext
    if channels in (2, 4) or bit16:
        ext = "png"
    return os.path.join(outdir, f"{stem}_{suffix}.{ext}" if suffix else f"{stem}.{ext}")


def enhance_file(model, in_path, out_path, tile=256, overlap=32, outscale=None, quality=95,
                 progress=False):
    """Read `in_path` (EXIF-upright), enhance, optionally rescale to `outscale`, write `out_path`."""
    array, exif = images.read_image(in_path, min_side=MIN_SIDE)
    scale = model_scale(model)
    out = enhance_image(model, array, tile=tile, overlap=overlap, progress=progress)
    out = _outscale(out, outscale or scale, scale)
    images.write_image(out_path, out, quality=quality, exif=exif)
    return out_path


def _same_file_key(path):
    """A key equal for two paths of the same file (symlinks and ``..`` resolved)."""
    return os.path.normcase(os.path.realpath(path))


def plan_outputs(paths, outdir, suffix="out", ext="auto", folder=None):
    """``({input: output path}, {input: error})`` for the inputs, checked before anything is written.

    The output kind (alpha or 16-bit forces .png) is read from each header. Inputs listed from
    `folder` keep their sub-folder under `outdir`. Raises ConfigError when an output path is one of
    the inputs or two inputs would be written to the same path.
    """
    targets, failed, owners = {}, {}, {}
    inputs = {_same_file_key(p): p for p in paths}
    for path in paths:
        try:
            channels, bit16 = images.probe_image(path)
        except SuperResError as error:
            failed[path] = str(error)
            continue
        where = os.path.join(outdir, os.path.dirname(images.image_name(path, folder))) if folder else outdir
        target = output_path(path, where, suffix, ext, channels, bit16)
        key = _same_file_key(target)
        if key in inputs:
            raise ConfigError(f"{inputs[key]}: the output {target} would overwrite it (an input; use another -o "
                              "or a --suffix); nothing was written")
        if key in owners:
            raise ConfigError(f"{owners[key]} and {path} would both be written to {target} (use a --suffix "
                              "or --ext=auto); nothing was written")
        owners[key], targets[path] = path, target
    return targets, failed


def _inside(path, outdir, folder):
    """True when `path` lies in `outdir` and `outdir` is a sub-folder of `folder` (earlier results)."""
    out, top = os.path.realpath(outdir), os.path.realpath(folder)
    return out != top and os.path.realpath(path).startswith(out + os.sep)


def enhance_folder(model, inputs, outdir, tile=256, overlap=32, outscale=None, suffix="out",
                   ext="auto", quality=95):
    """Enhance a file or every image of a folder (sub-folders included, mirrored under `outdir`;
    an `outdir` inside the folder is not read) into `outdir`, with a progress line.

    Every output path is planned first (:func:`plan_outputs`): one that is an input, or that two
    inputs share, is an error before anything is written.
    Returns (written paths, {path: error message} of the files that failed; those are skipped).
    """
    folder = inputs if os.path.isdir(inputs) else None
    paths = [inputs] if folder is None else [p for p in images.list_images(folder) if not _inside(p, outdir, folder)]
    if not paths:
        raise ImageReadError(f"{inputs}: no image files")
    targets, failed = plan_outputs(paths, outdir, suffix, ext, folder)
    line = StatusLine() if len(targets) > 1 else None
    written = []
    for index, (path, target) in enumerate(targets.items()):
        try:
            written.append(enhance_file(model, path, target, tile, overlap, outscale, quality,
                                        progress=line is None))
        except SuperResError as error:
            failed[path] = str(error)
        if line is not None:
            line.count(index + 1, len(targets), "images")
    return written, failed


FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags (defined only when run as a script, so importing adds none)."""
    flags.DEFINE_string("input", None, "Input image or folder.", short_name="i")
    flags.DEFINE_string("output", "results", "Output folder.", short_name="o")
    flags.DEFINE_string("model", DEFAULT_MODEL, "Model (.keras); default: the embedded x4 model.")
    flags.DEFINE_float("outscale", None, "Final upscaling factor (default: the model's); other values "
                       "resize the model's output with Lanczos.", short_name="s")
    flags.DEFINE_integer("tile", 256, "Tile size in input pixels (lower it to save memory).", short_name="t")
    flags.DEFINE_integer("overlap", 32, "Overlap of neighbouring tiles in input pixels.")
    flags.DEFINE_string("suffix", "out", "Suffix of the output names.")
    flags.DEFINE_enum("ext", "auto", ["auto", "jpg", "png"], "Output format (auto = same as input).")
    flags.DEFINE_integer("quality", 95, "JPEG/WebP quality of the outputs.")


class FilesFailed(SuperResError):
    """Some inputs could not be enhanced (one line per file); exit 1 if others were written, else 2."""

    def __init__(self, messages, written):
        super().__init__("\n".join(messages))
        self.exit_code = 1 if written else 2


def run_from_flags():
    """Enhance what the flags name; yields the written paths, then raises FilesFailed if any failed."""
    if not FLAGS.input:
        raise ConfigError("-i/--input is required")
    model = load_model(FLAGS.model)
    if not os.path.exists(FLAGS.input):
        raise ImageReadError(f"{FLAGS.input}: no such file or folder")
    if FLAGS.outscale is not None and not 0 < FLAGS.outscale <= 16:
        raise ConfigError(f"-s {FLAGS.outscale}: expected a factor in (0, 16]")
    written, failed = enhance_folder(model, FLAGS.input, FLAGS.output, FLAGS.tile, FLAGS.overlap,
                                     FLAGS.outscale, FLAGS.suffix, FLAGS.ext, FLAGS.quality)
    yield from written
    if failed:
        raise FilesFailed(list(failed.values()), written)


if __name__ == "__main__":
    from superres_tf import conventions

    define_flags()
    conventions.run(run_from_flags)
