"""Shared maths of the StyleGAN family: small pure functions, then small layer modules.

Layouts: every function here computes in **NHWC** (TF's CPU convolutions are NHWC-only); the
networks keep NCHW at their public inputs/outputs and convert with :func:`nchw_to_nhwc` /
:func:`nhwc_to_nchw`. Variables keep NVIDIA's layouts: conv weights ``[k, k, in, out]`` (HWIO),
dense weights ``[in, out]``, noise inputs ``[1, 1, H, W]``, scalars 0-d.

Equalized learning rate (spec 2.1): variables are stored unscaled and multiplied at run time by
``gain / sqrt(fan_in) * lrmul`` (weights) or ``lrmul`` (biases); see :func:`weight_scale`.
"""

import collections
import functools

import numpy as np
import tensorflow as tf

from . import ops
from .errors import StyleGANTLError

# --------------------------------------------------------------------------------------------------
# Static kwargs.


def resolve_static_kwargs(func_name, given, defaults, also_allowed=()):
    """Complete ``given`` with NVIDIA's ``defaults`` for build function ``func_name``.

    Args:
        func_name: e.g. ``'G_synthesis_stylegan2'`` (used in the error message).
        given: the static kwargs found in the pickle / passed to ``from_config``.
        defaults: the build function's keyword defaults.
        also_allowed: names accepted and ignored (kwargs NVIDIA forwards from a parent network).
    Returns:
        A new dict: defaults updated with ``given``.
    Raises:
        StyleGANTLError naming every unknown kwarg.
    """
    unknown = sorted(set(given) - set(defaults) - set(also_allowed))
    if unknown:
        raise StyleGANTLError(f"{func_name}: unknown static kwargs {', '.join(unknown)}")
    merged = dict(defaults)
    merged.update(given)
    return merged


# --------------------------------------------------------------------------------------------------
# Layout helpers.


def nchw_to_nhwc(x):
    """[N, C, H, W] -> [N, H, W, C]."""
    return tf.transpose(x, [0, 2, 3, 1])


def nhwc_to_nchw(x):
    """[N, H, W, C] -> [N, C, H, W]."""
    return tf.transpose(x, [0, 3, 1, 2])


def flatten_nchw(x):
    """NHWC [N, H, W, C] -> [N, C*H*W] flattened in NCHW order (row = c*H*W + h*W + w), as NVIDIA's
    dense layers flatten their NCHW input."""
    return tf.reshape(nhwc_to_nchw(x), [tf.shape(x)[0], -1])


# --------------------------------------------------------------------------------------------------
# Pure maths.


def weight_scale(shape, gain=1.0, use_wscale=True, lrmul=1.0):
    """Equalized-lr constants of a weight of ``shape`` (fan_in = prod(shape[:-1])).

    Returns:
        ``(init_std, runtime_coef)``: stored values are drawn from N(0, init_std) and multiplied by
        runtime_coef in the forward pass.
    """
    fan_in = float(np.prod(shape[:-1]))
    he_std = gain / np.sqrt(fan_in)
    if use_wscale:
        return 1.0 / lrmul, he_std * lrmul
    return he_std / lrmul, lrmul


def labels_or_zeros(labels, batch_of, label_size):
    """``labels`` as float32 [N, label_size], or zeros of that shape when None (NVIDIA feeds zeros for
    a None input), N taken from the first axis of ``batch_of``."""
    if labels is None:
        return tf.zeros([tf.shape(batch_of)[0], label_size], tf.float32)
    return tf.cast(labels, tf.float32)


def lerp(a, b, t):
    """``a + (b - a) * t`` (NVIDIA's ``tflib.lerp``)."""
    return a + (b - a) * t


def normalize_2nd_moment(x, axis=1, eps=1e-8):
    """``x * rsqrt(mean(x**2, axis) + eps)`` (StyleGAN's pixel norm / latent normalisation)."""
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=axis, keepdims=True) + eps)


def bias_act(x, b=None, act="linear", lrmul=1.0, alpha=None, gain=None, clamp=None):
    """``clip(act(x + b*lrmul) * gain, +-clamp)`` along the LAST axis (NHWC channels / dense features).

    Defaults of ``alpha`` / ``gain`` are the activation's (lrelu: 0.2, sqrt(2)); see ``ops.fused_bias_act``.
    """
    if b is not None and lrmul != 1:
        b = b * lrmul
    return ops.fused_bias_act(x, b, axis=x.shape.rank - 1, act=act, alpha=alpha, gain=gain, clamp=clamp)


def conv2d_resample(x, w, up=False, down=False, resample_kernel=None):
    """StyleGAN2 convolution of NHWC ``x`` with HWIO ``w``: SAME conv, or FIR up-conv / conv-down by 2.

    Args:
        x: [N, H, W, I] NHWC (float32 or float16). w: [k, k, I, O] runtime weight (cast to x's dtype).
        up: zero-insert upsample x2 + FIR ``resample_kernel`` + conv (``ops.upsample_conv_2d``).
        down: FIR + conv at stride 2 (``ops.conv_downsample_2d``).
    Returns:
        [N, H', W', O] NHWC, dtype of ``x``.
    """
    w = tf.cast(w, x.dtype)
    if up:
        return ops.upsample_conv_2d(x, w, k=resample_kernel, data_format="NHWC")
    if down:
        return ops.conv_downsample_2d(x, w, k=resample_kernel, data_format="NHWC")
    return tf.nn.conv2d(x, w, strides=1, padding="SAME")


def modulated_conv2d(x, w, styles, demodulate=True, fused_modconv=True, up=False, down=False,
                     resample_kernel=None):
    """StyleGAN2 modulated convolution (spec 4.3).

    Args:
        x: [N, H, W, I] NHWC activations, float32 or float16.
        w: [k, k, I, O] runtime (already equalized-lr scaled) float32 weight.
        styles: [N, I] float32 per-sample input-channel scales (``affine(w) + 1``).
        demodulate: normalise each output channel's per-sample weight to unit norm (eps 1e-8).
        fused_modconv: True = per-sample weights ``w * s * d`` (NVIDIA's grouped conv: one grouped
            conv when TF supports it, else one conv per sample, which up/down-sampling layers always
            use); False = ``conv(x * s, w) * d``. Mathematically identical. A float16 ``x`` always
            takes the non-fused form with ADA's overflow guard: ``w`` pre-scaled by
            ``1/sqrt(fan_in)/max|w|`` per output channel and ``styles`` by ``1/max|styles|``
            (demodulation cancels both); styles and demodulation are computed in float32.
        up / down / resample_kernel: see :func:`conv2d_resample`.
    Returns:
        [N, H', W', O] NHWC, dtype of ``x``.
    """
    if x.dtype != tf.float32:
        if demodulate:
            w = w * (1 / np.sqrt(np.prod(w.shape[:-1]))) / tf.reduce_max(tf.abs(w), axis=[0, 1, 2])
            styles = styles / tf.reduce_max(tf.abs(styles))
        fused_modconv = False
    ww = w[tf.newaxis] * styles[:, tf.newaxis, tf.newaxis, :, tf.newaxis]  # [N, k, k, I, O]
    if demodulate:
        d = tf.math.rsqrt(tf.reduce_sum(tf.square(ww), axis=[1, 2, 3]) + 1e-8)  # [N, O]
    if fused_modconv:
        if demodulate:
            ww = ww * d[:, tf.newaxis, tf.newaxis, tf.newaxis, :]
        if not down and grouped_conv_supported():
            return _grouped_conv2d(x, ww, up, resample_kernel)
        per_sample = tf.autograph.experimental.do_not_convert(
            lambda xw: conv2d_resample(xw[0][tf.newaxis], xw[1], up, down, resample_kernel)[0])
        return tf.map_fn(per_sample, (x, ww), fn_output_signature=x.dtype)
    x = x * tf.cast(styles[:, tf.newaxis, tf.newaxis, :], x.dtype)
    x = conv2d_resample(x, w, up, down, resample_kernel)
    if demodulate:
        x = x * tf.cast(d[:, tf.newaxis, tf.newaxis, :], x.dtype)
    return x


@functools.lru_cache(maxsize=None)
def grouped_conv_supported():
    """Whether this TF build runs grouped convolutions with first and second derivatives.

    True with oneDNN (TF's default on x86 CPUs) and cuDNN; False with TF's Eigen CPU kernels
    (``TF_ENABLE_ONEDNN_OPTS=0``), where the fused modulated conv falls back to one conv per sample.
    """
    with tf.init_scope():
        x, w = tf.ones([1, 3, 3, 4]), tf.ones([3, 3, 2, 4])
        try:
            with tf.GradientTape() as outer:
                outer.watch(w)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    y = tf.reduce_sum(tf.square(tf.nn.conv2d(x, w, 1, "SAME")))
                penalty = tf.reduce_sum(tf.square(inner.gradient(y, x)))
            return outer.gradient(penalty, w) is not None
        except (tf.errors.OpError, ValueError):
            return False


def _grouped_conv2d(x, ww, up=False, resample_kernel=None):
    """Per-sample convolution as ONE grouped conv (NVIDIA's fused modconv): 'SAME', or up by 2.

    Up: the grouped transposed conv (stride 2, flipped kernel, 'VALID') followed by the FIR filter,
    exactly as ``ops.upsample_conv_2d`` does for one group.

    Args:
        x: [N, H, W, I] NHWC. ww: [N, k, k, I, O] per-sample weights.
    Returns:
        [N, H', W', O] NHWC: sample n convolved with ww[n].
    """
    n = tf.shape(x)[0]
    k, in_c, out_c = ww.shape[1], ww.shape[3], ww.shape[4]
    h, w = x.shape[1], x.shape[2]
    xg = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, -1])                       # [1, H, W, N*I]
    if up:
        wt = tf.reshape(tf.transpose(ww[:, ::-1, ::-1], [1, 2, 4, 0, 3]), [k, k, out_c, -1])  # [k, k, O, N*I]
        h, w = 2 * (h - 1) + k, 2 * (w - 1) + k
        y = tf.nn.conv2d_transpose(xg, wt, tf.stack([1, h, w, n * out_c]), strides=2, padding="VALID")
    else:
        wg = tf.reshape(tf.transpose(ww, [1, 2, 3, 0, 4]), [k, k, in_c, -1])            # [k, k, I, N*O]
        y = tf.nn.conv2d(xg, wg, strides=1, padding="SAME")                               # [1, H, W, N*O]
    y = tf.transpose(tf.reshape(y, [h, w, -1, out_c]), [2, 0, 1, 3])
    if up:
        fir = ops.setup_kernel([1, 1] if resample_kernel is None else resample_kernel) * 4
        p = fir.shape[0] - 2 - (k - 1)
        y = ops.upfirdn_2d(y, fir, padx0=(p + 1) // 2 + 1, padx1=p // 2 + 1, pady0=(p + 1) // 2 + 1,
                           pady1=p // 2 + 1)
    return y


def minibatch_stddev(x, group_size=4, num_new_features=1):
    """Minibatch standard deviation layer (spec 2.2), NHWC.

    Groups are strided like NVIDIA's reshape ``[G, M, ...]``: with G = min(group_size, N) and
    M = N / G, group m holds samples m, m+M, m+2M, ... ``group_size=None`` uses the whole batch.

    Args:
        x: [N, H, W, C] NHWC; N must be divisible by G.
    Returns:
        [N, H, W, C + num_new_features]: the per-group mean stddev appended as new channels.
    """
    n = tf.shape(x)[0]
    g = n if group_size is None else tf.minimum(group_size, n)
    _, h, w, c = x.shape
    f = num_new_features
    y = tf.reshape(tf.cast(x, tf.float32), [g, -1, h, w, f, c // f])
    y -= tf.reduce_mean(y, axis=0)
    y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + 1e-8)  # [M, H, W, F, c]
    y = tf.reduce_mean(y, axis=[1, 2, 4])  # [M, F]
    y = tf.tile(tf.reshape(tf.cast(y, x.dtype), [-1, 1, 1, f]), [g, h, w, 1])
    return tf.concat([x, y], axis=3)


def truncate(dlatents, dlatent_avg, psi, cutoff=None):
    """Truncation trick: ``W+[:, i] = avg + (W+[:, i] - avg) * psi`` for layers i < cutoff.

    Args:
        dlatents: [N, num_layers, w_dim]. dlatent_avg: [w_dim].
        psi: float or scalar tensor. cutoff: int, scalar tensor, or None (= every layer).
    """
    num_layers = dlatents.shape[1]
    if cutoff is None:
        layer_psi = tf.fill([1, num_layers, 1], tf.cast(psi, dlatents.dtype))
    else:
        layer_idx = tf.range(num_layers)[tf.newaxis, :, tf.newaxis]
        layer_psi = tf.where(layer_idx < cutoff, tf.cast(psi, dlatents.dtype),
                             tf.ones([], dlatents.dtype))
    return lerp(dlatent_avg, dlatents, layer_psi)


def style_mix(dlatents, dlatents2, prob, num_layers, cur_layers=None):
    """Style-mixing regularisation: with probability ``prob`` layers >= a random cutoff in
    [1, cur_layers) take ``dlatents2`` (else cutoff = cur_layers). Uses ``tf.random`` (graph RNG).

    Args:
        dlatents, dlatents2: [N, num_layers, w_dim]. cur_layers: int32 scalar (default num_layers).
    """
    cur_layers = num_layers if cur_layers is None else cur_layers
    layer_idx = tf.range(num_layers)[tf.newaxis, :, tf.newaxis]
    cutoff = tf.cond(tf.random.uniform([], 0.0, 1.0) < prob,
                     lambda: tf.random.uniform([], 1, cur_layers, dtype=tf.int32),
                     lambda: tf.cast(cur_layers, tf.int32))
    return tf.where(tf.broadcast_to(layer_idx < cutoff, tf.shape(dlatents)), dlatents, dlatents2)


# --------------------------------------------------------------------------------------------------
# Variables.


class Params:
    """Creates one network's own variables in NVIDIA creation order, names and initialisation.

    ``params.vars`` is an OrderedDict local name -> tf.Variable (float32). Random initial values come
    from ``numpy.random.RandomState(seed)``, so the same seed gives the same network.
    """

    def __init__(self, seed=0):
        self.vars = collections.OrderedDict()
        self._rng = np.random.RandomState(seed)

    def add(self, name, value, trainable=True):
        """Create variable ``name`` with initial numpy ``value``; returns the tf.Variable."""
        if name in self.vars:
            raise StyleGANTLError(f"variable {name!r} created twice")
        var = tf.Variable(np.asarray(value, dtype=np.float32), trainable=trainable,
                          name=name.replace("/", "_"))
        self.vars[name] = var
        return var

    def normal(self, name, shape, std=1.0, trainable=True):
        """Variable drawn from N(0, std**2)."""
        return self.add(name, self._rng.standard_normal(shape) * std, trainable)

    def zeros(self, name, shape, trainable=True):
        return self.add(name, np.zeros(shape), trainable)

    def ones(self, name, shape, trainable=True):
        return self.add(name, np.ones(shape), trainable)

    def weight(self, name, shape, gain=1.0, use_wscale=True, lrmul=1.0, trainable=True):
        """Equalized-lr weight: returns ``(variable, runtime_coef)``."""
        init_std, coef = weight_scale(shape, gain, use_wscale, lrmul)
        return self.normal(name, shape, init_std, trainable), coef


# --------------------------------------------------------------------------------------------------
# Layers (tf.Modules over Params; NHWC compute).


class Dense(tf.Module):
    """Equalized-lr dense layer ``act(x @ (W*coef) + b*lrmul) * gain``.

    Variables: ``<scope>/weight [in, out]`` then (if ``use_bias``) ``<scope>/bias [out]``.
    Call: x [N, in] (a 4-D NHWC input is flattened in NCHW order first) -> [N, out], dtype of x.
    """

    def __init__(self, params, scope, in_features, out_features, gain=1.0, lrmul=1.0, act="linear",
                 use_bias=True, clamp=None, trainable=True, weight_name="weight", bias_name="bias"):
        super().__init__(name=None)
        self.act, self.lrmul, self.clamp = act, lrmul, clamp
        self.weight, self.coef = params.weight(f"{scope}/{weight_name}", [in_features, out_features],
                                               gain=gain, lrmul=lrmul, trainable=trainable)
        self.bias = params.zeros(f"{scope}/{bias_name}", [out_features], trainable) if use_bias else None

    def __call__(self, x):
        if x.shape.rank == 4:
            x = flatten_nchw(x)
        x = tf.matmul(x, tf.cast(self.weight * self.coef, x.dtype))
        return bias_act(x, self.bias, self.act, self.lrmul, clamp=self.clamp)


class Conv2d(tf.Module):
    """Equalized-lr conv ``act(conv(x, W*coef) + b) * gain``, optionally with FIR up/down by 2.

    Variables: ``<scope>/weight [k, k, in, out]`` then (if ``use_bias``) ``<scope>/bias [out]``.
    Call: x [N, H, W, in] NHWC (float32 or float16) -> [N, H', W', out] NHWC, dtype of x.
    ``clamp`` may be changed after construction (mixed precision sets it).
    """

    def __init__(self, params, scope, in_channels, out_channels, kernel, gain=1.0, act="linear",
                 use_bias=True, up=False, down=False, resample_kernel=None, clamp=None,
                 trainable=True):
        super().__init__(name=None)
        self.act, self.up, self.down, self.clamp = act, up, down, clamp
        self.resample_kernel = resample_kernel
        self.weight, self.coef = params.weight(f"{scope}/weight", [kernel, kernel, in_channels, out_channels],
                                               gain=gain, trainable=trainable)
        self.bias = params.zeros(f"{scope}/bias", [out_channels], trainable) if use_bias else None

    def __call__(self, x):
        x = conv2d_resample(x, self.weight * self.coef, self.up, self.down, self.resample_kernel)
        if self.bias is None and self.act == "linear":
            return x
        return bias_act(x, self.bias, self.act, clamp=self.clamp)


class ModulatedConv2d(tf.Module):
    """StyleGAN2 modulated conv with its style affine.

    Variables (NVIDIA order): ``<scope>/weight [k, k, in, out]``, ``<scope>/mod_weight [w_dim, in]``,
    ``<scope>/mod_bias [in]`` (the style is ``w @ mod_weight*coef + mod_bias + 1``, float32).
    Call: x [N, H, W, in] NHWC (float32 or float16), w [N, w_dim] float32, fused_modconv (bool)
    -> [N, H', W', out] NHWC, dtype of x.
    """

    def __init__(self, params, scope, in_channels, out_channels, kernel, w_dim, demodulate=True,
                 up=False, resample_kernel=None):
        super().__init__(name=None)
        self.demodulate, self.up, self.resample_kernel = demodulate, up, resample_kernel
        self.weight, self.coef = params.weight(f"{scope}/weight", [kernel, kernel, in_channels, out_channels])
        self.affine = Dense(params, scope, w_dim, in_channels, weight_name="mod_weight",
                            bias_name="mod_bias")

    def __call__(self, x, w, fused_modconv):
        styles = self.affine(w) + 1.0
        return modulated_conv2d(x, self.weight * self.coef, styles, demodulate=self.demodulate,
                                fused_modconv=fused_modconv, up=self.up,
                                resample_kernel=self.resample_kernel)
