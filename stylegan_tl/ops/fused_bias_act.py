"""Bias + activation + gain (+ clamp) in one op: ``y = clip(act(x + b) * gain, -clamp, clamp)``.

Semantics follow StyleGAN2(-ADA)'s ``fused_bias_act`` (spec section 4.5).
"""

import collections
import math

import tensorflow as tf

from ..errors import StyleGANTLError
from .impl import resolve_impl

ActSpec = collections.namedtuple("ActSpec", "code def_alpha def_gain")

#: name -> (integer code used by the C++/CUDA kernels, default alpha, default gain).
ACTIVATIONS = {
    "linear":   ActSpec(0, 0.0, 1.0),
    "relu":     ActSpec(1, 0.0, math.sqrt(2)),
    "lrelu":    ActSpec(2, 0.2, math.sqrt(2)),
    "tanh":     ActSpec(3, 0.0, 1.0),
    "sigmoid":  ActSpec(4, 0.0, 1.0),
    "elu":      ActSpec(5, 0.0, 1.0),
    "selu":     ActSpec(6, 0.0, 1.0),
    "softplus": ActSpec(7, 0.0, 1.0),
    "swish":    ActSpec(8, 0.0, math.sqrt(2)),
}

_REF_FUNCS = {
    "linear": lambda x, alpha: x,
    "relu": lambda x, alpha: tf.nn.relu(x),
    "lrelu": lambda x, alpha: tf.nn.leaky_relu(x, alpha),
    "tanh": lambda x, alpha: tf.nn.tanh(x),
    "sigmoid": lambda x, alpha: tf.nn.sigmoid(x),
    "elu": lambda x, alpha: tf.nn.elu(x),
    "selu": lambda x, alpha: tf.nn.selu(x),
    "softplus": lambda x, alpha: tf.nn.softplus(x),
    "swish": lambda x, alpha: tf.nn.sigmoid(x) * x,
}


def resolve_act_params(act, alpha, gain, clamp):
    """Return ``(ActSpec, alpha, gain, clamp)`` as floats with the activation's defaults filled in.

    ``clamp`` is returned as -1.0 when disabled (None).
    """
    if act not in ACTIVATIONS:
        raise StyleGANTLError(f"fused_bias_act: unknown activation {act!r} "
                              f"(expected one of {', '.join(ACTIVATIONS)})")
    spec = ACTIVATIONS[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    if clamp is not None and float(clamp) < 0:
        raise StyleGANTLError(f"fused_bias_act: clamp must be >= 0 or None, got {clamp}")
    clamp = -1.0 if clamp is None else float(clamp)
    return spec, alpha, gain, clamp


def fused_bias_act(x, b=None, axis=1, act="linear", alpha=None, gain=None, clamp=None,
                   impl="auto"):
    """Add bias ``b`` along ``axis`` of ``x``, apply ``act``, scale by ``gain``, clip to +-clamp.

    Args:
        x: tensor of any rank (float32 or float16), e.g. NCHW activations or [N, C] dense outputs.
        b: 1-D bias of length ``x.shape[axis]``, or None (no bias).
        axis: the axis of ``x`` the bias runs along (1 for NCHW/[N, C], -1 for NHWC).
        act: 'linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus' or 'swish'.
        alpha: slope for 'lrelu' (default 0.2); ignored by the other activations.
        gain: output scale; default sqrt(2) for relu/lrelu/swish, else 1.
        clamp: clip the output to [-clamp, clamp]; None disables.
        impl: 'ref', 'custom' or 'auto'.
    Returns:
        Tensor of the shape and dtype of ``x``. Differentiable to second order.
    """
    spec, alpha, gain, clamp = resolve_act_params(act, alpha, gain, clamp)
    x = tf.convert_to_tensor(x)
    if b is None:
        b = tf.zeros([0], dtype=x.dtype)
    b = tf.cast(tf.convert_to_tensor(b), x.dtype)
    rank = x.shape.rank
    if rank is None:
        raise StyleGANTLError("fused_bias_act: x must have a known rank")
    axis = axis % rank if rank else 0
    if b.shape.rank != 1:
        raise StyleGANTLError(f"fused_bias_act: b must be 1-D, got shape {b.shape}")
    if b.shape[0] not in (None, 0) and x.shape[axis] is not None and b.shape[0] != x.shape[axis]:
        raise StyleGANTLError(f"fused_bias_act: b has length {b.shape[0]} but x.shape[{axis}] is "
                              f"{x.shape[axis]}")
    if resolve_impl(impl) == "custom":
        from . import custom
        return custom.fused_bias_act(x, b, axis, spec.code, alpha, gain, clamp)
    return _fused_bias_act_ref(x, b, axis, act, alpha, gain, clamp)


def _fused_bias_act_ref(x, b, axis, act, alpha, gain, clamp):
    """Pure-TF reference; ``b`` may be empty; ``clamp < 0`` disables clipping."""
    if b.shape[0] != 0:
        shape = [-1 if i == axis else 1 for i in range(x.shape.rank)]
        x = x + tf.reshape(b, shape)
    x = _REF_FUNCS[act](x, alpha)
    if gain != 1:
        x = x * tf.cast(gain, x.dtype)
    if clamp >= 0:
        x = tf.clip_by_value(x, tf.cast(-clamp, x.dtype), tf.cast(clamp, x.dtype))
    return x
