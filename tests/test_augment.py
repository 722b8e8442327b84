"""ADA: the augmentation pipeline (identity at p=0, seeded, differentiable) and the p controller."""

import numpy as np
import pytest
import tensorflow as tf

from stylegan_tl.augment import AdaController, augment, warp_bilinear


def _images(n=4, c=3, size=8, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, c, size, size)), tf.float32)


def test_p_zero_is_exactly_the_identity():
    x = _images()
    np.testing.assert_array_equal(augment(x, 0.0, [1, 2]).numpy(), x.numpy())
    np.testing.assert_array_equal(augment(x[:, :1], 0.0, [1, 2]).numpy(), x[:, :1].numpy())


def test_p_one_changes_every_sample_and_is_seeded():
    x = _images()
    a = augment(x, 1.0, [3, 4]).numpy()
    assert a.shape == x.shape
    assert all(np.abs(a[i] - x.numpy()[i]).max() > 0.1 for i in range(4))
    np.testing.assert_array_equal(a, augment(x, 1.0, [3, 4]).numpy())
    assert np.abs(a - augment(x, 1.0, [3, 5]).numpy()).max() > 0.1


def test_each_group_alone():
    x = _images(n=16)
    for group in "bgc":
        out = augment(x, 1.0, [0, 1], pipeline=group).numpy()
        assert np.isfinite(out).all() and np.abs(out - x.numpy()).max() > 0.1, group
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(x, 1.0, [0, 1], pipeline="bq")


def test_gating_follows_p():
    x = _images(n=200, size=4)
    out = augment(x, 0.1, [7, 7], pipeline="c").numpy()
    changed = np.abs(out - x.numpy()).reshape(200, -1).max(axis=1) > 1e-6
    # 5 colour ops, each applied with p=0.1: about 1 - 0.9^5 = 41% of samples change.
    assert 0.25 < changed.mean() < 0.6


def test_integer_shift_and_flip_are_exact():
    x = _images(n=1)
    shift = tf.constant([[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # read from x + 2
    np.testing.assert_allclose(warp_bilinear(x, shift)[..., :6].numpy(), x[..., 2:].numpy(), atol=1e-6)
    flip = tf.constant([[[-1.0, 0.0, 7.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    np.testing.assert_allclose(warp_bilinear(x, flip).numpy(), x[..., ::-1].numpy(), atol=1e-6)
    # Reflection at the border: reading column -1 gives column 1.
    left = tf.constant([[[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    np.testing.assert_allclose(warp_bilinear(x, left)[..., 0].numpy(), x[..., 1].numpy(), atol=1e-6)


def test_warp_gradient_is_the_exact_adjoint():
    x = _images(n=1, c=1, size=5, seed=1)
    m = tf.constant([[[0.9, 0.2, 0.3], [-0.1, 1.1, -0.4], [0.0, 0.0, 1.0]]])
    theoretical, numerical = tf.test.compute_gradient(lambda t: warp_bilinear(t, m), [x])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)


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


def test_controller_moves_p_toward_the_target():
    ada = AdaController(target=0.6, interval=4, tune_kimg=0.1)
    for _ in range(4):  # D very sure of the reals: overfitting -> more augmentation
        ada.accumulate(sign_sum=8, count=8)
        p = ada.step(batch_size=8)
    assert p == pytest.approx(8 * 4 / 100) and ada.rt == 1.0
    for _ in range(3):  # adjusts only every 4th minibatch
        ada.accumulate(-8, 8)
        assert ada.step(8) == p
    ada.accumulate(-8, 8)
    assert ada.step(8) == 0.0  # moved down, clamped at 0
    restored = AdaController(target=0.6, interval=4, tune_kimg=0.1)
    restored.load_state_dict(ada.state_dict())
    assert restored.state_dict() == ada.state_dict()
