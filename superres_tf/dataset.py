"""(low, high) training pairs made on the fly from a folder of photos.

The split into training and held-out photos is by FILE (never by crop), deterministic given the
seed. Unreadable or too-small files are skipped and named in the log. Pairs are NHWC float32 in
[0, 1]: `low` is `crop / scale` pixels square, `high` is `crop` pixels square. Scale augmentation:
each photo is also used downscaled (`photo_scales`), so a few photos give many scales of content.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from superres_tf import images
from superres_tf.degrade import check_scale, degrade, mod_crop
from superres_tf.errors import ConfigError, DatasetError, ImageReadError
from superres_tf.options import Degradation

# Degradation used for training unless told otherwise (superres_tf.options.Degradation's defaults).
DEFAULT_DEGRADATION = dataclasses.asdict(Degradation())
# Each training photo is also used at these fractions of its size (antialiased Lanczos).
DEFAULT_PHOTO_SCALES = (1.0, 0.8, 0.64, 0.5, 0.4)


def split_files(paths, holdout=0.2, seed=0, folder=None):
    """Split image paths into (train, held_out) lists, by file.

    Args:
      paths: image file paths.
      holdout: a fraction in [0, 1) of the files (at least one when > 0), or a list of file names
        to hold out: paths relative to `folder` when given (:func:`superres_tf.images.image_name`),
        else base names.
      seed: seed of the shuffle that picks the held-out files.
      folder: the folder the paths were listed from.
    """
    paths = sorted(paths)
    if isinstance(holdout, (list, tuple)):
        names = set(holdout)
        name = (lambda p: images.image_name(p, folder)) if folder else os.path.basename
        missing = names - {name(p) for p in paths}
        if missing:
            raise DatasetError(f"held-out files not in the folder: {', '.join(sorted(missing))}")
        held = [p for p in paths if name(p) in names]
    else:
        if not 0 <= holdout < 1:
            raise ConfigError(f"holdout={holdout!r}: expected a fraction in [0, 1) or a list of names")
        count = max(1, round(holdout * len(paths))) if holdout > 0 else 0
        order = np.random.default_rng(seed).permutation(len(paths))
        held = sorted(paths[i] for i in order[:count])
    train = [p for p in paths if p not in held]
    if not train:
        folder = os.path.dirname(paths[0]) if paths else "."
        raise DatasetError(f"{folder}: no training files left after holding out "
                           f"{len(held)} of {len(paths)} files (add photos or lower --holdout)")
    return train, held


def load_rgb_images(paths, min_side):
    """Decode files to uint8 HWC RGB arrays, skipping (and logging by name) unusable ones.

    Returns a list of (path, array). Grey is replicated to RGB; alpha is dropped; 16-bit is reduced
    to 8 bits.
    """
    loaded = []
    for path in paths:
        try:
            array, _ = images.read_image(path, min_side=min_side)
        except ImageReadError as error:
            logging.warning("skipping %s", error)
            continue
        rgb = array[..., :3] if array.shape[-1] >= 3 else np.repeat(array[..., :1], 3, axis=-1)
        loaded.append((path, np.ascontiguousarray(images.to_uint8(rgb))))
    return loaded


def load_folder(folder, min_side, holdout=0.2, seed=0):
    """Images of `folder` (sub-folders included) split by file -> (train, held_out) lists of
    (path, uint8 RGB array)."""
    paths = images.list_images(folder)
    if not paths:
        raise DatasetError(f"{folder}: no image files (.png, .jpg, ...)")
    train, held = split_files(paths, holdout=holdout, seed=seed, folder=folder)
    train_images, held_images = load_rgb_images(train, min_side), load_rgb_images(held, min_side)
    if not train_images:
        raise DatasetError(f"{folder}: none of the {len(train)} training files is usable "
                           f"(need at least {min_side} px on each side)")
    return train_images, held_images


def photo_pyramid(array, photo_scales, min_side):
    """uint8 HWC photo -> list of copies at each fraction of its size (Lanczos), those >= `min_side`."""
    image = Image.fromarray(array)
    copies = []
    for fraction in photo_scales:
        if not 0 < fraction <= 1:
            raise ConfigError(f"photo scale {fraction!r}: expected a fraction in (0, 1]")
        size = (round(image.size[0] * fraction), round(image.size[1] * fraction))
        if min(size) >= min_side:
            copies.append(array if fraction == 1 else np.asarray(image.resize(size, Image.LANCZOS)))
    return copies


def random_pair(array, crop, scale, rng, degradation, flips="horizontal"):
    """One random crop of a uint8 RGB image, mirrored at random ('horizontal') or in one of the 8
    orientations of the square ('dihedral': mirror, then a turn by 0/90/180/270 degrees)
    -> (low, high) float32 HWC in [0, 1]."""
    top = rng.integers(0, array.shape[0] - crop + 1)
    left = rng.integers(0, array.shape[1] - crop + 1)
    high = array[top:top + crop, left:left + crop]
    if rng.uniform() < 0.5:
        high = high[:, ::-1]
    if flips == "dihedral":
        high = np.rot90(high, k=int(rng.integers(4)))
    low = degrade(np.ascontiguousarray(high), scale=scale, seed=int(rng.integers(2**31)), **degradation)
    return images.to_unit_float(low), images.to_unit_float(high)


def pair_dataset(train_images, scale, crop, batch_size, seed, degradation=None, photo_scales=(1.0,),
                 flips="horizontal"):
    """Endless tf.data.Dataset of batches (low [B, crop/s, crop/s, 3], high [B, crop, crop, 3]).

    Random crops of `crop` pixels (a multiple of `scale`) from randomly chosen images, each image
    taken at a random one of `photo_scales` (fractions of its size; copies smaller than `crop` are
    left out), mirrored or turned as `flips` says (see :func:`random_pair`). The stream is fixed by `seed` (an int or a tuple of ints, e.g. (seed, stage, epoch)
    so that a resumed run does not repeat its first batches).
    """
    check_scale(scale)
    if crop % scale:
        raise ConfigError(f"crop={crop} is not a multiple of scale {scale}")
    pyramids = [photo_pyramid(a, photo_scales, crop) for _, a in train_images]
    usable = [copies for copies in pyramids if copies]
    if not usable:
        raise DatasetError(f"no training image is at least {crop} px on each side")
    degradation = dict(DEFAULT_DEGRADATION if degradation is None else degradation)
    seed_key = list(seed) if isinstance(seed, (tuple, list)) else [seed]

    def generate():
        rng = np.random.default_rng(seed_key)
        while True:
            copies = usable[rng.integers(len(usable))]
            yield random_pair(copies[rng.integers(len(copies))], crop, scale, rng, degradation, flips)

    low_size = crop // scale
    signature = (tf.TensorSpec((low_size, low_size, 3), tf.float32),
                 tf.TensorSpec((crop, crop, 3), tf.float32))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def heldout_pairs(held_images, scale, seed, degradation=None, max_side=None):
    """Deterministic (name, low, high) triples of float32 HWC [0, 1] for evaluation.

    Each high image is centre-cropped to at most `max_side` pixels per side (None = whole image),
    then mod-cropped to a multiple of `scale`; the i-th image is degraded with seed (seed, i).
    """
    degradation = dict(DEFAULT_DEGRADATION if degradation is None else degradation)
    triples = []
    for index, (path, array) in enumerate(held_images):
        if max_side:
            top = max(0, (array.shape[0] - max_side) // 2)
            left = max(0, (array.shape[1] - max_side) // 2)
            array = array[top:top + max_side, left:left + max_side]
        high = np.ascontiguousarray(mod_crop(array, scale))
        low = degrade(high, scale=scale, seed=seed * 100003 + index, **degradation)
        triples.append((os.path.basename(path), images.to_unit_float(low), images.to_unit_float(high)))
    return triples
