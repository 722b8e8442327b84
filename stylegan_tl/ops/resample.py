"""Resampling helpers built on ``upfirdn_2d`` (StyleGAN2 semantics, spec section 4.6).

Every helper takes ``data_format='NCHW'`` or ``'NHWC'``. NHWC tensors go to ``upfirdn_2d`` as they
are (``[N, H, W, C]`` is its ``[major, H, W, minor]`` layout); NCHW tensors are viewed as
``[N*C, H, W, 1]`` (a free reshape). Convolutions run in NHWC (TF's CPU convolutions are NHWC-only);
NCHW inputs are transposed around them.
"""

import numpy as np
import tensorflow as tf

from ..errors import StyleGANTLError
from .upfirdn_2d import upfirdn_2d


def setup_kernel(k):
    """FIR kernel -> normalised 2-D float64 numpy array (1-D ``k`` becomes ``outer(k, k)``)."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim == 1:
        k = np.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.size == 0:
        raise StyleGANTLError(f"resampling kernel must be 1-D or square 2-D, got shape {k.shape}")
    total = np.sum(k)
    if total == 0:
        raise StyleGANTLError("resampling kernel sums to zero and cannot be normalised")
    return k / total


def _check_factor(factor):
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise StyleGANTLError(f"resampling factor must be an integer >= 1, got {factor!r}")
    return int(factor)


def _check_format(data_format):
    if data_format not in ("NCHW", "NHWC"):
        raise StyleGANTLError(f"data_format must be 'NCHW' or 'NHWC', got {data_format!r}")


def _simple_upfirdn_2d(x, k, up=1, down=1, pad0=0, pad1=0, data_format="NCHW", impl="auto"):
    """Same up/down/pads on both axes; ``x`` NCHW or NHWC, returned in the same layout."""
    _check_format(data_format)
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4:
        raise StyleGANTLError(f"expected a 4-D {data_format} tensor, got shape {x.shape}")
    if data_format == "NHWC":
        return upfirdn_2d(x, k, upx=up, upy=up, downx=down, downy=down, padx0=pad0, padx1=pad1,
                          pady0=pad0, pady1=pad1, impl=impl)
    channels = x.shape[1]
    if channels is None:
        raise StyleGANTLError("NCHW input needs a statically known channel count")
    shape = tf.shape(x)
    y = tf.reshape(x, [-1, shape[2], shape[3], 1])
    y = upfirdn_2d(y, k, upx=up, upy=up, downx=down, downy=down, padx0=pad0, padx1=pad1,
                   pady0=pad0, pady1=pad1, impl=impl)
    out_shape = tf.shape(y)
    return tf.reshape(y, [-1, channels, out_shape[1], out_shape[2]])


def upsample_2d(x, k=None, factor=2, gain=1, data_format="NCHW", impl="auto"):
    """Upsample ``x`` by ``factor`` with FIR kernel ``k`` (default box ``[1]*factor``).

    Args:
        x: ``[N, C, H, W]`` (NCHW) or ``[N, H, W, C]`` (NHWC).
        k: FIR kernel (1-D separable or 2-D), normalised to sum 1 then scaled by ``gain*factor**2``.
    Returns:
        ``[N, C, H*factor, W*factor]`` (or NHWC), dtype of ``x``.
    """
    factor = _check_factor(factor)
    k = setup_kernel([1] * factor if k is None else k) * (gain * factor ** 2)
    p = k.shape[0] - factor
    return _simple_upfirdn_2d(x, k, up=factor, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2,
                              data_format=data_format, impl=impl)


def downsample_2d(x, k=None, factor=2, gain=1, data_format="NCHW", impl="auto"):
    """Downsample ``x`` by ``factor`` after FIR filtering with ``k`` (default box ``[1]*factor``).

    Args:
        x: ``[N, C, H, W]`` (NCHW) or ``[N, H, W, C]`` (NHWC).
        k: FIR kernel (1-D separable or 2-D), normalised to sum 1 then scaled by ``gain``.
    Returns:
        ``[N, C, H//factor, W//factor]`` (or NHWC), dtype of ``x``.
    """
    factor = _check_factor(factor)
    k = setup_kernel([1] * factor if k is None else k) * gain
    p = k.shape[0] - factor
    return _simple_upfirdn_2d(x, k, down=factor, pad0=(p + 1) // 2, pad1=p // 2,
                              data_format=data_format, impl=impl)


def filter_2d(x, k, gain=1, data_format="NCHW", impl="auto", padding=0):
    """Filter ``x`` with FIR kernel ``k`` keeping its size (plus ``2*padding``).

    Args:
        x: ``[N, C, H, W]`` (NCHW) or ``[N, H, W, C]`` (NHWC).
        k: FIR kernel (1-D separable or 2-D), normalised to sum 1 then scaled by ``gain``.
        padding: extra zero padding on every side (ADA's ``filter_2d`` argument).
    Returns:
        ``[N, C, H + 2*padding, W + 2*padding]`` (or NHWC), dtype of ``x``.
    """
    k = setup_kernel(k) * gain
    p = k.shape[0] - 1
    return _simple_upfirdn_2d(x, k, pad0=(p + 1) // 2 + padding, pad1=p // 2 + padding,
                              data_format=data_format, impl=impl)


def _check_conv_weight(x, w, data_format):
    """Return ``w`` as a tensor of x's dtype; ``w`` must be HWIO with a square kernel."""
    w = tf.convert_to_tensor(w)
    if w.shape.rank != 4 or w.shape[0] != w.shape[1]:
        raise StyleGANTLError(f"conv weight must be [k, k, inC, outC] (HWIO), got {w.shape}")
    in_c = x.shape[1 if data_format == "NCHW" else 3]
    if in_c is not None and w.shape[2] is not None and in_c != w.shape[2]:
        raise StyleGANTLError(f"conv weight expects {w.shape[2]} input channels, x has {in_c}")
    return tf.cast(w, x.dtype)


def _to_nhwc(x, data_format):
    return tf.transpose(x, [0, 2, 3, 1]) if data_format == "NCHW" else x


def _from_nhwc(x, data_format):
    return tf.transpose(x, [0, 3, 1, 2]) if data_format == "NCHW" else x


def upsample_conv_2d(x, w, k=None, factor=2, gain=1, data_format="NCHW", impl="auto"):
    """Upsample by ``factor`` (zero insertion + FIR) and convolve with ``w``, fused.

    Equals ``conv2d(upfirdn_2d(x, k*gain*factor**2, up=factor, pads), w, VALID)`` with pads
    ``(kw - 1 + (p + 1)//2 + factor - 1, kw - factor + p//2 + 1)``, ``p = kk - factor - (kw - 1)``
    (pads (3, 2) for a 4-tap k and 3x3 w), computed as a strided transposed convolution followed
    by the FIR filter.

    Args:
        x: ``[N, C, H, W]`` (NCHW) or ``[N, H, W, C]`` (NHWC).
        w: ``[kw, kw, inC, outC]`` (HWIO) weight, cross-correlated (as ``tf.nn.conv2d`` does).
    Returns:
        ``[N, outC, H*factor, W*factor]`` (or NHWC), dtype of ``x``.
    """
    _check_format(data_format)
    factor = _check_factor(factor)
    x = tf.convert_to_tensor(x)
    w = _check_conv_weight(x, w, data_format)
    kw = w.shape[0]
    k = setup_kernel([1] * factor if k is None else k) * (gain * factor ** 2)
    p = (k.shape[0] - factor) - (kw - 1)
    y = _to_nhwc(x, data_format)
    shape = tf.shape(y)
    out_shape = [shape[0], (shape[1] - 1) * factor + kw, (shape[2] - 1) * factor + kw, w.shape[3]]
    # conv2d_transpose with the spatially flipped, in/out-swapped w cross-correlates the
    # zero-inserted input with w.
    wt = tf.transpose(w[::-1, ::-1], [0, 1, 3, 2])
    y = tf.nn.conv2d_transpose(y, wt, out_shape, strides=[1, factor, factor, 1], padding="VALID")
    y = _simple_upfirdn_2d(y, k, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2 + 1,
                           data_format="NHWC", impl=impl)
    return _from_nhwc(y, data_format)


def conv_downsample_2d(x, w, k=None, factor=2, gain=1, data_format="NCHW", impl="auto"):
    """FIR-filter ``x`` with ``k`` and convolve with ``w`` at stride ``factor``, fused.

    Equals ``conv2d(upfirdn_2d(x, k*gain, pad0=(p+1)//2, pad1=p//2), w, stride=factor, VALID)``
    with ``p = kk - factor + kw - 1`` (pads (2, 2) for a 4-tap k and 3x3 w).

    Args:
        x: ``[N, C, H, W]`` (NCHW) or ``[N, H, W, C]`` (NHWC).
        w: ``[kw, kw, inC, outC]`` (HWIO) weight.
    Returns:
        ``[N, outC, H//factor, W//factor]`` (or NHWC), dtype of ``x``.
    """
    _check_format(data_format)
    factor = _check_factor(factor)
    x = tf.convert_to_tensor(x)
    w = _check_conv_weight(x, w, data_format)
    kw = w.shape[0]
    k = setup_kernel([1] * factor if k is None else k) * gain
    p = (k.shape[0] - factor) + (kw - 1)
    y = _simple_upfirdn_2d(_to_nhwc(x, data_format), k, pad0=(p + 1) // 2, pad1=p // 2,
                           data_format="NHWC", impl=impl)
    y = tf.nn.conv2d(y, w, strides=[1, factor, factor, 1], padding="VALID")
    return _from_nhwc(y, data_format)
