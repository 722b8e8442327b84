"""Adaptive discriminator augmentation (ADA): the augmentation pipeline and the controller of p.

:func:`augment` applies NVIDIA's 'bgc' groups to a batch of NCHW images, each transformation gated
per sample with probability ``p``:

* blit ('b'): x-flip, rotation by a multiple of 90 degrees, integer translation (up to 1/8 of the size);
* geometric ('g'): isotropic scale (2^N(0, 0.2^2)), rotation (uniform, before and after the
  anisotropic scale, each with probability ``1 - sqrt(1 - p)``), anisotropic scale
  (2^N(0, 0.2^2) / its inverse), fractional translation (N(0, 0.125^2) of the size);
* colour ('c'): brightness (+N(0, 0.2^2)), contrast (x 2^N(0, 0.5^2)), luma flip, hue rotation
  (uniform angle about the grey axis), saturation (x 2^N(0, 1)).

All blit and geometric operations are composed into one affine matrix per sample and applied in a
single bilinear resampling with reflection at the borders; the colour operations form one 4x4
matrix per sample. Differences from NVIDIA: the resampling is done at the native resolution
without the 2x supersampling and wavelet low-pass filter, and it is implemented with gathers
(not ``ImageProjectiveTransformV3``, whose registered gradient is the inverse warp rather than
the exact adjoint), so the output is exactly differentiable to second order with respect to the
images: the R1 penalty is taken through it. With p = 0 the output equals the input exactly.

:class:`AdaController` holds p and adjusts it from r_t = E[sign(D(reals))] every ``interval``
minibatches by ``sign(r_t - target) * batch * interval / (tune_kimg * 1000)``.
"""

import math

import numpy as np
import tensorflow as tf

GROUPS = {"b": ("xflip", "rotate90", "xint"),
          "g": ("scale", "rotate", "aniso", "xfrac"),
          "c": ("brightness", "contrast", "lumaflip", "hue", "saturation")}


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


def _geometric_matrix(draws, p, groups, size):
    """Output-pixel -> input-pixel affine map [N,3,3] for the blit and geometric groups."""
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
    centre = _translate2d(tf.fill([n], (w - 1) / 2), tf.fill([n], (h - 1) / 2))
    uncentre = _translate2d(tf.fill([n], -(w - 1) / 2), tf.fill([n], -(h - 1) / 2))
    return centre @ m @ uncentre


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
# Applying the matrices.


def _reflect(i, size):
    """Reflect integer coordinates into [0, size-1] (mirror without repeating the edge)."""
    if size == 1:
        return tf.zeros_like(i)
    period = 2 * (size - 1)
    i = tf.math.floormod(i, period)
    return tf.where(i > size - 1, period - i, i)


def warp_bilinear(images, matrix):
    """Resample NCHW images [N,C,H,W] at ``matrix @ (x, y, 1)`` for every output pixel (x, y).

    ``matrix``: [N,3,3] output->input pixel coordinates. Bilinear, reflected at the borders;
    differentiable (to any order) with respect to ``images``.
    """
    shape = tf.shape(images)
    n, c = shape[0], shape[1]
    h, w = images.shape[2], images.shape[3]
    ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
    grid = tf.stack([tf.reshape(xs, [-1]), tf.reshape(ys, [-1]), tf.ones([h * w])], 0)  # [3, HW]
    src = tf.einsum("nij,jk->nik", tf.cast(matrix, tf.float32), grid)  # [N, 3, HW]
    sx, sy = src[:, 0], src[:, 1]
    x0, y0 = tf.floor(sx), tf.floor(sy)
    fx, fy = (sx - x0)[:, None], (sy - y0)[:, None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    flat = tf.reshape(images, [n, c, h * w])

    def tap(yi, xi):
        idx = _reflect(yi, h) * w + _reflect(xi, w)
        return tf.gather(flat, idx, axis=2, batch_dims=1)

    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    return tf.reshape(top * (1 - fy) + bottom * fy, shape)


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


def augment(images, p, seed, pipeline="bgc"):
    """ADA augmentation of a batch.

    Args:
        images: float32 [N, C, H, W] NCHW (any range; [-1, 1] in training).
        p: scalar probability that each transformation is applied to a sample.
        seed: int32/int64 [2] tensor for the stateless random draws (same seed -> same output).
        pipeline: which groups to use, a string of 'b' (blit), 'g' (geometric), 'c' (colour).
    Returns:
        float32 [N, C, H, W], exactly ``images`` when p = 0.
    """
    unknown = set(pipeline) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown augmentation group(s) {sorted(unknown)} in pipeline {pipeline!r}")
    images = tf.convert_to_tensor(images, tf.float32)
    p = tf.cast(p, tf.float32)
    draws = _Draws(tf.cast(seed, tf.int64), tf.shape(images)[0])
    if "b" in pipeline or "g" in pipeline:
        images = warp_bilinear(images, _geometric_matrix(draws, p, pipeline, images.shape[2:]))
    if "c" in pipeline:
        images = apply_colour(images, _colour_matrix(draws, p))
    return images


class AdaController:
    """The ADA probability p and its 'rt' heuristic (plain Python state, saved with the run).

    Call :meth:`accumulate` with the sum of sign(D(reals)) and the number of reals of every
    minibatch, then :meth:`step` once per minibatch; every ``interval`` minibatches p moves by
    ``sign(r_t - target) * batch * interval / (tune_kimg * 1000)``, clamped to [0, 1].
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
            self.p = float(np.clip(self.p + adjust, 0.0, 1.0))
            self._sign_sum, self._count = 0.0, 0.0
        return self.p

    def state_dict(self):
        return {"p": self.p, "rt": self.rt, "sign_sum": self._sign_sum, "count": self._count, "steps": self._steps}

    def load_state_dict(self, state):
        self.p, self.rt = float(state["p"]), float(state["rt"])
        self._sign_sum, self._count, self._steps = float(state["sign_sum"]), float(state["count"]), int(state["steps"])
