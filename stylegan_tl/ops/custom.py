"""Python side of the compiled ops: calls into the library and their registered gradients.

Gradients are expressed with the same ops, so they are differentiable again:
- ``StyleganTlUpfirdn2d``: the gradient is upfirdn_2d of the upstream gradient with the flipped
  kernel, up and down swapped and pads derived from the forward sizes (any order).
- ``StyleganTlFusedBiasAct``: mode ``grad=1`` (first derivative times the upstream gradient,
  evaluated at the forward input) and ``grad=2`` (second derivative) give first and second order.
"""

import tensorflow as tf

from ..errors import StyleGANTLError
from .impl import load_library


def fused_bias_act(x, b, axis, act_code, alpha, gain, clamp):
    """Forward custom op. ``b`` may be empty ``[0]``; ``clamp < 0`` disables clamping."""
    return _fba(x, b, tf.zeros([0], x.dtype), 0, axis, act_code, alpha, gain, clamp)


def _fba(x, b, xref, grad, axis, act, alpha, gain, clamp):
    return load_library().stylegan_tl_fused_bias_act(
        x=x, b=b, xref=xref, grad=grad, axis=axis, act=act, alpha=alpha, gain=gain, clamp=clamp)


def _reduce_to_bias(dx, b, axis):
    """Sum ``dx`` over every axis but ``axis`` (the bias gradient); empty when there is no bias."""
    if b.shape[0] == 0:
        return tf.zeros_like(b)
    rank = dx.shape.rank
    return tf.reduce_sum(dx, axis=[i for i in range(rank) if i != axis % rank])


@tf.RegisterGradient("StyleganTlFusedBiasAct")
def _fused_bias_act_grad(op, dy):
    x, b, xref = op.inputs
    attrs = {name: op.get_attr(name) for name in ("axis", "act", "alpha", "gain", "clamp")}
    mode = op.get_attr("grad")
    if mode == 0:  # y = f(x + b)
        dx = _fba(dy, b, x, 1, **attrs)
        return [dx, _reduce_to_bias(dx, b, attrs["axis"]), None]
    if mode == 1:  # y = d * f'(r + b), inputs (d, b, r)
        d_d = _fba(dy, b, xref, 1, **attrs)
        d_r = _fba(dy * x, b, xref, 2, **attrs)
        return [d_d, _reduce_to_bias(d_r, b, attrs["axis"]), d_r]
    raise StyleGANTLError("fused_bias_act(impl='custom') supports gradients up to second order; "
                          "use impl='ref' for higher orders")


def upfirdn_2d(x, k, upx, upy, downx, downy, padx0, padx1, pady0, pady1):
    """Forward custom op; ``x`` [major, H, W, minor], ``k`` 2-D numpy kernel (used as given)."""
    return load_library().stylegan_tl_upfirdn2d(
        x=x, k=tf.constant(k, tf.float32), upx=upx, upy=upy, downx=downx, downy=downy,
        padx0=padx0, padx1=padx1, pady0=pady0, pady1=pady1)


@tf.RegisterGradient("StyleganTlUpfirdn2d")
def _upfirdn_2d_grad(op, dy):
    x, k = op.inputs
    a = {name: op.get_attr(name) for name in
         ("upx", "upy", "downx", "downy", "padx0", "padx1", "pady0", "pady1")}
    in_h, in_w = x.shape[1], x.shape[2]
    out_h, out_w = op.outputs[0].shape[1], op.outputs[0].shape[2]
    kh, kw = k.shape
    if None in (in_h, in_w, out_h, out_w, kh, kw):
        raise StyleGANTLError("upfirdn_2d(impl='custom') needs static spatial sizes for gradients")
    # Adjoint per axis: flipped kernel, up <-> down, first pad taps-1-pad0, last pad chosen so the
    # result has the input's size.
    pady0 = kh - 1 - a["pady0"]
    padx0 = kw - 1 - a["padx0"]
    dx = load_library().stylegan_tl_upfirdn2d(
        x=dy, k=tf.reverse(k, [0, 1]), upx=a["downx"], upy=a["downy"], downx=a["upx"],
        downy=a["upy"], padx0=padx0, padx1=in_w * a["upx"] - out_w * a["downx"] - padx0 + kw - 1,
        pady0=pady0, pady1=in_h * a["upy"] - out_h * a["downy"] - pady0 + kh - 1)
    return [dx, None]
