"""Shared StyleGAN maths (stylegan_tl.layers): equalized lr, modulated conv, minibatch stddev, truncation."""

import numpy as np
import pytest
import tensorflow as tf

from stylegan_tl import layers
from stylegan_tl.errors import StyleGANTLError


def _rand(*shape, seed=0):
    return tf.constant(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def test_weight_scale_equalized_lr():
    init_std, coef = layers.weight_scale([3, 3, 8, 4], gain=np.sqrt(2), lrmul=0.5)
    assert init_std == pytest.approx(2.0)                      # N(0, 1/lrmul)
    assert coef == pytest.approx(np.sqrt(2) / np.sqrt(72) * 0.5)  # gain/sqrt(fan_in)*lrmul
    init_std, coef = layers.weight_scale([16, 4], use_wscale=False, lrmul=0.5)
    assert (init_std, coef) == pytest.approx((0.25 / 0.5, 0.5))


@pytest.mark.parametrize("up,down,kernel,demodulate", [
    (False, False, 3, True), (True, False, 3, True), (False, True, 3, True), (False, False, 1, False),
    (True, False, 1, True)])
def test_fused_and_non_fused_modconv_agree(up, down, kernel, demodulate):
    x, w, s = _rand(3, 8, 8, 5, seed=1), _rand(kernel, kernel, 5, 6, seed=2), _rand(3, 5, seed=3) + 1.0
    args = dict(demodulate=demodulate, up=up, down=down, resample_kernel=[1, 3, 3, 1])
    fused = layers.modulated_conv2d(x, w, s, fused_modconv=True, **args)
    plain = layers.modulated_conv2d(x, w, s, fused_modconv=False, **args)
    size = 16 if up else 4 if down else 8
    assert fused.shape == (3, size, size, 6)
    np.testing.assert_allclose(fused.numpy(), plain.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("up", [False, True])
def test_fused_modconv_per_sample_fallback_agrees(monkeypatch, up):
    """Without grouped-conv support (TF's Eigen CPU kernels) the fused path convolves sample by sample."""
    x, w, s = _rand(2, 4, 4, 3, seed=14), _rand(3, 3, 3, 5, seed=15), _rand(2, 3, seed=16) + 1.0
    grouped = layers.modulated_conv2d(x, w, s, fused_modconv=True, up=up, resample_kernel=[1, 3, 3, 1])
    monkeypatch.setattr(layers, "grouped_conv_supported", lambda: False)
    per_sample = layers.modulated_conv2d(x, w, s, fused_modconv=True, up=up, resample_kernel=[1, 3, 3, 1])
    np.testing.assert_allclose(grouped.numpy(), per_sample.numpy(), rtol=1e-5, atol=1e-5)


def test_modconv_1x1_matches_numpy():
    x, w, s = _rand(2, 4, 4, 3, seed=4), _rand(1, 1, 3, 2, seed=5), _rand(2, 3, seed=6)
    ww = w.numpy()[0, 0][None] * s.numpy()[:, :, None]                  # [N, I, O]
    ww = ww / np.sqrt(np.sum(ww ** 2, axis=1, keepdims=True) + 1e-8)    # demodulate per output channel
    expected = np.einsum("nhwi,nio->nhwo", x.numpy(), ww)
    got = layers.modulated_conv2d(x, w, s, demodulate=True, fused_modconv=False)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_minibatch_stddev_strided_groups():
    x = _rand(8, 2, 2, 4, seed=7)
    y = layers.minibatch_stddev(x, group_size=4, num_new_features=1).numpy()
    assert y.shape == (8, 2, 2, 5)
    np.testing.assert_array_equal(y[..., :4], x.numpy())
    for m in range(2):  # group m holds samples m, m+2, m+4, m+6 (NVIDIA's reshape [G, M, ...])
        members = x.numpy()[m::2]
        expected = np.mean(np.sqrt(np.var(members, axis=0) + 1e-8))
        np.testing.assert_allclose(y[m::2, :, :, 4], expected, rtol=1e-5)


def test_minibatch_stddev_whole_batch_and_two_features():
    x = _rand(6, 2, 2, 4, seed=8)
    y = layers.minibatch_stddev(x, group_size=None, num_new_features=2).numpy()
    assert y.shape == (6, 2, 2, 6)
    for f in range(2):  # feature f averages channels [2f, 2f+2) over the whole batch
        expected = np.mean(np.sqrt(np.var(x.numpy()[..., 2 * f:2 * f + 2], axis=0) + 1e-8))
        np.testing.assert_allclose(y[..., 4 + f], expected, rtol=1e-5)


def test_minibatch_stddev_small_batch_uses_one_group():
    x = _rand(3, 2, 2, 4, seed=9)
    y = layers.minibatch_stddev(x, group_size=4).numpy()
    np.testing.assert_allclose(y[..., 4], np.mean(np.sqrt(np.var(x.numpy(), axis=0) + 1e-8)), rtol=1e-5)


def test_normalize_2nd_moment():
    y = layers.normalize_2nd_moment(_rand(4, 16, seed=10) * 7.0).numpy()
    np.testing.assert_allclose(np.mean(y ** 2, axis=1), 1.0, rtol=1e-5)


def test_truncate_cutoff_and_all_layers():
    w = _rand(2, 4, 3, seed=11)
    avg = _rand(3, seed=12)
    out = layers.truncate(w, avg, 0.5, cutoff=2).numpy()
    np.testing.assert_allclose(out[:, :2], avg.numpy() + (w.numpy()[:, :2] - avg.numpy()) * 0.5, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2:], w.numpy()[:, 2:], atol=1e-6)  # psi 1 above the cutoff
    out = layers.truncate(w, avg, 0.0, cutoff=None).numpy()
    np.testing.assert_allclose(out, np.broadcast_to(avg.numpy(), w.shape), atol=1e-6)


def test_style_mix_extremes():
    w1, w2 = tf.zeros([2, 6, 3]), tf.ones([2, 6, 3])
    np.testing.assert_array_equal(layers.style_mix(w1, w2, 0.0, 6).numpy(), w1.numpy())
    tf.random.set_seed(0)
    mixed = layers.style_mix(w1, w2, 1.0, 6).numpy()
    assert np.all(mixed[:, 0] == 0) and np.all(mixed[:, -1] == 1)  # cutoff in [1, 6)
    assert np.all(np.diff(mixed[0, :, 0]) >= 0)                   # one switch from w1 to w2


def test_flatten_nchw_order():
    x = tf.reshape(tf.range(2 * 3 * 2 * 2, dtype=tf.float32), [2, 3, 2, 2])  # NCHW
    flat = layers.flatten_nchw(layers.nchw_to_nhwc(x)).numpy()
    np.testing.assert_array_equal(flat, x.numpy().reshape(2, -1))


def test_params_order_seed_and_flags():
    def make(seed):
        p = layers.Params(seed)
        p.weight("A/weight", [2, 3])
        p.zeros("A/bias", [3])
        p.zeros("lod", [], trainable=False)
        return p
    a, b = make(5), make(5)
    assert list(a.vars) == ["A/weight", "A/bias", "lod"]
    np.testing.assert_array_equal(a.vars["A/weight"].numpy(), b.vars["A/weight"].numpy())
    assert not a.vars["lod"].trainable and a.vars["lod"].shape == ()
    with pytest.raises(StyleGANTLError, match="created twice"):
        a.zeros("lod", [])


def test_resolve_static_kwargs_names_unknown():
    merged = layers.resolve_static_kwargs("F", {"a": 2, "x": 0}, {"a": 1, "b": 1}, also_allowed=("x",))
    assert merged == {"a": 2, "b": 1, "x": 0}
    with pytest.raises(StyleGANTLError, match="F: unknown static kwargs typo, zz"):
        layers.resolve_static_kwargs("F", {"typo": 1, "zz": 2}, {"a": 1})


def test_dense_and_conv_layers():
    p = layers.Params(0)
    dense = layers.Dense(p, "D", 8, 4, lrmul=0.01, act="lrelu")
    x = _rand(2, 8, seed=13)
    w = dense.weight.numpy() * (1 / np.sqrt(8) * 0.01)
    expected = np.maximum(x.numpy() @ w, 0.2 * (x.numpy() @ w)) * np.sqrt(2)
    np.testing.assert_allclose(dense(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    conv = layers.Conv2d(p, "C", 4, 2, 3, down=True, resample_kernel=[1, 3, 3, 1])
    assert conv(_rand(2, 8, 8, 4)).shape == (2, 4, 4, 2)
    assert list(p.vars) == ["D/weight", "D/bias", "C/weight", "C/bias"]
