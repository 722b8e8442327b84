"""The "crappify" step: turn a good photo into the kind of low-quality copy the model must undo.

Order of operations (each optional except the resize for scale > 1):
optional Gaussian blur -> antialiased downscale by `scale` -> optional Gaussian noise -> JPEG at a
random quality. Each optional step happens with its own probability, so one degradation setting
mixes clean and damaged copies. With scale=1 ("same-size" mode) there is no resize: only blur,
noise and JPEG, for restoring GAN samples without enlarging them. Deterministic given `seed`.
"""

import io

import numpy as np
from PIL import Image, ImageFilter

from superres_tf.errors import ConfigError

RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
SCALES = (1, 2, 4)


def _as_range(value, name):
    """None, a number or a (low, high) pair -> (low, high) or None."""
    if value is None:
        return None
    low, high = (value, value) if np.isscalar(value) else tuple(value)
    if low > high or low < 0:
        raise ConfigError(f"{name}={value!r}: expected a number or a (low, high) pair with low <= high")
    return low, high


def check_scale(scale):
    """Raise ConfigError unless `scale` is one of the supported factors 1, 2 or 4."""
    if scale not in SCALES:
        raise ConfigError(f"scale={scale!r}: expected one of {SCALES}")


def mod_crop(array, scale):
    """Crop an HWC array at the bottom/right so that height and width are multiples of `scale`."""
    height, width = array.shape[0] // scale * scale, array.shape[1] // scale * scale
    return array[:height, :width]


def degrade(high, scale=4, jpeg_quality=(10, 70), seed=0, resample="bicubic", blur_sigma=None,
            noise_sigma=None, jpeg_prob=1.0, blur_prob=1.0, noise_prob=1.0):
    """Make a low-quality copy of an RGB image.

    Args:
      high: PIL image or uint8 HWC RGB array (height and width >= `scale`).
      scale: 1, 2 or 4; the output is floor(H / scale) x floor(W / scale).
      jpeg_quality: JPEG quality, a number or an inclusive (low, high) range drawn uniformly
        (fastai's crappify: 10-70); None for no JPEG.
      seed: integer seed of every random choice (same seed -> same output).
      resample: 'bicubic' or 'bilinear' (both antialiased, as PIL's resize).
      blur_sigma: Gaussian blur sigma in pixels before the resize: number, (low, high) or None.
      noise_sigma: Gaussian noise sigma in 0-255 units after the resize: number, (low, high) or None.
      jpeg_prob: probability of applying the JPEG step (1.0 = always).
      blur_prob, noise_prob: probabilities of the blur and noise steps (when their sigma is set).

    Returns:
      The degraded image, of the same kind as `high` (PIL image or uint8 HWC array).
    """
    check_scale(scale)
    if resample not in RESAMPLE:
        raise ConfigError(f"resample={resample!r}: expected one of {sorted(RESAMPLE)}")
    quality, blur, noise = (_as_range(jpeg_quality, "jpeg_quality"), _as_range(blur_sigma, "blur_sigma"),
                            _as_range(noise_sigma, "noise_sigma"))
    rng = np.random.default_rng(seed)
    is_pil = isinstance(high, Image.Image)
    image = (high if is_pil else Image.fromarray(np.asarray(high, dtype=np.uint8))).convert("RGB")
    if min(image.size) < scale:
        raise ConfigError(f"image of {image.size[0]}x{image.size[1]} pixels is smaller than scale {scale}")
    if blur and rng.uniform() < blur_prob:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*blur))))
    if scale > 1:
        image = image.resize((image.size[0] // scale, image.size[1] // scale), RESAMPLE[resample])
    if noise and rng.uniform() < noise_prob:
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels + rng.normal(0.0, rng.uniform(*noise), size=pixels.shape)
        image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    if quality and rng.uniform() < jpeg_prob:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(quality[0], quality[1] + 1)))
        image = Image.open(buffer).convert("RGB")
    return image if is_pil else np.asarray(image)


def upscale_bicubic(low, scale, size=None):
    """Bicubic baseline: uint8 HWC RGB array -> uint8 array `scale` times larger (or of `size` (W, H))."""
    image = Image.fromarray(np.asarray(low, dtype=np.uint8))
    size = size or (image.size[0] * scale, image.size[1] * scale)
    return np.asarray(image.resize(size, Image.BICUBIC))
