"""upfirdn_2d and the resampling helpers: reference vs an independent numpy definition, custom op
vs reference (values, first- and second-order gradients, float32 and float16), NCHW vs NHWC."""

import numpy as np
import pytest
import tensorflow as tf

from stylegan_tl import ops
from stylegan_tl.errors import StyleGANTLError

K4 = [1, 3, 3, 1]


def np_upfirdn_2d(x, k, upx=1, upy=1, downx=1, downy=1, padx0=0, padx1=0, pady0=0, pady1=0):
    """The definition: zeros after each pixel, pad/crop, true convolution (VALID), subsample."""
    major, h, w, minor = x.shape
    z = np.zeros((major, h * upy, w * upx, minor))
    z[:, ::upy, ::upx] = x
    z = np.pad(z, [(0, 0), (max(pady0, 0), max(pady1, 0)), (max(padx0, 0), max(padx1, 0)), (0, 0)])
    z = z[:, max(-pady0, 0):z.shape[1] - max(-pady1, 0), max(-padx0, 0):z.shape[2] - max(-padx1, 0)]
    kh, kw = k.shape
    out = np.zeros((major, z.shape[1] - kh + 1, z.shape[2] - kw + 1, minor))
    for i in range(kh):
        for j in range(kw):  # y[o] = sum_t z[o + t] * k[K - 1 - t]
            out += z[:, i:i + out.shape[1], j:j + out.shape[2]] * k[kh - 1 - i, kw - 1 - j]
    return out[:, ::downy, ::downx]


def np_corr_valid(x, w, stride=1):
    """NHWC cross-correlation with HWIO w, VALID (what tf.nn.conv2d computes)."""
    kk = w.shape[0]
    oh, ow = (x.shape[1] - kk) // stride + 1, (x.shape[2] - kk) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kk):
        for j in range(kk):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            out += np.einsum("nhwc,co->nhwo", patch, w[i, j])
    return out


def nchw(x):
    return np.transpose(x, [0, 3, 1, 2])


# (up x, up y, down x, down y, padx0, padx1, pady0, pady1), kernel shape, input shape.
UPFIRDN_CASES = [
    ((1, 1, 1, 1, 0, 0, 0, 0), (1, 1), (2, 5, 7, 3)),
    ((2, 2, 1, 1, 2, 1, 2, 1), (4, 4), (2, 5, 7, 3)),
    ((1, 1, 2, 2, 1, 1, 1, 1), (4, 4), (1, 9, 8, 16)),
    ((4, 4, 1, 1, 3, 2, 1, 4), (5, 5), (2, 3, 4, 1)),
    ((1, 1, 4, 4, 0, 3, 2, 1), (3, 3), (1, 11, 13, 2)),
    ((2, 1, 1, 2, -1, 2, 3, -2), (2, 5), (2, 7, 6, 9)),
    ((1, 4, 2, 1, 2, -1, -2, 0), (5, 3), (3, 5, 9, 1)),
    ((2, 2, 2, 2, 1, 2, 2, 1), (3, 4), (1, 6, 5, 24)),
]


@pytest.mark.parametrize("args,kshape,xshape", UPFIRDN_CASES)
def test_reference_matches_the_definition(args, kshape, xshape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xshape)
    k = rng.standard_normal(kshape)
    want = np_upfirdn_2d(x, k, *args)
    got = ops.upfirdn_2d(tf.constant(x, tf.float32), k, *args, impl="ref").numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _grads_to_second_order(fn, x):
    """Value, d/dx sum(sin(y)), and d/dx sum((d/dx sum(sin(y)))**2) for y = fn(x)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(tf.sin(tf.cast(y, tf.float32)))
        g = inner.gradient(loss, x)
        penalty = tf.reduce_sum(tf.cast(g, tf.float32) ** 2)
    return y, g, outer.gradient(penalty, x)


@pytest.mark.parametrize("args,kshape,xshape", UPFIRDN_CASES)
def test_custom_matches_reference_with_gradients(args, kshape, xshape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(xshape).astype(np.float32)
    k = rng.standard_normal(kshape)
    ref = _grads_to_second_order(lambda t: ops.upfirdn_2d(t, k, *args, impl="ref"), x)
    custom = _grads_to_second_order(lambda t: ops.upfirdn_2d(t, k, *args, impl="custom"), x)
    for r, c in zip(ref, custom):
        np.testing.assert_allclose(c.numpy(), r.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("args,kshape,xshape", UPFIRDN_CASES[1:4])
def test_custom_float16_matches_float32_reference(args, kshape, xshape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xshape)
    k = rng.uniform(0, 1, kshape)
    want = ops.upfirdn_2d(tf.constant(x, tf.float32), k, *args, impl="ref").numpy()
    got = ops.upfirdn_2d(tf.constant(x, tf.float16), k, *args, impl="custom")
    assert got.dtype == tf.float16
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-2, atol=1e-2 * np.abs(want).max())
    _, g, gg = _grads_to_second_order(lambda t: ops.upfirdn_2d(t, k, *args, impl="custom"),
                                      x.astype(np.float16))
    assert g.dtype == tf.float16 and gg.dtype == tf.float16


def test_custom_op_has_static_output_shape_in_a_graph():
    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    def f(x):
        y = ops.upfirdn_2d(x, np.ones([4, 4]), upx=2, upy=2, padx0=2, padx1=1, pady0=2, pady1=1,
                           impl="custom")
        assert y.shape.as_list() == [None, 16, 16, 3]
        return y
    assert f(tf.zeros([2, 8, 8, 3])).shape == (2, 16, 16, 3)


def test_custom_second_order_gradients_inside_tf_function_with_unknown_batch():
    k = np.outer(K4, K4) / 16

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 4], tf.float32)])
    def penalty_grad(x):
        return _grads_to_second_order(
            lambda t: ops.upfirdn_2d(t, k, upx=2, upy=2, padx0=2, padx1=1, pady0=2, pady1=1,
                                     impl="custom"), x)[2]

    x = np.random.default_rng(6).standard_normal((2, 6, 6, 4)).astype(np.float32)
    want = _grads_to_second_order(
        lambda t: ops.upfirdn_2d(t, k, upx=2, upy=2, padx0=2, padx1=1, pady0=2, pady1=1,
                                 impl="ref"), x)[2]
    np.testing.assert_allclose(penalty_grad(x).numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_kernel_larger_than_padded_input_is_an_error():
    with pytest.raises(StyleGANTLError, match="smaller than the kernel"):
        ops.upfirdn_2d(tf.zeros([1, 2, 2, 1]), np.ones([4, 4]), impl="ref")


def test_setup_kernel_outer_product_normalised():
    k = ops.setup_kernel(K4)
    np.testing.assert_allclose(k, np.outer(K4, K4) / 64)
    np.testing.assert_allclose(ops.setup_kernel([[1, 2], [3, 4]]), [[0.1, 0.2], [0.3, 0.4]])
    with pytest.raises(StyleGANTLError):
        ops.setup_kernel(np.ones([2, 3]))


def _helper_cases(rng):
    """(name, fn(x, data_format, impl), numpy definition on NHWC) of every helper."""
    k = np.outer(K4, K4) / 64
    w = rng.standard_normal((3, 3, 4, 5))
    w1 = rng.standard_normal((1, 1, 4, 5))
    return [
        ("upsample_2d", lambda x, f, i: ops.upsample_2d(x, K4, data_format=f, impl=i),
         lambda x: np_upfirdn_2d(x, 4 * k, 2, 2, 1, 1, 2, 1, 2, 1)),
        ("upsample_2d gain 3 factor 4 box", lambda x, f, i: ops.upsample_2d(
            x, factor=4, gain=3, data_format=f, impl=i),
         lambda x: np_upfirdn_2d(x, 3 * np.ones([4, 4]), 4, 4, 1, 1, 3, 0, 3, 0)),
        ("downsample_2d", lambda x, f, i: ops.downsample_2d(x, K4, data_format=f, impl=i),
         lambda x: np_upfirdn_2d(x, k, 1, 1, 2, 2, 1, 1, 1, 1)),
        ("filter_2d", lambda x, f, i: ops.filter_2d(x, K4, gain=2, data_format=f, impl=i),
         lambda x: np_upfirdn_2d(x, 2 * k, 1, 1, 1, 1, 2, 1, 2, 1)),
        ("upsample_conv_2d 3x3", lambda x, f, i: ops.upsample_conv_2d(
            x, w, K4, data_format=f, impl=i),
         lambda x: np_corr_valid(np_upfirdn_2d(x, 4 * k, 2, 2, 1, 1, 3, 2, 3, 2), w)),
        ("upsample_conv_2d 1x1", lambda x, f, i: ops.upsample_conv_2d(
            x, w1, K4, data_format=f, impl=i),
         lambda x: np_corr_valid(np_upfirdn_2d(x, 4 * k, 2, 2, 1, 1, 2, 1, 2, 1), w1)),
        ("conv_downsample_2d 3x3", lambda x, f, i: ops.conv_downsample_2d(
            x, w, K4, data_format=f, impl=i),
         lambda x: np_corr_valid(np_upfirdn_2d(x, k, 1, 1, 1, 1, 2, 2, 2, 2), w, 2)),
        ("conv_downsample_2d 1x1", lambda x, f, i: ops.conv_downsample_2d(
            x, w1, K4, data_format=f, impl=i),
         lambda x: np_corr_valid(np_upfirdn_2d(x, k, 1, 1, 2, 2, 1, 1, 1, 1), w1)),
    ]


@pytest.mark.parametrize("case", range(8))
def test_helpers_match_definitions_in_both_layouts_and_impls(case):
    rng = np.random.default_rng(4)
    name, fn, definition = _helper_cases(rng)[case]
    x = rng.standard_normal((2, 6, 8, 4))
    want = definition(x)
    for impl in ("ref", "custom"):
        nhwc = fn(tf.constant(x, tf.float32), "NHWC", impl).numpy()
        nchw_out = fn(tf.constant(nchw(x), tf.float32), "NCHW", impl).numpy()
        np.testing.assert_allclose(nhwc, want, rtol=1e-4, atol=1e-4, err_msg=f"{name} {impl}")
        np.testing.assert_allclose(nchw_out, nchw(want), rtol=1e-4, atol=1e-4,
                                   err_msg=f"{name} {impl} NCHW")


@pytest.mark.parametrize("case", [0, 2, 4, 6])
def test_helper_gradients_custom_vs_ref(case):
    rng = np.random.default_rng(5)
    _, fn, _ = _helper_cases(rng)[case]
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)  # NCHW
    ref = _grads_to_second_order(lambda t: fn(t, "NCHW", "ref"), x)
    custom = _grads_to_second_order(lambda t: fn(t, "NCHW", "custom"), x)
    for r, c in zip(ref, custom):
        np.testing.assert_allclose(c.numpy(), r.numpy(), rtol=1e-4, atol=1e-4)


def test_bad_data_format_is_an_error():
    with pytest.raises(StyleGANTLError, match="data_format"):
        ops.upsample_2d(tf.zeros([1, 1, 4, 4]), data_format="CHWN")
