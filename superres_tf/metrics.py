"""Standard super-resolution metrics on the Y channel (BasicSR / MATLAB protocol).

Inputs are HWC RGB float arrays in [0, 1] (numpy). Both metrics:
  * convert to Y of YCbCr, ITU-R BT.601 studio range: Y = 16 + 65.481 R + 128.553 G + 24.966 B
    (values in 16..235),
  * crop `border` pixels (usually the scale factor) from every side,
  * work in float64 on the 0-255 scale.
PSNR = 10 log10(255^2 / MSE). SSIM = Wang et al. 2004 with an 11x11 Gaussian window, sigma 1.5,
C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2 and 'valid' filtering, averaged over the map.
"""

import numpy as np

from superres_tf.degrade import mod_crop, upscale_bicubic
from superres_tf.images import from_unit_float, to_unit_float

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def rgb_to_y(rgb):
    """HWC RGB in [0, 1] -> HW float64 luma Y in 16..235 (BT.601 studio range)."""
    return 16.0 + np.asarray(rgb, dtype=np.float64) @ _Y_WEIGHTS


def _crop(array, border):
    """Drop `border` pixels from every side of an HW(C) array."""
    return array[border:array.shape[0] - border, border:array.shape[1] - border] if border else array


def _prepare(a, b, border):
    """Two equal-shape RGB images -> their cropped Y channels."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return _crop(rgb_to_y(a), border), _crop(rgb_to_y(b), border)


def psnr_from_mse(mse, peak=255.0):
    """PSNR in dB for a mean squared error on a 0..peak scale (inf for mse 0)."""
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak ** 2 / mse))


def psnr_y(a, b, border=0):
    """PSNR (dB) between two HWC RGB [0, 1] images on Y, ignoring `border` pixels at each side."""
    ya, yb = _prepare(a, b, border)
    return psnr_from_mse(np.mean((ya - yb) ** 2))


def gaussian_window(size=11, sigma=1.5):
    """Normalised 1-D Gaussian taps (the 2-D window is their outer product)."""
    x = np.arange(size) - (size - 1) / 2.0
    taps = np.exp(-x ** 2 / (2.0 * sigma ** 2))
    return taps / taps.sum()


def _filter_valid(image, taps):
    """Separable 'valid' correlation of an HW array with the outer product of `taps`."""
    size = len(taps)
    rows = sum(t * image[i:image.shape[0] - size + 1 + i] for i, t in enumerate(taps))
    return sum(t * rows[:, i:rows.shape[1] - size + 1 + i] for i, t in enumerate(taps))


def ssim_gray(x, y, peak=255.0):
    """Mean SSIM of two HW float arrays on a 0..peak scale (11x11 Gaussian, sigma 1.5, valid)."""
    taps = gaussian_window()
    if min(x.shape) < len(taps):
        raise ValueError(f"SSIM needs images of at least {len(taps)}x{len(taps)}, got {x.shape}")
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    var_x = _filter_valid(x * x, taps) - mu_x ** 2
    var_y = _filter_valid(y * y, taps) - mu_y ** 2
    cov = _filter_valid(x * y, taps) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def ssim_y(a, b, border=0):
    """SSIM between two HWC RGB [0, 1] images on Y, ignoring `border` pixels at each side."""
    return ssim_gray(*_prepare(a, b, border))


def quantize(rgb):
    """Round float [0, 1] pixels to 8 bits and back, as saving to a PNG would."""
    return to_unit_float(from_unit_float(rgb))


def bicubic_baseline(low, scale, size=None):
    """The baseline every SR model must beat: HWC float [0, 1] low -> bicubic upscale (float)."""
    return to_unit_float(upscale_bicubic(from_unit_float(low), scale, size=size))


def score(sr, high, scale):
    """(PSNR-Y, SSIM-Y) of an SR result against the ground truth, both 8-bit quantised, border `scale`."""
    sr, high = quantize(sr), quantize(mod_crop(high, scale))
    return psnr_y(sr, high, border=scale), ssim_y(sr, high, border=scale)
