"""Training images for StyleGAN: an image folder or NVIDIA's TFRecords -> a seeded ``tf.data`` stream.

Two sources are understood:

* an **image folder**: the files and the pixels the project's one image reader gives
  (:mod:`superres_tf.images`: sub-folders included, its suffixes and format allow-list, size
  caps, EXIF orientation applied, 16-bit decoded at 16 bits), then here: 16-bit rounded to 8 bits,
  alpha composited on black (transparent areas become black like NVIDIA's letterbox bars), grey
  or RGB as the network wants, made square by a centre crop (default) or a letterbox on black, and
  resized to the network resolution with Lanczos. Unreadable files are skipped, counted and named
  in the log. The decoded array is cached as ``.npy`` in ``cache_dir`` (keyed by file names, sizes,
  mtimes and the settings), so later runs skip the decoding.
* NVIDIA's **multi-resolution TFRecords** directory (``<dir>/<name>-rNN.tfrecords``, one
  ``tf.train.Example`` per image with features ``shape`` = [C, H, W] and ``data`` = CHW uint8 bytes,
  optional ``<name>-rxx.labels`` = float32 ``.npy`` [N, label_size]). :func:`write_tfrecords` writes
  that format (``python -m stylegan_tl.dataset --source=IMAGES --dest=DIR --resolution=256``).

Both become an :class:`ImageArray` (uint8 NCHW). :func:`make_tf_dataset` turns it into an endless
``tf.data`` stream of float32 NCHW batches in [-1, 1] (``x * 2/255 - 1`` as NVIDIA). Batch ``k`` of
the stream is a pure function of ``(seed, k)``: the sample order is a seeded permutation per epoch
and the x-flips are seeded per batch, so a resumed run sees the same images it would have seen,
and a global batch split over replicas contains the same images as on one device.
"""

import contextlib
import dataclasses
import functools
import glob
import hashlib
import json
import os
import re

import numpy as np
from absl import logging
from PIL import Image
from superres_tf import images as image_files
from superres_tf.errors import ImageReadError

from .atomic import atomic_write
from .errors import DatasetError, StyleGANTLError

_CACHE_FORMAT = 3  # bump when the decoding below changes, so old caches are ignored


@dataclasses.dataclass
class ImageArray:
    """A decoded dataset.

    Attributes:
        images: uint8 ``[N, C, R, R]`` NCHW (an in-memory array or a read-only memmap).
        labels: float32 ``[N, label_size]`` (``label_size`` may be 0).
        source: the directory it came from (for messages).
        skipped: files that could not be decoded (image folders only).
    """

    images: np.ndarray
    labels: np.ndarray
    source: str
    skipped: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def label_size(self) -> int:
        return int(self.labels.shape[1])


# ----------------------------------------------------------------------------------------------
# Image files -> uint8 arrays.


def list_image_files(image_dir: str) -> list:
    """The image files of ``image_dir`` and its sub-folders, sorted by relative path (the one
    reader's list: :func:`superres_tf.images.list_images`; a missing folder gives none)."""
    return image_files.list_images(image_dir) if os.path.isdir(image_dir) else []


def _to_channels(pixels: np.ndarray, num_channels: int) -> Image.Image:
    """uint8/uint16 HWC (1-4 channels) -> PIL 'RGB' (num_channels 3) or 'L' (1); alpha composited on black."""
    pixels = image_files.to_uint8(pixels)
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    if pixels.shape[-1] in (2, 4):
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img.convert("RGBA"))
    return img.convert("RGB" if num_channels == 3 else "L")


def fit_square(img: Image.Image, resolution: int, letterbox: bool = False) -> Image.Image:
    """Centre-crop (or letterbox on black) to a square, then Lanczos-resize to ``resolution``."""
    w, h = img.size
    if not letterbox:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
        return img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    scale = resolution / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new(img.mode, (resolution, resolution), 0)
    canvas.paste(img.resize((new_w, new_h), Image.Resampling.LANCZOS),
                 ((resolution - new_w) // 2, (resolution - new_h) // 2))
    return canvas


def load_image(path: str, resolution: int, letterbox: bool = False, num_channels: int = 3) -> np.ndarray:
    """Decode one file -> uint8 ``[C, R, R]`` (CHW). Raises DatasetError (one line naming it) on a bad file."""
    try:
        img = _to_channels(image_files.read_image(path)[0], num_channels)
    except ImageReadError as e:
        raise DatasetError(str(e)) from None
    arr = np.asarray(fit_square(img, resolution, letterbox), dtype=np.uint8)
    return arr[np.newaxis] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _cache_key(files, image_dir, resolution, letterbox, num_channels) -> str:
    h = hashlib.sha1(json.dumps([_CACHE_FORMAT, resolution, bool(letterbox), num_channels]).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.relpath(f, image_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _write_cache(cache: str, images: np.ndarray, source: str, skipped: list):
    """``<cache>.npy`` + ``<cache>.json``, atomically; a cache that cannot be written is only a warning."""
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with atomic_write(cache + ".npy") as f:
            np.save(f, images)
        with atomic_write(cache + ".json") as f:
            f.write(json.dumps({"source": source, "skipped": skipped}).encode("utf-8"))
    except (OSError, StyleGANTLError) as e:
        logging.warning("decoded image cache not written (%s)", getattr(e, "strerror", None) or e)


def _decode_folder(files, image_dir, resolution, letterbox, num_channels):
    """Decode every file; returns (uint8 [N,C,R,R], skipped relative names)."""
    images, skipped = [], []
    for i, path in enumerate(files):
        try:
            images.append(load_image(path, resolution, letterbox, num_channels))
        except (DatasetError, OSError, ValueError) as e:
            skipped.append(os.path.relpath(path, image_dir))
            logging.warning("skipping unreadable image %s: %s", path, e)
        if (i + 1) % 500 == 0:
            logging.info("decoded %d/%d images of %s", i + 1, len(files), image_dir)
    shape = (0, num_channels, resolution, resolution)
    return (np.stack(images) if images else np.zeros(shape, np.uint8)), skipped


def load_image_folder(image_dir: str, resolution: int, letterbox: bool = False, num_channels: int = 3,
                      cache_dir: str = None) -> ImageArray:
    """Decode an image folder (recursive) into an :class:`ImageArray` (no minimum size check).

    Args:
        image_dir: folder of images (sub-folders included; see :func:`list_image_files`).
        resolution: side of the square output images.
        letterbox: pad to a square on black instead of centre-cropping.
        num_channels: 3 (RGB) or 1 (greyscale).
        cache_dir: where to keep the decoded ``.npy`` cache (None: no cache).
    """
    files = list_image_files(image_dir)
    key = _cache_key(files, image_dir, resolution, letterbox, num_channels)
    cache = os.path.join(cache_dir, f"dataset-{key}") if cache_dir else None
    if cache and os.path.exists(cache + ".npy") and os.path.exists(cache + ".json"):
        with open(cache + ".json") as f:
            skipped = json.load(f)["skipped"]
        images = np.load(cache + ".npy", mmap_mode="r")
        logging.info("using decoded image cache %s.npy (%d images)", cache, len(images))
    else:
        images, skipped = _decode_folder(files, image_dir, resolution, letterbox, num_channels)
        if cache:
            _write_cache(cache, images, image_dir, skipped)
    if skipped:
        logging.warning("%d unreadable image(s) skipped in %s: %s", len(skipped), image_dir,
                        ", ".join(skipped))
    return ImageArray(images, np.zeros((len(images), 0), np.float32), image_dir, list(skipped))


# ----------------------------------------------------------------------------------------------
# NVIDIA's TFRecords format.

_LEVEL_RE = re.compile(r"-r(\d\d)\.tfrecords$")


def tfrecord_files(tfrecord_dir: str) -> dict:
    """``{resolution: path}`` of the ``*-rNN.tfrecords`` files in ``tfrecord_dir``."""
    found = {}
    for path in glob.glob(os.path.join(tfrecord_dir, "*.tfrecords")):
        m = _LEVEL_RE.search(os.path.basename(path))
        if m:
            found[2 ** int(m.group(1))] = path
    return found


def read_tfrecords(tfrecord_dir: str, resolution: int = None) -> ImageArray:
    """Read NVIDIA's TFRecords dataset at ``resolution`` (default: the highest level) into memory.

    Returns an :class:`ImageArray` (uint8 NCHW, labels from ``*-rxx.labels`` or width 0).
    """
    import tensorflow as tf

    levels = tfrecord_files(tfrecord_dir)
    if not levels:
        raise DatasetError(f"{tfrecord_dir}: no *-rNN.tfrecords files")
    resolution = resolution or max(levels)
    if resolution not in levels:
        raise DatasetError(f"{tfrecord_dir}: no {resolution}x{resolution} level "
                           f"(has {sorted(levels)})")
    path = levels[resolution]
    features = {"shape": tf.io.FixedLenFeature([3], tf.int64), "data": tf.io.FixedLenFeature([], tf.string)}
    images = []
    try:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            ex = tf.io.parse_single_example(record, features)
            shape = ex["shape"].numpy()
            images.append(np.frombuffer(ex["data"].numpy(), np.uint8).reshape(shape))
    except (tf.errors.OpError, ValueError) as e:
        raise DatasetError(f"{path}: not a valid StyleGAN TFRecords file ({str(e).splitlines()[0]})")
    if not images:
        raise DatasetError(f"{path}: contains no images")
    images = np.stack(images)
    labels = np.zeros((len(images), 0), np.float32)
    for label_file in glob.glob(os.path.join(tfrecord_dir, "*-rxx.labels"))[:1]:
        labels = np.load(label_file).astype(np.float32)
        labels = labels.reshape(len(labels), -1)
        if len(labels) != len(images):
            raise DatasetError(f"{label_file}: {len(labels)} labels for {len(images)} images")
    return ImageArray(images, labels, tfrecord_dir)


def write_tfrecords(tfrecord_dir: str, images: np.ndarray, labels: np.ndarray = None,
                    shuffle_seed: int = 123) -> list:
    """Write uint8 NCHW square power-of-two images as NVIDIA's multi-resolution TFRecords.

    Each lower level is the 2x2 box average of the previous level's float image, rounded to uint8.
    Files are named ``<dir>/<basename(dir)>-rNN.tfrecords`` (+ ``-rxx.labels``), each written to a
    temporary name and renamed. ``shuffle_seed=None`` keeps the input order. Returns the paths.
    """
    import tensorflow as tf

    images = np.asarray(images)
    n, c, h, w = images.shape
    log2 = int(np.log2(h))
    if h != w or 2 ** log2 != h or c not in (1, 3):
        raise DatasetError(f"{tfrecord_dir}: images must be square, power-of-two, 1 or 3 channels; got {images.shape}")
    order = np.arange(n) if shuffle_seed is None else np.random.RandomState(shuffle_seed).permutation(n)
    os.makedirs(tfrecord_dir, exist_ok=True)
    prefix = os.path.join(tfrecord_dir, os.path.basename(os.path.normpath(tfrecord_dir)))
    paths = [f"{prefix}-r{lod:02d}.tfrecords" for lod in range(log2, 1, -1)]
    with contextlib.ExitStack() as files:
        # TFRecordWriter writes to the hidden temp paths; each is renamed when the block succeeds.
        writers = [tf.io.TFRecordWriter(files.enter_context(atomic_write(p)).name) for p in paths]
        for i in order:
            level = images[i].astype(np.float32)
            for writer in writers:
                quant = np.clip(np.rint(level), 0, 255).astype(np.uint8)
                ex = tf.train.Example(features=tf.train.Features(feature={
                    "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=quant.shape)),
                    "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[quant.tobytes()]))}))
                writer.write(ex.SerializeToString())
                level = level.reshape(c, level.shape[1] // 2, 2, level.shape[2] // 2, 2).mean(axis=(2, 4))
        for writer in writers:
            writer.close()
    if labels is not None:
        with atomic_write(prefix + "-rxx.labels") as f:
            np.save(f, np.asarray(labels, np.float32)[order])
        paths.append(prefix + "-rxx.labels")
    return paths


# ----------------------------------------------------------------------------------------------
# Either source -> ImageArray -> tf.data.


def load_dataset(data: str, resolution: int, letterbox: bool = False, num_channels: int = 3,
                 min_images: int = 1, cache_dir: str = None) -> ImageArray:
    """Open ``data`` (TFRecords dir or image folder) at ``resolution``; DatasetError if unusable.

    ``resolution`` None: the TFRecords' highest level, or :func:`probe_resolution` for a folder.

    Raises DatasetError (one line naming the directory) when the path is missing, holds fewer than
    ``min_images`` usable images, or the images do not match ``num_channels``.
    """
    if not os.path.isdir(data):
        raise DatasetError(f"{data}: dataset directory not found")
    if tfrecord_files(data):
        array = read_tfrecords(data, resolution)
    else:
        array = load_image_folder(data, resolution or probe_resolution(data), letterbox, num_channels, cache_dir)
    if len(array) < min_images:
        extra = f" ({len(array.skipped)} unreadable skipped)" if array.skipped else ""
        raise DatasetError(f"{data}: {len(array)} usable image(s){extra}, need at least {min_images}")
    if array.num_channels != num_channels:
        raise DatasetError(f"{data}: images have {array.num_channels} channel(s), the network expects {num_channels}")
    logging.info("dataset %s: %d images, %dx%d, %d channel(s), label size %d", data, len(array),
                 array.resolution, array.resolution, array.num_channels, array.label_size)
    return array


def probe_resolution(data: str) -> int:
    """A default training resolution for ``data``: the TFRecords' top level, or for an image folder
    the largest power of two (4..1024) not above the shorter side of its first readable image."""
    if not os.path.isdir(data):
        raise DatasetError(f"{data}: dataset directory not found")
    levels = tfrecord_files(data)
    if levels:
        return max(levels)
    for path in list_image_files(data):
        try:
            side = min(image_files.upright_size(path))
        except ImageReadError:
            continue
        return int(min(1024, max(4, 2 ** int(np.floor(np.log2(side))))))
    raise DatasetError(f"{data}: no readable images to take a resolution from")


@functools.lru_cache(maxsize=8)
def _epoch_permutation(num_images: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_images)


def sample_indices(num_images: int, seed: int, start: int, count: int) -> np.ndarray:
    """Indices of samples ``start .. start+count-1`` of the endless stream (a fresh seeded
    permutation of ``range(num_images)`` per epoch)."""
    pos = np.arange(start, start + count)
    return np.array([_epoch_permutation(num_images, seed, int(p // num_images))[p % num_images]
                     for p in pos], np.int64)


def make_batch(array: ImageArray, global_batch: int, batch_index: int, seed: int = 0, mirror: bool = False,
               replica: int = 0, num_replicas: int = 1):
    """Replica ``replica``'s share of global batch ``batch_index`` as numpy.

    Returns (uint8 images ``[global_batch/num_replicas, C, R, R]`` NCHW, float32 labels ``[b, L]``).
    """
    per = global_batch // num_replicas
    idx = sample_indices(len(array), seed, batch_index * global_batch, global_batch)[replica * per:(replica + 1) * per]
    order = np.argsort(idx)  # sorted reads are kinder to a memmap
    images = np.empty((per,) + array.images.shape[1:], np.uint8)
    images[order] = array.images[idx[order]]
    if mirror:
        flips = np.random.default_rng([seed, batch_index, 1]).random(global_batch)[replica * per:(replica + 1) * per] < 0.5
        images[flips] = images[flips, :, :, ::-1]
    return images, array.labels[idx]


def make_tf_dataset(array: ImageArray, global_batch: int, seed: int = 0, mirror: bool = False,
                    start_batch: int = 0, num_replicas: int = 1, first_replica: int = 0,
                    local_replicas: int = 1):
    """Endless ``tf.data.Dataset`` of ``(images, labels)`` per-replica batches.

    images: float32 ``[global_batch/num_replicas, C, R, R]`` NCHW in [-1, 1]; labels float32 ``[b, L]``.
    Element ``j`` is replica ``first_replica + j % local_replicas``'s share of global batch
    ``start_batch + j // local_replicas`` (the order ``distribute_datasets_from_function`` hands
    elements to the local replicas). Prefetched; x-flips (``mirror``) seeded per batch.
    """
    import tensorflow as tf

    if global_batch % num_replicas:
        raise DatasetError(f"{array.source}: batch {global_batch} does not split over {num_replicas} replicas")
    per = global_batch // num_replicas
    c, r, label_size = array.num_channels, array.resolution, array.label_size

    def fetch(j):
        j = int(j)
        return make_batch(array, global_batch, start_batch + j // local_replicas, seed, mirror,
                          first_replica + j % local_replicas, num_replicas)

    def to_float(j):
        images, labels = tf.numpy_function(fetch, [j], [tf.uint8, tf.float32])
        images = tf.ensure_shape(images, [per, c, r, r])
        labels = tf.ensure_shape(labels, [per, label_size])
        return tf.cast(images, tf.float32) * (2.0 / 255.0) - 1.0, labels

    ds = tf.data.Dataset.counter().map(to_float, num_parallel_calls=2, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


# ----------------------------------------------------------------------------------------------
# Command line: image folder -> TFRecords.


def run_from_flags():
    """``python -m stylegan_tl.dataset --source=IMAGES --dest=TFRECORD_DIR --resolution=256``."""
    from absl import flags

    FLAGS = flags.FLAGS
    array = load_dataset(FLAGS.source, FLAGS.resolution or probe_resolution(FLAGS.source),
                         FLAGS.letterbox, FLAGS.num_channels)
    paths = write_tfrecords(FLAGS.dest, array.images,
                            shuffle_seed=None if FLAGS.shuffle_seed < 0 else FLAGS.shuffle_seed)
    return [f"wrote {len(array)} images to {len(paths)} files in {FLAGS.dest}"]


if __name__ == "__main__":
    from absl import flags
    from superres_tf import conventions

    flags.DEFINE_string("source", None, "image folder (sub-folders included)", required=True)
    flags.DEFINE_string("dest", None, "output TFRecords directory", required=True)
    flags.DEFINE_integer("resolution", None, "output resolution (default: from the first image)")
    flags.DEFINE_bool("letterbox", False, "letterbox on black instead of centre-cropping")
    flags.DEFINE_integer("num_channels", 3, "3 (RGB) or 1 (greyscale)")
    flags.DEFINE_integer("shuffle_seed", 123, "seed of the record order (-1: keep file order)")
    conventions.run(run_from_flags)
