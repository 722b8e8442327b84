"""Standard super-resolution metrics on the Y channel (BasicSR / MATLAB protocol), plus chroma.

Inputs are HWC RGB float arrays in [0, 1] (numpy). Every metric:
  * converts to YCbCr, ITU-R BT.601 studio range: Y = 16 + 65.481 R + 128.553 G + 24.966 B
    (values in 16..235), Cb and Cr in 16..240 (their R, G, B coefficients sum to zero),
  * crops `border` pixels (usually the scale factor) from every side,
  * works in float64 on the 0-255 scale.
PSNR = 10 log10(255^2 / MSE). SSIM = Wang et al. 2004 with an 11x11 Gaussian window, sigma 1.5,
C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2 and 'valid' filtering, averaged over the map. Chroma
PSNR (Cb, Cr) shows colour fringes that Y-only metrics hide. Sharpness = gradient energy of the
result's Y over the ground truth's (1 = as much fine detail as the truth; bicubic is well below 1;
above 1 = over-sharpened or noisy).
"""

import numpy as np

from superres_tf.degrade import mod_crop, upscale_bicubic
from superres_tf.images import from_unit_float, to_unit_float

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
# Columns: Y, Cb, Cr (BT.601 studio range, RGB in [0, 1]); offsets 16, 128, 128.
_YCBCR_WEIGHTS = np.array([[65.481, -37.797, 112.0],
                           [128.553, -74.203, -93.786],
                           [24.966, 112.0, -18.214]])
_YCBCR_OFFSETS = np.array([16.0, 128.0, 128.0])


def rgb_to_y(rgb):
    """HWC RGB in [0, 1] -> HW float64 luma Y in 16..235 (BT.601 studio range)."""
    return 16.0 + np.asarray(rgb, dtype=np.float64) @ _Y_WEIGHTS


def rgb_to_ycbcr(rgb):
    """HWC RGB in [0, 1] -> HW3 float64 (Y, Cb, Cr), BT.601 studio range."""
    return np.asarray(rgb, dtype=np.float64) @ _YCBCR_WEIGHTS + _YCBCR_OFFSETS


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


def psnr_ycbcr(a, b, border=0):
    """{'y', 'cb', 'cr'}: PSNR (dB) per YCbCr channel of two HWC RGB [0, 1] images."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    ya, yb = _crop(rgb_to_ycbcr(a), border), _crop(rgb_to_ycbcr(b), border)
    return {key: psnr_from_mse(np.mean((ya[..., i] - yb[..., i]) ** 2)) for i, key in enumerate(("y", "cb", "cr"))}


def gradient_energy(gray):
    """Mean squared forward difference (horizontal + vertical) of an HW array."""
    return float(np.mean(np.diff(gray, axis=0) ** 2) + np.mean(np.diff(gray, axis=1) ** 2))


def sharpness(sr, high, border=0):
    """Gradient energy of `sr`'s Y over that of `high`'s Y (HWC RGB [0, 1], same shape)."""
    ys, yh = _prepare(sr, high, border)
    return gradient_energy(ys) / max(gradient_energy(yh), 1e-12)


# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30; 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def mean_interval(values):
    """(mean, (low, high)): the mean of per-item values and its 95% t-interval ((nan, nan) for n < 2)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, (float("nan"), float("nan"))
    t = _T975[len(values) - 2] if len(values) - 1 <= len(_T975) else 1.96
    half = t * float(values.std(ddof=1)) / np.sqrt(len(values))
    return mean, (float(mean - half), float(mean + half))


def score(sr, high, scale):
    """(PSNR-Y, SSIM-Y) of an SR result against the ground truth, both 8-bit quantised, border `scale`."""
    sr, high = quantize(sr), quantize(mod_crop(high, scale))
    return psnr_y(sr, high, border=scale), ssim_y(sr, high, border=scale)


def full_score(sr, high, scale):
    """dict of psnr_y, ssim_y, psnr_cb, psnr_cr and sharpness, both images 8-bit quantised,
    border `scale` (the protocol of :func:`score`)."""
    sr, high = quantize(sr), quantize(mod_crop(high, scale))
    psnr = psnr_ycbcr(sr, high, border=scale)
    return {"psnr_y": psnr["y"], "ssim_y": ssim_y(sr, high, border=scale), "psnr_cb": psnr["cb"],
            "psnr_cr": psnr["cr"], "sharpness": sharpness(sr, high, border=scale)}
