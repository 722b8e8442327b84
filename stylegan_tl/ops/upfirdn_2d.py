"""Upsample, FIR-filter, downsample (``upfirdn_2d``), StyleGAN2 semantics (spec section 4.6).

For each of the two spatial axes: insert ``up - 1`` zeros after every pixel, zero-pad by
``(pad0, pad1)`` (negative values crop), convolve with the 2-D kernel ``k`` (a true convolution,
i.e. ``k`` flipped), VALID, and keep every ``down``-th pixel starting at 0.
Output size per axis: ``(in * up + pad0 + pad1 - kernel_size) // down + 1``.
"""

import numpy as np
import tensorflow as tf

from ..errors import StyleGANTLError
from .impl import resolve_impl


def upfirdn_2d(x, k, upx=1, upy=1, downx=1, downy=1, padx0=0, padx1=0, pady0=0, pady1=0,
               impl="auto"):
    """Pad, upsample, FIR-filter and downsample a batch of 2-D images.

    Args:
        x: tensor ``[majorDim, inH, inW, minorDim]`` (NHWC images, or ``[N*C, H, W, 1]``).
        k: 2-D FIR kernel ``[firH, firW]`` (numpy array or nested list; used as given).
        upx, upy, downx, downy: integer factors >= 1.
        padx0, padx1, pady0, pady1: integer pads (negative crops), applied after upsampling.
        impl: 'ref', 'custom' or 'auto'.
    Returns:
        Tensor ``[majorDim, outH, outW, minorDim]`` of the dtype of ``x``, with
        ``outH = (inH * upy + pady0 + pady1 - firH) // downy + 1`` (same for W).
    """
    x = tf.convert_to_tensor(x)
    k = check_upfirdn_args(x, k, upx, upy, downx, downy, padx0, padx1, pady0, pady1)
    args = (int(upx), int(upy), int(downx), int(downy), int(padx0), int(padx1), int(pady0),
            int(pady1))
    # The custom op's gradient needs static spatial sizes; 'auto' takes the reference otherwise.
    static = x.shape[1] is not None and x.shape[2] is not None
    if resolve_impl(impl if static or impl != "auto" else "ref") == "custom":
        from . import custom
        return custom.upfirdn_2d(x, k, *args)
    return _upfirdn_2d_ref(x, k, *args)


def check_upfirdn_args(x, k, upx, upy, downx, downy, padx0, padx1, pady0, pady1):
    """Validate the arguments; return ``k`` as a float64 numpy array ``[firH, firW]``."""
    if x.shape.rank != 4:
        raise StyleGANTLError(f"upfirdn_2d: x must be 4-D [major, H, W, minor], got {x.shape}")
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.size == 0:
        raise StyleGANTLError(f"upfirdn_2d: k must be a non-empty 2-D kernel, got shape {k.shape}")
    if min(upx, upy, downx, downy) < 1:
        raise StyleGANTLError(f"upfirdn_2d: up/down factors must be >= 1, got "
                              f"up=({upx}, {upy}) down=({downx}, {downy})")
    for axis, size, up, p0, p1, kk in ((1, x.shape[1], upy, pady0, pady1, k.shape[0]),
                                       (2, x.shape[2], upx, padx0, padx1, k.shape[1])):
        if size is not None and size * up + p0 + p1 < kk:
            raise StyleGANTLError(f"upfirdn_2d: axis {axis} of size {size} upsampled by {up} and "
                                  f"padded by ({p0}, {p1}) is smaller than the kernel ({kk})")
    return k


def _upfirdn_2d_ref(x, k, upx, upy, downx, downy, padx0, padx1, pady0, pady1):
    """Pure-TF reference in NHWC-style layout ``[major, H, W, minor]`` (autodiff to any order)."""
    minor = x.shape[3]
    if minor is None:
        raise StyleGANTLError("upfirdn_2d: the minor (channel) dimension must be known statically")
    shape = tf.shape(x)
    major, in_h, in_w = shape[0], shape[1], shape[2]
    # Upsample: insert zeros after each pixel.
    if upx > 1 or upy > 1:
        x = tf.reshape(x, [major, in_h, 1, in_w, 1, minor])
        x = tf.pad(x, [[0, 0], [0, 0], [0, upy - 1], [0, 0], [0, upx - 1], [0, 0]])
        x = tf.reshape(x, [major, in_h * upy, in_w * upx, minor])
    # Pad (positive) and crop (negative).
    x = tf.pad(x, [[0, 0], [max(pady0, 0), max(pady1, 0)], [max(padx0, 0), max(padx1, 0)], [0, 0]])
    if min(pady0, pady1, padx0, padx1) < 0:
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        x = x[:, max(-pady0, 0):h - max(-pady1, 0), max(-padx0, 0):w - max(-padx1, 0), :]
    # True convolution with k (flip, then cross-correlate), then keep every down-th pixel.
    kflip = tf.constant(k[::-1, ::-1], dtype=x.dtype)
    strides = [1, downy, downx, 1] if downx == downy else [1, 1, 1, 1]
    if minor == 1:
        x = tf.nn.conv2d(x, kflip[:, :, None, None], strides=strides, padding="VALID")
    else:
        kdw = tf.tile(kflip[:, :, None, None], [1, 1, minor, 1])
        x = tf.nn.depthwise_conv2d(x, kdw, strides=strides, padding="VALID")
    if downx != downy:
        x = x[:, ::downy, ::downx, :]
    return x
