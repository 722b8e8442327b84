"""Losses against hand computations, with stand-in linear networks."""

import numpy as np
import pytest
import tensorflow as tf

from stylegan_tl import loss


class LinearD:
    """D(x) = sum(w * x) per sample: dD/dx = w for every sample."""

    def __init__(self, w):
        self.w = tf.constant(w, tf.float32)

    def get_output_for(self, images, labels):
        return tf.reduce_sum(images * self.w, axis=[1, 2, 3])[:, None]


class LinearG:
    """images[n] = reshape(dlatents[n].flatten() @ A); dlatents = latents broadcast to 2 layers."""

    def __init__(self, A):
        self.A = tf.constant(A, tf.float32)  # [2*W, C*H*W]

    def get_output_for(self, latents, labels, return_dlatents=False, **kwargs):
        w = tf.tile(latents[:, None, :], [1, 2, 1])
        images = tf.reshape(tf.reshape(w, [tf.shape(w)[0], -1]) @ self.A, [-1, 1, 2, 2])
        return (images, w) if return_dlatents else images


def _softplus(x):
    return np.log1p(np.exp(x))


def test_logistic_losses():
    real = np.array([[2.0], [-1.0]], np.float32)
    fake = np.array([[0.5], [-3.0]], np.float32)
    np.testing.assert_allclose(loss.g_nonsaturating(tf.constant(fake)), _softplus(-fake[:, 0]), rtol=1e-6)
    np.testing.assert_allclose(loss.d_logistic(tf.constant(real), tf.constant(fake)),
                               _softplus(fake[:, 0]) + _softplus(-real[:, 0]), rtol=1e-6)


def test_r1_is_half_gamma_times_squared_gradient_norm():
    w = np.random.default_rng(0).normal(size=(1, 3, 4, 4)).astype(np.float32)
    reals = tf.constant(np.random.default_rng(1).normal(size=(2, 3, 4, 4)), tf.float32)
    penalty, scores = loss.r1_penalty(LinearD(w), reals, None, gamma=10.0)
    np.testing.assert_allclose(penalty, [5.0 * np.sum(w ** 2)] * 2, rtol=1e-5)
    assert scores.shape == (2, 1)
    # Through an augmentation x -> 2x the gradient doubles, the penalty quadruples.
    doubled, _ = loss.r1_penalty(LinearD(w), reals, None, 10.0, augment_fn=lambda x: 2 * x)
    np.testing.assert_allclose(doubled, 4 * penalty.numpy(), rtol=1e-5)


def test_path_lengths_match_the_closed_form():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(2 * 3, 4)).astype(np.float32)
    z = tf.constant(rng.normal(size=(2, 3)), tf.float32)
    seed = tf.constant([5, 6], tf.int64)
    lengths = loss.path_lengths(LinearG(A), z, None, seed).numpy()
    y = tf.random.stateless_normal([2, 1, 2, 2], seed).numpy() / 2.0  # N(0,1)/sqrt(H*W)
    g = y.reshape(2, 4) @ A.T  # d sum(img*y) / d w_flat: [N, 2*3]
    expected = np.sqrt(np.mean(np.sum(g.reshape(2, 2, 3) ** 2, axis=2), axis=1))
    np.testing.assert_allclose(lengths, expected, rtol=1e-5)


def test_path_length_penalty_and_running_mean():
    lengths = tf.constant([1.0, 3.0])
    penalty, new_mean = loss.path_length_penalty(lengths, pl_mean=0.5, batch_mean_length=2.0)
    assert float(new_mean) == pytest.approx(0.5 + 0.01 * 1.5)
    np.testing.assert_allclose(penalty, 2.0 * (np.array([1.0, 3.0]) - 0.515) ** 2, rtol=1e-6)
