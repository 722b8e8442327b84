"""fused_bias_act: the activation table, the reference vs numpy formulas, the custom op vs the
reference (values, first- and second-order gradients, bias axis, clamp, float16)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from stylegan_tl import ops
from stylegan_tl.errors import StyleGANTLError

SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


NUMPY_ACTS = {
    "linear": lambda v, a: v,
    "relu": lambda v, a: np.maximum(v, 0),
    "lrelu": lambda v, a: np.where(v > 0, v, a * v),
    "tanh": lambda v, a: np.tanh(v),
    "sigmoid": lambda v, a: _sigmoid(v),
    "elu": lambda v, a: np.where(v > 0, v, np.expm1(v)),
    "selu": lambda v, a: SELU_SCALE * np.where(v > 0, v, SELU_ALPHA * np.expm1(v)),
    "softplus": lambda v, a: np.log1p(np.exp(v)),
    "swish": lambda v, a: v * _sigmoid(v),
}


def test_activation_table_defaults():
    assert set(ops.ACTIVATIONS) == set(NUMPY_ACTS)
    sqrt2 = math.sqrt(2)
    gains = {"linear": 1, "relu": sqrt2, "lrelu": sqrt2, "tanh": 1, "sigmoid": 1, "elu": 1,
             "selu": 1, "softplus": 1, "swish": sqrt2}
    for name, spec in ops.ACTIVATIONS.items():
        assert spec.def_gain == pytest.approx(gains[name]), name
    assert ops.ACTIVATIONS["lrelu"].def_alpha == pytest.approx(0.2)


@pytest.mark.parametrize("act", sorted(NUMPY_ACTS))
@pytest.mark.parametrize("impl", ["ref", "custom"])
def test_matches_numpy_formula_with_defaults_and_clamp(act, impl):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)) * 2
    b = rng.standard_normal(4)
    spec = ops.ACTIVATIONS[act]
    v = x + b[None, :, None]
    want = NUMPY_ACTS[act](v, spec.def_alpha) * spec.def_gain
    got = ops.fused_bias_act(tf.constant(x, tf.float32), b, act=act, impl=impl)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    got = ops.fused_bias_act(tf.constant(x, tf.float32), b, act=act, alpha=0.3, gain=0.7,
                             clamp=0.5, impl=impl)
    want = np.clip(NUMPY_ACTS[act](v, 0.3) * 0.7, -0.5, 0.5)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def _value_and_grads(impl, x, b, **kwargs):
    """y, dL/dx, dL/db, and the gradients of |dL/dx|^2 + |dL/db|^2 (second order)."""
    x, b = tf.constant(x), tf.constant(b)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch([x, b])
        with tf.GradientTape() as inner:
            inner.watch([x, b])
            y = ops.fused_bias_act(x, b, impl=impl, **kwargs)
            loss = tf.reduce_sum(y * tf.cos(x))
        gx, gb = inner.gradient(loss, [x, b])
        penalty = tf.reduce_sum(gx ** 2) + tf.reduce_sum(gb ** 2)
    ggx, ggb = outer.gradient(penalty, [x, b], unconnected_gradients="zero")
    return [y, gx, gb, ggx, ggb]


@pytest.mark.parametrize("act", sorted(NUMPY_ACTS))
@pytest.mark.parametrize("params", [{}, {"alpha": 0.1, "gain": 1.7, "clamp": 0.8}],
                         ids=["defaults", "explicit"])
@pytest.mark.parametrize("axis", [1, -1])
def test_custom_matches_reference_with_gradients(act, params, axis):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 6, 3, 5)) * 1.5).astype(np.float32)
    b = rng.standard_normal(x.shape[axis]).astype(np.float32)
    ref = _value_and_grads("ref", x, b, act=act, axis=axis, **params)
    custom = _value_and_grads("custom", x, b, act=act, axis=axis, **params)
    for name, r, c in zip(["y", "dx", "db", "ddx", "ddb"], ref, custom):
        np.testing.assert_allclose(c.numpy(), r.numpy(), rtol=2e-4, atol=2e-4,
                                   err_msg=f"{act} {name}")


@pytest.mark.parametrize("impl", ["ref", "custom"])
def test_no_bias_and_dense_layout(impl):
    x = tf.constant([[-1.0, 2.0], [3.0, -4.0]])
    y = ops.fused_bias_act(x, act="lrelu", impl=impl)
    np.testing.assert_allclose(y.numpy(), np.where(x > 0, x, 0.2 * x) * math.sqrt(2), rtol=1e-6)


@pytest.mark.parametrize("act", ["lrelu", "linear", "swish"])
def test_custom_float16_computes_like_float32(act):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 4, 4))
    b = rng.standard_normal(8)
    want = ops.fused_bias_act(tf.constant(x, tf.float32), b, act=act, clamp=1.0, impl="ref")
    got = ops.fused_bias_act(tf.constant(x, tf.float16), b, act=act, clamp=1.0, impl="custom")
    assert got.dtype == tf.float16
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-3, atol=2e-3)
    _, gx, gb, ggx, _ = _value_and_grads("custom", x.astype(np.float16), b.astype(np.float16),
                                         act=act)
    _, rx, rb, rrx, _ = _value_and_grads("ref", x.astype(np.float32), b.astype(np.float32),
                                         act=act)
    for c, r in [(gx, rx), (gb, rb), (ggx, rrx)]:
        assert c.dtype == tf.float16
        np.testing.assert_allclose(c.numpy(), r.numpy(), rtol=2e-2, atol=2e-2 * np.abs(r).max())


def test_custom_third_order_gradient_is_a_clear_error():
    x = tf.constant([[0.5, -1.0]])
    with tf.GradientTape() as t3:
        t3.watch(x)
        with tf.GradientTape() as t2:
            t2.watch(x)
            with tf.GradientTape() as t1:
                t1.watch(x)
                y = tf.reduce_sum(ops.fused_bias_act(x, act="swish", impl="custom"))
            g1 = tf.reduce_sum(t1.gradient(y, x))
        g2 = tf.reduce_sum(t2.gradient(g1, x))
    with pytest.raises(StyleGANTLError, match="second order"):
        t3.gradient(g2, x)


def test_custom_op_works_inside_tf_function_with_static_shape():
    @tf.function(input_signature=[tf.TensorSpec([None, 3, 4, 4], tf.float32)])
    def f(x):
        y = ops.fused_bias_act(x, tf.ones([3]), act="lrelu", impl="custom")
        assert y.shape.as_list() == [None, 3, 4, 4]
        return y
    assert f(tf.zeros([2, 3, 4, 4])).shape == (2, 3, 4, 4)


def test_bad_arguments_are_errors():
    with pytest.raises(StyleGANTLError, match="unknown activation"):
        ops.fused_bias_act(tf.zeros([1, 2]), act="gelu")
    with pytest.raises(StyleGANTLError, match="b has length"):
        ops.fused_bias_act(tf.zeros([1, 2]), tf.zeros([3]))
    with pytest.raises(StyleGANTLError, match="impl"):
        ops.fused_bias_act(tf.zeros([1, 2]), impl="fast")
