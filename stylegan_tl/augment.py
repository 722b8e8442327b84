"""Adaptive discriminator augmentation (ADA): the augmentation pipeline and the controller of p.

:func:`augment` applies NVIDIA's pixel-blitting, geometric and colour groups (ADA-TF
``augment_pipeline``, pipelines 'blit', 'geom', 'color', 'bg', 'bgc') to a batch of NCHW images,
each transformation gated per sample with probability ``p`` (``p`` may exceed 1: every gate open):

* blit ('b'): x-flip, rotation by a multiple of 90 degrees, integer translation (up to 1/8 of the size);
* geometric ('g'): isotropic scale (2^N(0, 0.2^2)), rotation (uniform, before and after the
  anisotropic scale, each with probability ``1 - sqrt(1 - p)``), anisotropic scale
  (2^N(0, 0.2^2) / its inverse), fractional translation (N(0, 0.125^2) of the size);
* colour ('c'): brightness (+N(0, 0.2^2)), contrast (x 2^N(0, 0.5^2)), luma flip, hue rotation
  (uniform angle about the grey axis), saturation (x 2^N(0, 1)).

Blit and geometric operations compose into one output->input affine map per sample, executed as
NVIDIA does (:func:`warp_supersampled`): reflection padding, 2x upsampling with the ``sym6``
orthogonal wavelet filter, one bilinear lookup at the doubled resolution, low-pass and 2x
decimation with the same filter. Integer translations are exact and a half-pixel shift keeps
about 0.71 of the Nyquist amplitude (a plain bilinear lookup keeps none). Whenever a blit or
geometric group is in the pipeline the images take this path, also for samples whose gates are
closed (where it is the identity up to float rounding), as in NVIDIA's code. The colour operations
form one 4x4 matrix per sample. Everything is built from convolutions, gathers and pads, so the
output is exactly differentiable (to second order) with respect to the images: the R1 penalty is
taken through it.

:class:`AdaController` holds p and adjusts it from r_t = E[sign(D(reals))] every ``interval``
minibatches by ``sign(r_t - target) * batch * interval / (tune_kimg * 1000)``, floored at 0.
"""

import math

import numpy as np
import tensorflow as tf

GROUPS = {"b": ("xflip", "rotate90", "xint"),
          "g": ("scale", "rotate", "aniso", "xfrac"),
          "c": ("brightness", "contrast", "lumaflip", "hue", "saturation")}
#: NVIDIA's ``--augpipe`` names that this module implements -> group letters.
PIPELINES = {"blit": "b", "geom": "g", "color": "c", "bg": "bg", "bgc": "bgc"}

#: Low-pass decomposition filter of the 'sym6' wavelet (least-asymmetric Daubechies, 12 taps;
#: orthonormal under even shifts, sums to sqrt(2)): the filter of NVIDIA's geometric path.
SYM6 = np.array([
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148])
_PAD = SYM6.size // 4  # extra output margin (pixels) kept around the image while resampling


def _exp2(x):
    return tf.pow(2.0, x)


# ----------------------------------------------------------------------------------------------
# 3x3 (2-D homogeneous) and 4x4 (RGB homogeneous) matrices, batched: [N, k, k].


def _translate2d(tx, ty):
    o, z = tf.ones_like(tx), tf.zeros_like(tx)
    return tf.stack([tf.stack([o, z, tx], -1), tf.stack([z, o, ty], -1), tf.stack([z, z, o], -1)], -2)


def _scale2d(sx, sy):
    z = tf.zeros_like(sx)
    return tf.stack([tf.stack([sx, z, z], -1), tf.stack([z, sy, z], -1), tf.stack([z, z, tf.ones_like(sx)], -1)], -2)


def _rotate2d(theta):
    c, s, z, o = tf.cos(theta), tf.sin(theta), tf.zeros_like(theta), tf.ones_like(theta)
    return tf.stack([tf.stack([c, -s, z], -1), tf.stack([s, c, z], -1), tf.stack([z, z, o], -1)], -2)


def _affine3d(m3, t3):
    """[N,3,3] linear part + [N,3] offset -> [N,4,4]."""
    n = tf.shape(m3)[0]
    top = tf.concat([m3, t3[:, :, None]], axis=2)
    bottom = tf.tile(tf.constant([[[0.0, 0.0, 0.0, 1.0]]]), [n, 1, 1])
    return tf.concat([top, bottom], axis=1)


_LUMA = np.full(3, 1 / math.sqrt(3))  # unit grey axis
_LUMA_OUTER = tf.constant(np.outer(_LUMA, _LUMA), tf.float32)
_LUMA_CROSS = tf.constant(np.cross(np.eye(3), _LUMA), tf.float32)  # [v]x: cross product with the grey axis


def _rotate_about_luma(theta):
    """Rodrigues rotation about the grey axis: [N] angles -> [N,3,3]."""
    c, s = tf.cos(theta)[:, None, None], tf.sin(theta)[:, None, None]
    return c * tf.eye(3) + s * _LUMA_CROSS + (1 - c) * _LUMA_OUTER


# ----------------------------------------------------------------------------------------------
# Random parameters.


class _Draws:
    """Stateless per-sample random draws, one fresh seed per draw (``seed``: int [2] tensor)."""

    def __init__(self, seed, n):
        self.seed, self.n, self.count = seed, n, 0

    def _next(self):
        self.count += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.count)

    def uniform(self):
        return tf.random.stateless_uniform([self.n], self._next())

    def normal(self):
        return tf.random.stateless_normal([self.n], self._next())

    def gate(self, prob, value, identity):
        """``value`` where a per-sample coin with probability ``prob`` says so, else ``identity``."""
        return tf.where(self.uniform() < prob, value, identity * tf.ones_like(value))


def geometric_matrix(draws, p, groups, size):
    """Output->input affine maps [N,3,3] of the blit and geometric groups, in pixel coordinates
    centred on the image centre ((W-1)/2, (H-1)/2)."""
    h, w = size
    n = draws.n
    m = tf.eye(3, batch_shape=[n])
    one = tf.ones([n])
    if "b" in groups:
        flip = 1 - 2 * tf.floor(draws.uniform() * 2)
        m = m @ _scale2d(draws.gate(p, flip, 1.0), one)
        quarter = tf.floor(draws.uniform() * 4) * (math.pi / 2)
        m = m @ _rotate2d(draws.gate(p, quarter, 0.0))
        on = tf.cast(draws.uniform() < p, tf.float32)
        tx = tf.round((draws.uniform() * 2 - 1) * 0.125 * w) * on
        ty = tf.round((draws.uniform() * 2 - 1) * 0.125 * h) * on
        m = m @ _translate2d(tx, ty)
    if "g" in groups:
        iso = _exp2(draws.normal() * 0.2)
        m = m @ _scale2d(*[draws.gate(p, iso, 1.0)] * 2)
        p_rot = 1 - tf.sqrt(tf.maximum(1 - p, 0.0))
        m = m @ _rotate2d(draws.gate(p_rot, (draws.uniform() * 2 - 1) * math.pi, 0.0))
        aniso = draws.gate(p, _exp2(draws.normal() * 0.2), 1.0)
        m = m @ _scale2d(aniso, 1 / aniso)
        m = m @ _rotate2d(draws.gate(p_rot, (draws.uniform() * 2 - 1) * math.pi, 0.0))
        on = tf.cast(draws.uniform() < p, tf.float32)
        m = m @ _translate2d(draws.normal() * 0.125 * w * on, draws.normal() * 0.125 * h * on)
    return m


def _colour_matrix(draws, p):
    """RGB affine map [N,4,4] for the colour group (applied to values in [-1, 1])."""
    n = draws.n
    eye3 = tf.eye(3, batch_shape=[n])
    zero3 = tf.zeros([n, 3])
    b = draws.gate(p, draws.normal() * 0.2, 0.0)
    c = _affine3d(eye3, b[:, None] * tf.ones([1, 3]))
    contrast = draws.gate(p, _exp2(draws.normal() * 0.5), 1.0)
    c = _affine3d(contrast[:, None, None] * eye3, zero3) @ c
    flip = draws.gate(p, tf.floor(draws.uniform() * 2), 0.0)
    c = _affine3d(eye3 - 2 * flip[:, None, None] * _LUMA_OUTER, zero3) @ c
    hue = draws.gate(p, (draws.uniform() * 2 - 1) * math.pi, 0.0)
    c = _affine3d(_rotate_about_luma(hue), zero3) @ c
    sat = draws.gate(p, _exp2(draws.normal()), 1.0)[:, None, None]
    c = _affine3d(_LUMA_OUTER + (eye3 - _LUMA_OUTER) * sat, zero3) @ c
    return c


# ----------------------------------------------------------------------------------------------
# The geometric path: pad, upsample, warp, downsample.


def _filter_axis(x, axis, taps, pads, stride=1):
    """Cross-correlate every channel of NHWC ``x`` [B, H, W, C] with 1-D ``taps`` along ``axis``
    (1 = H, 2 = W) after zero padding ``pads`` = (before, after); keep every ``stride``-th output."""
    channels = x.shape[3]
    k = tf.tile(tf.constant(taps, tf.float32)[:, None, None], [1, channels, 1])  # [taps, C, 1]
    paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
    paddings[axis] = list(pads)
    strides = [1, 1, 1, 1]
    strides[axis] = stride
    kernel = k[:, None] if axis == 1 else k[None]
    if stride > 1:  # depthwise convolutions take equal strides only: subsample afterwards
        y = tf.nn.depthwise_conv2d(tf.pad(x, paddings), kernel, strides=[1, 1, 1, 1], padding="VALID")
        return y[:, ::stride] if axis == 1 else y[:, :, ::stride]
    return tf.nn.depthwise_conv2d(tf.pad(x, paddings), kernel, strides=strides, padding="VALID")


def _insert_zeros(x, axis):
    """[B, H, W, C] -> a zero after every sample along ``axis`` (1 = H, 2 = W)."""
    shape = tf.shape(x)
    y = tf.stack([x, tf.zeros_like(x)], axis=axis + 1)
    new = [shape[0], shape[1], shape[2], x.shape[3]]
    new[axis] *= 2
    return tf.reshape(y, new)


def upsample_sym6(x):
    """2x upsampling NHWC [B, H, W, C] -> [B, 2H, 2W, C]: ``u[j] = sum_i h[j - 2i + 5] x[i]`` per
    axis (h = :data:`SYM6`), the adjoint of :func:`downsample_sym6` (their composition is the
    identity away from the borders, as h is orthonormal under even shifts)."""
    taps = SYM6[::-1]  # true convolution of the zero-inserted signal
    for axis in (1, 2):
        x = _filter_axis(_insert_zeros(x, axis), axis, taps, (6, 5))
    return x


def downsample_sym6(x):
    """2x decimation NHWC [B, 2H, 2W, C] -> [B, H, W, C]: ``y[i] = sum_k h[k] x[2i + k - 5]`` per axis."""
    for axis in (2, 1):
        x = _filter_axis(x, axis, SYM6, (5, 6), stride=2)
    return x


def _bilinear_zero_fill(images, coords):
    """Bilinear lookup with zeros outside the image (each of the 4 taps separately).

    Args:
        images: [B, H, W, C] float32. coords: [B, 2, P] input (x, y) pixel coordinates, pixel
            centres at integers.
    Returns:
        [B, P, C].
    """
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    flat = tf.reshape(images, [shape[0], -1, images.shape[3]])
    x, y = coords[:, 0], coords[:, 1]
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)

    def tap(yi, xi, weight):
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        idx = tf.clip_by_value(yi, 0, h - 1) * w + tf.clip_by_value(xi, 0, w - 1)
        return tf.gather(flat, idx, axis=1, batch_dims=1) * tf.where(inside, weight, 0.0)[:, :, None]

    return (tap(y0, x0, (1 - fx) * (1 - fy)) + tap(y0, x0 + 1, fx * (1 - fy))
            + tap(y0 + 1, x0, (1 - fx) * fy) + tap(y0 + 1, x0 + 1, fx * fy))


def warp_supersampled(images, g_inv):
    """Resample NCHW images through centred output->input affine maps, NVIDIA's way.

    1. Reflection-pad each side by enough pixels that every output corner (plus a margin of
       ``2 * 3`` px) maps inside, at most ``size - 1`` (one amount for the whole batch).
    2. Upsample 2x with :func:`upsample_sym6`.
    3. Bilinear lookup (zeros outside the padded image) of an output with a 3 px margin on each
       side, at twice the resolution, through ``scale(2) @ T_in @ g_inv @ T_out @ scale(1/2)``
       (T_in: centred -> padded input pixels, T_out: margin output pixels -> centred).
    4. Downsample 2x with :func:`downsample_sym6` and crop the margin.

    Args:
        images: float32 [N, C, H, W].
        g_inv: [N, 3, 3] output->input maps of centred pixel coordinates.
    Returns:
        float32 [N, C, H, W].
    """
    h, w = images.shape[2], images.shape[3]
    g_inv = tf.cast(g_inv, tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    centre = tf.constant([cx, cy])
    corners = tf.constant([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1.0, 1.0, 1.0, 1.0]])
    mapped = (g_inv @ corners[None])[:, :2]  # [N, 2, 4]
    limit = tf.constant([w - 1.0, h - 1.0])
    m_lo = tf.clip_by_value(tf.math.ceil(tf.reduce_max(-mapped, axis=[0, 2]) - centre + 2 * _PAD), 0.0, limit)
    m_hi = tf.clip_by_value(tf.math.ceil(tf.reduce_max(mapped, axis=[0, 2]) - centre + 2 * _PAD), 0.0, limit)
    lo, hi = tf.cast(m_lo, tf.int32), tf.cast(m_hi, tf.int32)
    x = tf.transpose(images, [0, 2, 3, 1])  # NHWC
    x = tf.pad(x, [[0, 0], [lo[1], hi[1]], [lo[0], hi[0]], [0, 0]], mode="REFLECT")
    x = upsample_sym6(x)

    t_in = _translate2d(cx + m_lo[0], cy + m_lo[1])[None]
    t_out = _translate2d(tf.constant(-(cx + _PAD)), tf.constant(-(cy + _PAD)))[None]
    half, double = _scale2d(tf.constant(0.5), tf.constant(0.5)), _scale2d(tf.constant(2.0), tf.constant(2.0))
    g = double[None] @ t_in @ g_inv @ t_out @ half[None]  # [N, 3, 3] in upsampled pixels
    out_h, out_w = (h + 2 * _PAD) * 2, (w + 2 * _PAD) * 2
    ys, xs = np.meshgrid(np.arange(out_h, dtype=np.float32), np.arange(out_w, dtype=np.float32), indexing="ij")
    grid = tf.constant(np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size, np.float32)]))  # [3, P]
    x = _bilinear_zero_fill(x, (g @ grid[None])[:, :2])  # [N, P, C]
    x = downsample_sym6(tf.reshape(x, [-1, out_h, out_w, images.shape[1]]))
    return tf.transpose(x[:, _PAD:_PAD + h, _PAD:_PAD + w], [0, 3, 1, 2])


# ----------------------------------------------------------------------------------------------
# Colour.


def apply_colour(images, matrix):
    """Apply [N,4,4] RGB affine maps to NCHW images.

    A 1-channel image is treated as the grey RGB image (x, x, x); the maps keep grey grey, so its
    output is the mean of the three output channels: a gain ``sum(M)/3`` and an offset ``mean(t)``.
    """
    if images.shape[1] == 1:
        gain = tf.reduce_sum(matrix[:, :3, :3], axis=[1, 2]) / 3
        offset = tf.reduce_mean(matrix[:, :3, 3], axis=1)
        return images * gain[:, None, None, None] + offset[:, None, None, None]
    return tf.einsum("nij,njhw->nihw", matrix[:, :3, :3], images) + matrix[:, :3, 3, None, None]


def pipeline_groups(pipeline):
    """Group letters of a pipeline given as NVIDIA's name ('bgc', 'blit', 'geom', 'color', 'bg')
    or as letters; ValueError for anything else."""
    groups = PIPELINES.get(pipeline, pipeline)
    unknown = set(groups) - set(GROUPS)
    if unknown or not groups:
        raise ValueError(f"unknown augmentation pipeline {pipeline!r} (known: {', '.join(PIPELINES)}, "
                         f"or letters of {''.join(GROUPS)})")
    return groups


def augment(images, p, seed, pipeline="bgc"):
    """ADA augmentation of a batch.

    Args:
        images: float32 [N, C, H, W] NCHW (any range; [-1, 1] in training).
        p: scalar probability that each transformation is applied to a sample (>= 0; > 1 acts as 1).
        seed: int32/int64 [2] tensor for the stateless random draws (same seed -> same output).
        pipeline: NVIDIA's pipeline name ('bgc', 'bg', 'blit', 'geom', 'color') or group letters.
    Returns:
        float32 [N, C, H, W]; with p = 0 the input (exactly without blit/geometric groups, up to
        float rounding with them).
    """
    groups = pipeline_groups(pipeline)
    images = tf.convert_to_tensor(images, tf.float32)
    p = tf.cast(p, tf.float32)
    draws = _Draws(tf.cast(seed, tf.int64), tf.shape(images)[0])
    if "b" in groups or "g" in groups:
        images = warp_supersampled(images, geometric_matrix(draws, p, groups, images.shape[2:]))
    if "c" in groups:
        images = apply_colour(images, _colour_matrix(draws, p))
    return images


class AdaController:
    """The ADA probability p and its 'rt' heuristic (plain Python state, saved with the run).

    Call :meth:`accumulate` with the sum of sign(D(reals)) and the number of reals of every
    minibatch, then :meth:`step` once per minibatch; every ``interval`` minibatches p moves by
    ``sign(r_t - target) * batch * interval / (tune_kimg * 1000)`` and is floored at 0 (no upper
    bound, as NVIDIA's: a p above 1 opens every gate).
    """

    def __init__(self, target=0.6, interval=4, tune_kimg=500.0, p=0.0):
        self.target, self.interval, self.tune_kimg = float(target), int(interval), float(tune_kimg)
        self.p, self.rt = float(p), 0.0
        self._sign_sum, self._count, self._steps = 0.0, 0.0, 0

    def accumulate(self, sign_sum, count):
        self._sign_sum += float(sign_sum)
        self._count += float(count)

    def step(self, batch_size):
        """One minibatch done; returns the (possibly adjusted) p."""
        self._steps += 1
        if self._steps % self.interval == 0 and self._count > 0:
            self.rt = self._sign_sum / self._count
            adjust = np.sign(self.rt - self.target) * batch_size * self.interval / (self.tune_kimg * 1000)
            self.p = float(max(self.p + adjust, 0.0))
            self._sign_sum, self._count = 0.0, 0.0
        return self.p

    def state_dict(self):
        return {"p": self.p, "rt": self.rt, "sign_sum": self._sign_sum, "count": self._count, "steps": self._steps}

    def load_state_dict(self, state):
        self.p, self.rt = float(state["p"]), float(state["rt"])
        self._sign_sum, self._count, self._steps = float(state["sign_sum"]), float(state["count"]), int(state["steps"])
