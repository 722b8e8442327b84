"""ADA: the augmentation pipeline (NVIDIA's supersampled geometric path, seeded, differentiable)
and the p controller.

The geometric tests compare :func:`warp_supersampled` with an independent numpy version of
NVIDIA's construction (reflection pad, 2x sym6 upsampling written as an explicit matrix, bilinear
lookup with zero fill, sym6 decimation, crop), and check the two properties the construction is
for: integer translations are exact, and a half-pixel shift keeps the upper frequencies that a
plain bilinear lookup averages away.
"""

import numpy as np
import pytest
import tensorflow as tf

from stylegan_tl.augment import SYM6, AdaController, augment, downsample_sym6, upsample_sym6, warp_supersampled


def _images(n=4, c=3, size=8, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, c, size, size)), tf.float32)


def _translation(tx, ty, n=1):
    return tf.constant(np.tile(np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float32), (n, 1, 1)))


# ---- numpy reference of NVIDIA's geometric construction -------------------------------------------

def _decimation_matrix(n):
    """[n, 2n]: row i holds sym6 at columns 2i-5 .. 2i+6 (y[i] = sum_k h[k] x[2i + k - 5])."""
    d = np.zeros((n, 2 * n))
    for i in range(n):
        for k, tap in enumerate(SYM6):
            if 0 <= 2 * i + k - 5 < 2 * n:
                d[i, 2 * i + k - 5] = tap
    return d


def _bilinear_reference(image, x, y):
    """Zero-filled bilinear lookup of a 2-D array at float coordinates (loops, no vectorisation)."""
    h, w = image.shape
    out = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        x0, y0 = int(np.floor(x[idx])), int(np.floor(y[idx]))
        fx, fy = x[idx] - x0, y[idx] - y0
        for yy, xx, weight in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x0 + 1, fx * (1 - fy)),
                               (y0 + 1, x0, (1 - fx) * fy), (y0 + 1, x0 + 1, fx * fy)):
            if 0 <= yy < h and 0 <= xx < w:
                out[idx] += weight * image[yy, xx]
    return out


def _nvidia_geometric_reference(images, g_inv):
    """NVIDIA's execution of centred output->input maps on NCHW ``images`` (numpy, float64)."""
    n, c, h, w = images.shape
    cx, cy, pad = (w - 1) / 2, (h - 1) / 2, 3
    corners = g_inv @ np.array([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]])
    lo = np.clip(np.ceil(np.max(-corners[:, :2], axis=(0, 2)) - [cx, cy] + 2 * pad), 0, [w - 1, h - 1]).astype(int)
    hi = np.clip(np.ceil(np.max(corners[:, :2], axis=(0, 2)) - [cx, cy] + 2 * pad), 0, [w - 1, h - 1]).astype(int)
    padded = np.pad(images, [(0, 0), (0, 0), (lo[1], hi[1]), (lo[0], hi[0])], mode="reflect")
    up_y, up_x = _decimation_matrix(padded.shape[2]).T, _decimation_matrix(padded.shape[3]).T
    out_h, out_w = (h + 2 * pad) * 2, (w + 2 * pad) * 2
    oy, ox = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    t_in = np.array([[1, 0, cx + lo[0]], [0, 1, cy + lo[1]], [0, 0, 1]])
    t_out = np.array([[1, 0, -(cx + pad)], [0, 1, -(cy + pad)], [0, 0, 1]])
    down_y, down_x = _decimation_matrix(h + 2 * pad), _decimation_matrix(w + 2 * pad)
    result = np.zeros(images.shape)
    for i in range(n):
        g = np.diag([2, 2, 1]) @ t_in @ g_inv[i] @ t_out @ np.diag([0.5, 0.5, 1])
        src = g @ np.stack([ox.ravel(), oy.ravel(), np.ones(ox.size)])
        for ch in range(c):
            upsampled = up_y @ padded[i, ch] @ up_x.T
            warped = _bilinear_reference(upsampled, src[0].reshape(ox.shape), src[1].reshape(ox.shape))
            result[i, ch] = (down_y @ warped @ down_x.T)[pad:pad + h, pad:pad + w]
    return result


# ---- the filter and the geometric path ----------------------------------------------------------

def test_sym6_is_an_orthonormal_lowpass_and_down_undoes_up():
    assert SYM6.sum() == pytest.approx(np.sqrt(2)) and (SYM6 ** 2).sum() == pytest.approx(1)
    for shift in range(1, 6):  # orthogonal to its own even shifts
        assert np.dot(SYM6[:-2 * shift], SYM6[2 * shift:]) == pytest.approx(0, abs=1e-12)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 20, 20, 3)), tf.float32)
    up = upsample_sym6(x)
    assert up.shape == (2, 40, 40, 3)
    np.testing.assert_allclose(downsample_sym6(up).numpy()[:, 4:-4, 4:-4], x.numpy()[:, 4:-4, 4:-4], atol=1e-5)


def test_warp_matches_nvidias_construction_for_random_affine_maps():
    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (2, 2, 10, 12))
    g_inv = np.zeros((2, 3, 3))
    for i, (angle, sx, sy) in enumerate(((0.7, 1.2, 0.8), (-2.1, 0.9, 1.1))):
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        g_inv[i, :2, :2] = rot @ np.diag([sx, sy])
        g_inv[i, :2, 2] = rng.normal(size=2) * 1.5
        g_inv[i, 2, 2] = 1
    ours = warp_supersampled(tf.constant(images, tf.float32), tf.constant(g_inv, tf.float32)).numpy()
    np.testing.assert_allclose(ours, _nvidia_geometric_reference(images, g_inv), atol=2e-5)


def test_integer_translation_is_exact_with_reflected_borders():
    x = _images(n=2, size=16)
    out = warp_supersampled(x, _translation(3, -2, n=2)).numpy()  # output (i, j) reads input (i - 2, j + 3)
    padded = np.pad(x.numpy(), [(0, 0), (0, 0), (2, 0), (0, 3)], mode="reflect")
    np.testing.assert_allclose(out, padded[:, :, :16, 3:], atol=1e-5)


def test_half_pixel_shift_keeps_high_frequencies_like_nvidias_construction():
    line = np.zeros((1, 1, 32, 32), np.float32)
    line[0, 0, :, 16] = 1  # a vertical line: the row through it is the shift's impulse response
    response = warp_supersampled(tf.constant(line), _translation(0.5, 0)).numpy()[0, 0, 16]
    # NVIDIA's half-pixel shift, independently: decimate(shift by one upsampled sample(upsample(x))).
    d = _decimation_matrix(32)
    shift = np.eye(64, k=1)  # output sample j reads upsampled sample j + 1
    expected = (d @ shift @ d.T)[:, 16]
    np.testing.assert_allclose(response[6:26], expected[6:26], atol=1e-5)

    def gain(taps, frequency):
        return abs(np.sum(taps * np.exp(-1j * frequency * np.pi * np.arange(taps.size))))

    bilinear = np.array([0.5, 0.5])  # a native-resolution lookup half-way between two pixels
    assert gain(response, 0.5) > 0.99 and gain(bilinear, 0.5) == pytest.approx(np.cos(np.pi / 4))
    assert gain(response, 0.9) > 0.4 > 2 * gain(bilinear, 0.9)


def test_warp_gradient_is_the_exact_adjoint():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(1, 2, 9, 9)), tf.float32)
    v = tf.constant(rng.normal(size=(1, 2, 9, 9)), tf.float32)
    m = tf.constant([[[0.9, 0.2, 0.3], [-0.1, 1.1, -0.4], [0.0, 0.0, 1.0]]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = warp_supersampled(x, m)  # linear in x: y = A x
        total = tf.reduce_sum(y * v)
    adjoint = tape.gradient(total, x)  # A^T v
    assert float(tf.reduce_sum(y * v)) == pytest.approx(float(tf.reduce_sum(x * adjoint)), rel=1e-5)
    probe = np.zeros((1, 2, 9, 9), np.float32)
    probe[0, 1, 4, 5] = 1  # one column of A, read from the forward pass, equals one row of A^T
    column = warp_supersampled(tf.constant(probe), m).numpy()
    assert float(tf.reduce_sum(column * v)) == pytest.approx(float(adjoint[0, 1, 4, 5]), rel=1e-5, abs=1e-6)


def test_second_order_gradient_through_augment_exists():
    x = _images(n=2)
    w = tf.Variable(tf.ones([3]))
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            score = tf.reduce_sum(augment(x, 1.0, [1, 1]) ** 2 * w[None, :, None, None])
        g = inner.gradient(score, x)
        penalty = tf.reduce_sum(g ** 2)
    dw = outer.gradient(penalty, w)
    assert dw is not None and np.all(np.abs(dw.numpy()) > 0)


# ---- the pipeline -------------------------------------------------------------------------------

def test_p_zero_is_the_identity():
    x = _images()
    np.testing.assert_array_equal(augment(x, 0.0, [1, 2], pipeline="color").numpy(), x.numpy())
    np.testing.assert_allclose(augment(x, 0.0, [1, 2]).numpy(), x.numpy(), atol=1e-5)  # through the sym6 path
    np.testing.assert_allclose(augment(x[:, :1], 0.0, [1, 2]).numpy(), x[:, :1].numpy(), atol=1e-5)


def test_p_one_changes_every_sample_and_is_seeded():
    x = _images()
    a = augment(x, 1.0, [3, 4]).numpy()
    assert a.shape == x.shape
    assert all(np.abs(a[i] - x.numpy()[i]).max() > 0.1 for i in range(4))
    np.testing.assert_array_equal(a, augment(x, 1.0, [3, 4]).numpy())
    assert np.abs(a - augment(x, 1.0, [3, 5]).numpy()).max() > 0.1


def test_each_group_and_nvidias_pipeline_names():
    x = _images(n=16)
    for pipeline in ("b", "g", "c", "blit", "geom", "color", "bg"):
        out = augment(x, 1.0, [0, 1], pipeline=pipeline).numpy()
        assert np.isfinite(out).all() and np.abs(out - x.numpy()).max() > 0.1, pipeline
    np.testing.assert_array_equal(augment(x, 1.0, [0, 1], pipeline="geom").numpy(),
                                  augment(x, 1.0, [0, 1], pipeline="g").numpy())
    with pytest.raises(ValueError, match="unknown augmentation pipeline"):
        augment(x, 1.0, [0, 1], pipeline="bgcfnc")  # filter, noise, cutout: not implemented


def test_gating_follows_p():
    x = _images(n=200, size=4)
    out = augment(x, 0.1, [7, 7], pipeline="c").numpy()
    changed = np.abs(out - x.numpy()).reshape(200, -1).max(axis=1) > 1e-6
    # 5 colour ops, each applied with p=0.1: about 1 - 0.9^5 = 41% of samples change.
    assert 0.25 < changed.mean() < 0.6


def test_controller_moves_p_toward_the_target_without_an_upper_bound():
    ada = AdaController(target=0.6, interval=4, tune_kimg=0.1)
    for _ in range(4):  # D very sure of the reals: overfitting -> more augmentation
        ada.accumulate(sign_sum=8, count=8)
        p = ada.step(batch_size=8)
    assert p == pytest.approx(8 * 4 / 100) and ada.rt == 1.0
    for _ in range(3):  # adjusts only every 4th minibatch
        ada.accumulate(-8, 8)
        assert ada.step(8) == p
    ada.accumulate(-8, 8)
    assert ada.step(8) == 0.0  # moved down, floored at 0
    for _ in range(16 * 4):  # NVIDIA floors p at 0 but does not cap it at 1
        ada.accumulate(8, 8)
        ada.step(8)
    assert ada.p == pytest.approx(16 * 0.32)
    restored = AdaController(target=0.6, interval=4, tune_kimg=0.1)
    restored.load_state_dict(ada.state_dict())
    assert restored.state_dict() == ada.state_dict()
