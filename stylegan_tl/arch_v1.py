"""StyleGAN v1 networks (NVIDIA's ``training/networks_stylegan.py`` build functions) as TF2 modules.

Classes, named like the build functions they reproduce (see the docstring of each class)::

    G_style(static_kwargs, name='G', seed=0, mapping=None, synthesis=None)  z [N, Lz], labels -> NCHW images
    G_mapping(static_kwargs, name='G_mapping', seed=0)                     z [N, Lz], labels -> W [N, L, Dw]
    G_synthesis(static_kwargs, name='G_synthesis', seed=0)                 W+ [N, L, Dw] -> NCHW images
    D_basic(static_kwargs, name='D', seed=0)                               NCHW images, labels -> scores [N, 1]

(``L`` = num_layers = 2*log2(resolution) - 2; labels are [N, label_size] or None.)

Every module creates all its variables in ``__init__``, in NVIDIA's creation order, with NVIDIA's
local names, shapes (conv HWIO, dense [in, out], noise [1, 1, H, W]) and initialisation, drawn from
``np.random.RandomState(seed)``. ``own_vars`` holds them. Variables are stored unscaled; the
equalized-learning-rate coefficient is applied in the forward pass.

Images are NCHW float32 at the call boundary; computation is NHWC inside (TF's CPU convolutions are
NHWC-only). Every op is an ordinary differentiable TF op, so the networks work inside ``tf.function``
and ``tf.GradientTape`` to any order.

Reference: Karras et al., "A Style-Based Generator Architecture for GANs", CVPR 2019. Layer order,
names and formulas are those of NVIDIA's TF code (NVlabs/stylegan), re-derived from the project's
clean-room spec; outputs are checked against NVIDIA's in tests/test_fidelity.py.
"""

import numpy as np
import tensorflow as tf

from . import layers
from .errors import StyleGANTLError
from .layers import flatten_nchw, lerp, nchw_to_nhwc, nhwc_to_nchw, normalize_2nd_moment

# NVIDIA's defaults per build function (static kwargs not in a pickle take these values).
G_STYLE_DEFAULTS = dict(
    truncation_psi=0.7,           # style strength multiplier for the truncation trick; None = off
    truncation_cutoff=8,          # number of layers the truncation applies to; None = off (v1 quirk)
    truncation_psi_val=None,      # psi used when is_validation=True
    truncation_cutoff_val=None,   # cutoff used when is_validation=True
    dlatent_avg_beta=0.995,       # decay of the W moving average (training only); None = frozen
    style_mixing_prob=0.9,        # probability of style mixing (training only); None = off
    is_training=False,            # training mode: update dlatent_avg, style mixing, no truncation
    is_validation=False,          # validation mode: use the *_val truncation settings
    is_template_graph=False,      # NVIDIA's template-graph flag: linear structure, stored noise
)
G_MAPPING_DEFAULTS = dict(
    latent_size=512,              # Z dimensionality
    label_size=0,                 # label dimensionality, 0 = unconditional
    dlatent_size=512,             # W dimensionality
    dlatent_broadcast=None,       # output [N, dlatent_broadcast, Dw] instead of [N, Dw]
    mapping_layers=8,             # number of dense layers
    mapping_fmaps=512,            # width of the hidden dense layers
    mapping_lrmul=0.01,           # learning-rate multiplier of the mapping layers
    mapping_nonlinearity='lrelu',  # 'lrelu' or 'relu'
    use_wscale=True,              # equalized learning rate
    normalize_latents=True,       # pixel-normalise z (after label concatenation)
    dtype='float32',              # only float32 is supported here
)
G_SYNTHESIS_DEFAULTS = dict(
    dlatent_size=512,             # W dimensionality
    num_channels=3,               # output image channels
    resolution=1024,              # output resolution (power of two)
    fmap_base=8192,               # feature maps: min(fmap_base / 2^(stage*fmap_decay), fmap_max)
    fmap_decay=1.0,
    fmap_max=512,
    use_styles=True,              # style modulation (AdaIN); False = one W for the whole net
    const_input_layer=True,       # learned constant input; False = dense layer from W[0]
    use_noise=True,               # per-layer noise inputs
    randomize_noise=True,         # True = fresh noise each call; False = stored noise variables
    nonlinearity='lrelu',         # 'lrelu' or 'relu'
    use_wscale=True,              # equalized learning rate
    use_pixel_norm=False,         # pixel norm in the layer epilogue
    use_instance_norm=True,       # instance norm in the layer epilogue
    dtype='float32',              # only float32 is supported here
    fused_scale='auto',           # fused transposed up-conv: True, False, 'auto' (output >= 128 px)
    blur_filter=[1, 2, 1],        # low-pass filter after each up-conv; None = no blur
    structure='auto',             # 'fixed', 'linear', 'recursive'; 'auto' = recursive at run time
    is_template_graph=False,      # NVIDIA's template-graph flag (forces force_clean_graph)
    force_clean_graph=False,      # linear structure and stored noise
)
D_BASIC_DEFAULTS = dict(
    num_channels=1,               # input image channels
    resolution=32,                # input resolution (power of two)
    label_size=0,                 # label dimensionality, 0 = unconditional
    fmap_base=8192,               # feature maps as in G_synthesis
    fmap_decay=1.0,
    fmap_max=512,
    nonlinearity='lrelu',         # 'lrelu' or 'relu'
    use_wscale=True,              # equalized learning rate
    mbstd_group_size=4,           # minibatch-stddev group size; <= 1 = off
    mbstd_num_features=1,         # number of minibatch-stddev feature maps
    dtype='float32',              # only float32 is supported here
    fused_scale='auto',           # fused down-conv: True, False, 'auto' (input >= 128 px)
    blur_filter=[1, 2, 1],        # low-pass filter before each down-conv; None = no blur
    structure='auto',             # 'fixed', 'linear', 'recursive'; 'auto' = recursive at run time
    is_template_graph=False,      # NVIDIA's template-graph flag (linear structure)
)
# Every kwarg any v1 generator build function accepts (G_style forwards its kwargs to both components).
_G_KEYS = frozenset(G_STYLE_DEFAULTS) | frozenset(G_MAPPING_DEFAULTS) | frozenset(G_SYNTHESIS_DEFAULTS) | {
    'label_size', 'latent_size'}
_D_KEYS = frozenset(D_BASIC_DEFAULTS)
# Call-time kwargs any v1 network accepts: NVIDIA's Network hands every call kwarg to the build
# function, whose ``**_kwargs`` ignores the ones it does not use (e.g. truncation_psi given to D).
_FAMILY_KEYS = _G_KEYS | _D_KEYS
# Kwargs that may differ between construction and call (everything else fixes variable shapes).
_G_RUNTIME = frozenset(G_STYLE_DEFAULTS) | {'randomize_noise', 'structure', 'force_clean_graph'}
_D_RUNTIME = frozenset({'structure', 'is_template_graph'})

_LRELU_ALPHA = 0.2


# ---------------------------------------------------------------------------------------------------
# Maths (all NHWC)
# ---------------------------------------------------------------------------------------------------

def _activation(name):
    """NVIDIA's v1 nonlinearity by name: 'lrelu' (alpha 0.2) or 'relu'; both have gain sqrt(2)."""
    if name == 'lrelu':
        return lambda x: tf.nn.leaky_relu(x, alpha=_LRELU_ALPHA)
    if name == 'relu':
        return tf.nn.relu
    raise StyleGANTLError(f"unknown nonlinearity {name!r} (expected 'lrelu' or 'relu')")


def lod_blend(a, b, t):
    """NVIDIA's ``lerp_clip(a, b, t)`` = ``a + (b - a) * clip(t, 0, 1)``, but exactly ``a`` for t <= 0 and
    exactly ``b`` for t >= 1 (as NVIDIA's recursive structure gives), with no ``tf.cond``."""
    return tf.where(t <= 0, a, tf.where(t >= 1, b, lerp(a, b, t)))


def instance_norm(x, epsilon=1e-8):
    """Per sample and channel over H, W of NHWC x: subtract the mean, divide by the RMS (no affine)."""
    x = x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=[1, 2], keepdims=True) + epsilon)


def upscale2d(x, factor=2):
    """Nearest-neighbour upscale of NHWC x by an integer factor."""
    if factor == 1:
        return x
    s = tf.shape(x)
    c = x.shape[3]
    x = tf.reshape(x, [s[0], s[1], 1, s[2], 1, c])
    x = tf.tile(x, [1, 1, factor, 1, factor, 1])
    return tf.reshape(x, [s[0], s[1] * factor, s[2] * factor, c])


def downscale2d(x, factor=2):
    """Box-filter downscale of NHWC x by an integer factor (NVIDIA's ``downscale2d``)."""
    if factor == 1:
        return x
    return tf.nn.avg_pool2d(x, ksize=factor, strides=factor, padding='VALID')


def blur2d(x, taps):
    """Separable low-pass filter ``outer(taps, taps) / sum``, zero-padded SAME, on NHWC x (v1 ``blur2d``)."""
    f = np.asarray(taps, dtype=np.float32)
    f = np.outer(f, f) if f.ndim == 1 else f
    f = f / np.sum(f)
    c = x.shape[3]
    k = tf.constant(np.tile(f[:, :, np.newaxis, np.newaxis], [1, 1, c, 1]), dtype=x.dtype)
    return tf.nn.depthwise_conv2d(x, k, strides=[1, 1, 1, 1], padding='SAME')


def conv2d(x, w):
    """3x3 / 1x1 SAME convolution of NHWC x with runtime HWIO weight w."""
    return tf.nn.conv2d(x, w, strides=1, padding='SAME')


def _shifted_sum(w):
    """Zero-pad a [k, k, ...] kernel by one and sum its four shifted k+1 x k+1 windows."""
    w = tf.pad(w, [[1, 1], [1, 1], [0, 0], [0, 0]])
    return w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]


def upscale2d_conv2d(x, w, fused):
    """2x nearest upscale then SAME conv of NHWC x with HWIO w, or NVIDIA's fused transposed conv.

    The fused path (``conv2d_transpose`` with a 4x4 kernel built from w) equals nearest upscale followed
    by a SAME convolution with the spatially flipped kernel ``w[::-1, ::-1]``.
    """
    if not fused:
        return conv2d(upscale2d(x), w)
    k = _shifted_sum(tf.transpose(w, [0, 1, 3, 2]))  # [4, 4, out, in]
    s = tf.shape(x)
    out_shape = tf.stack([s[0], s[1] * 2, s[2] * 2, w.shape[3]])
    return tf.nn.conv2d_transpose(x, k, out_shape, strides=2, padding='SAME')


def conv2d_downscale2d(x, w, fused):
    """SAME conv of NHWC x with HWIO w then 2x2 average; the fused form is one 4x4 stride-2 conv."""
    if not fused:
        return downscale2d(conv2d(x, w))
    return tf.nn.conv2d(x, _shifted_sum(w) * 0.25, strides=2, padding='SAME')


def nf_fn(fmap_base, fmap_decay, fmap_max):
    """NVIDIA's feature-map count per stage: ``min(int(fmap_base / 2^(stage * decay)), fmap_max)``."""
    return lambda stage: min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)


def _resolution_log2(resolution):
    r = int(np.log2(resolution))
    if resolution != 2 ** r or resolution < 4:
        raise StyleGANTLError(f"resolution must be a power of two >= 4, got {resolution}")
    return r


def _is_tensor(v):
    return isinstance(v, (tf.Tensor, tf.Variable))


# ---------------------------------------------------------------------------------------------------
# Module base: kwargs completion/validation and NVIDIA-style variable creation
# ---------------------------------------------------------------------------------------------------

class _V1Module(tf.Module):
    """Shared plumbing of the v1 networks: static kwargs, seeded variable creation, weight scaling."""

    _DEFAULTS = {}
    _KNOWN = frozenset()
    _RUNTIME = frozenset()

    def __init__(self, static_kwargs, name, seed, unexpected_components=None):
        if unexpected_components:
            raise StyleGANTLError(f"{type(self).__name__} ({name}): unexpected components "
                                  f"{sorted(unexpected_components)}")
        super().__init__(name=name)
        self.kwargs = layers.resolve_static_kwargs(type(self).__name__, dict(static_kwargs or {}),
                                                   self._DEFAULTS, self._KNOWN)
        if self.kwargs.get('dtype', 'float32') != 'float32':
            raise StyleGANTLError(f"{type(self).__name__} ({name}): only dtype='float32' is supported, "
                                  f"got {self.kwargs['dtype']!r}")
        self._params = layers.Params(seed)
        self.own_vars = self._params.vars
        self._coefs = {}

    def _merged(self, dynamic_kwargs):
        """Static kwargs overridden by call-time kwargs; names no v1 build function knows and
        shape-changing values are errors (other v1 kwargs are ignored where unused, as in NVIDIA)."""
        unknown = sorted(set(dynamic_kwargs) - _FAMILY_KEYS)
        if unknown:
            raise StyleGANTLError(f"{type(self).__name__} ({self.name}): unknown call kwargs {unknown}")
        for k, v in dynamic_kwargs.items():
            if k not in self._RUNTIME and k in self.kwargs and not _is_tensor(v) and v != self.kwargs[k]:
                raise StyleGANTLError(f"{type(self).__name__} ({self.name}): {k}={v!r} cannot change at "
                                      f"call time (built with {self.kwargs[k]!r})")
        return dict(self.kwargs, **dynamic_kwargs)

    def _init_image_geometry(self):
        """Resolution, feature-map counts, activation and fused_scale of G_synthesis / D_basic."""
        kw = self.kwargs
        self.resolution_log2 = _resolution_log2(kw['resolution'])
        self._nf = nf_fn(kw['fmap_base'], kw['fmap_decay'], kw['fmap_max'])
        self._act = _activation(kw['nonlinearity'])
        if kw['fused_scale'] not in (True, False, 'auto'):
            raise StyleGANTLError(f"{self.name}: fused_scale must be True, False or 'auto', got {kw['fused_scale']!r}")

    def _new_weight(self, scope, shape, gain=np.sqrt(2), lrmul=1.0):
        """Equalized-lr weight ``scope/weight`` (stored unscaled; coefficient applied by ``_w``)."""
        _, coef = self._params.weight(f'{scope}/weight', shape, gain, self.kwargs['use_wscale'], lrmul)
        self._coefs[f'{scope}/weight'] = coef

    def _new_bias(self, scope, size, lrmul=1.0):
        self._params.zeros(f'{scope}/bias', [size])
        self._coefs[f'{scope}/bias'] = lrmul

    def _w(self, name):
        """Runtime value of a scaled variable (stored value times its coefficient)."""
        coef = self._coefs[name]
        var = self.own_vars[name]
        return var if coef == 1 else var * coef

    def _dense(self, scope, x):
        """``x @ W`` for 2-D x (NVIDIA ``dense``)."""
        return tf.matmul(x, self._w(f'{scope}/weight'))

    def _bias(self, scope, x):
        """Add ``scope/bias`` over the last (channel) axis."""
        return x + self._w(f'{scope}/bias')


class _V1Generator(_V1Module):
    """Generator networks accept every kwarg of the three v1 generator build functions (NVIDIA's
    G_style forwards its kwargs to both components, which ignore what they do not use)."""

    _KNOWN = _G_KEYS
    _RUNTIME = _G_RUNTIME


# ---------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------

class G_mapping(_V1Generator):
    """Mapping network z -> W: (label concat) -> pixel norm -> mapping_layers x (dense, bias, act).

    Args:
        static_kwargs: pickled static kwargs; missing keys take ``G_MAPPING_DEFAULTS``.
        name: network name ('G_mapping').
        seed: seed of the NVIDIA-style initialisation.
    Call arguments:
        latents_in: [N, latent_size] float32.
        labels_in: [N, label_size] float32, or None (= zeros, as NVIDIA feeds a missing input).
    Returns:
        W [N, dlatent_broadcast, dlatent_size] (or [N, dlatent_size] if dlatent_broadcast is None).
    Example:
        m = G_mapping({'latent_size': 64, 'dlatent_size': 64, 'dlatent_broadcast': 8})
        w = m(tf.random.normal([2, 64]))
    """

    _DEFAULTS = G_MAPPING_DEFAULTS

    def __init__(self, static_kwargs, name='G_mapping', seed=0, **components):
        super().__init__(static_kwargs, name, seed, components)
        kw = self.kwargs
        self._act = _activation(kw['mapping_nonlinearity'])
        with self.name_scope:
            fan_in = kw['latent_size']
            if kw['label_size']:
                self._params.normal('LabelConcat/weight', [kw['label_size'], kw['latent_size']])
                fan_in *= 2
            for i in range(kw['mapping_layers']):
                fmaps = kw['dlatent_size'] if i == kw['mapping_layers'] - 1 else kw['mapping_fmaps']
                self._new_weight(f'Dense{i}', [fan_in, fmaps], np.sqrt(2), kw['mapping_lrmul'])
                self._new_bias(f'Dense{i}', fmaps, kw['mapping_lrmul'])
                fan_in = fmaps

    def __call__(self, latents_in, labels_in=None, **dynamic_kwargs):
        kw = self._merged(dynamic_kwargs)
        x = tf.convert_to_tensor(latents_in, tf.float32)
        if kw['label_size']:
            labels = layers.labels_or_zeros(labels_in, x, kw['label_size'])
            y = tf.matmul(labels, self.own_vars['LabelConcat/weight'])
            x = tf.concat([x, y], axis=1)
        if kw['normalize_latents']:
            x = normalize_2nd_moment(x, axis=1)
        for i in range(kw['mapping_layers']):
            x = self._act(self._bias(f'Dense{i}', self._dense(f'Dense{i}', x)))
        if kw['dlatent_broadcast'] is not None:
            x = tf.tile(x[:, tf.newaxis], [1, kw['dlatent_broadcast'], 1])
        return x


class G_synthesis(_V1Generator):
    """Synthesis network W+ -> image: const 4x4 input, per-layer noise/bias/act/norm/StyleMod epilogue,
    upscale+conv (+blur) blocks, ToRGB per level of detail and progressive-growing lod blending.

    Args:
        static_kwargs: pickled static kwargs; missing keys take ``G_SYNTHESIS_DEFAULTS``.
        name: network name ('G_synthesis').
        seed: seed of the NVIDIA-style initialisation.
    Call arguments:
        dlatents_in: [N, num_layers, dlatent_size] (num_layers = 2*log2(resolution) - 2; 1 if not use_styles).
        randomize_noise: fresh N(0, 1) noise (True, NVIDIA's default) or the stored ``noise{i}`` (False).
        structure: progressive-growing structure, see below.
        lod: level-of-detail override (float or scalar tensor); None = the ``lod`` variable.
    Returns:
        NCHW float32 images [N, num_channels, resolution, resolution].

    Structures: 'fixed' ignores lod; 'linear' computes every level and blends ToRGB outputs by lod;
    'recursive' (NVIDIA's run-time choice for 'auto') computes only the levels lod needs, with nested
    ``tf.cond``. Both give NVIDIA's outputs (the same numbers at integer lod, rounding apart otherwise),
    but the second-order gradients of nested conds (R1) take exponentially long to trace (a 64 px D:
    96 s against 1.3 s), so 'auto' means 'linear' here.
    """

    _DEFAULTS = G_SYNTHESIS_DEFAULTS

    def __init__(self, static_kwargs, name='G_synthesis', seed=0, **components):
        super().__init__(static_kwargs, name, seed, components)
        self._init_image_geometry()
        self.num_layers = self.resolution_log2 * 2 - 2
        self.num_styles = self.num_layers if self.kwargs['use_styles'] else 1
        with self.name_scope:
            self._create_variables()

    # Variable creation: NVIDIA's template graph (structure 'linear', or 'fixed' if asked for).
    def _create_variables(self):
        kw, nf, r2 = self.kwargs, self._nf, self.resolution_log2
        self._params.zeros('lod', [], trainable=False)
        if kw['use_noise']:
            for i in range(self.num_layers):
                res = i // 2 + 2
                self._params.normal(f'noise{i}', [1, 1, 2 ** res, 2 ** res], trainable=False)
        if kw['const_input_layer']:
            self._params.ones('4x4/Const/const', [1, nf(1), 4, 4])
            self._new_epilogue('4x4/Const', nf(1))
        else:
            self._new_weight('4x4/Dense', [kw['dlatent_size'], nf(1) * 16], np.sqrt(2) / 4)
            self._new_epilogue('4x4/Dense', nf(1))
        self._new_weight('4x4/Conv', [3, 3, nf(1), nf(1)])
        self._new_epilogue('4x4/Conv', nf(1))
        fixed = kw['structure'] == 'fixed'
        if not fixed:
            self._new_torgb(2)
        for res in range(3, r2 + 1):
            scope = f'{2 ** res}x{2 ** res}'
            self._new_weight(f'{scope}/Conv0_up', [3, 3, nf(res - 2), nf(res - 1)])
            self._new_epilogue(f'{scope}/Conv0_up', nf(res - 1))
            self._new_weight(f'{scope}/Conv1', [3, 3, nf(res - 1), nf(res - 1)])
            self._new_epilogue(f'{scope}/Conv1', nf(res - 1))
            if not fixed:
                self._new_torgb(res)
        if fixed:
            self._new_torgb(r2)

    def _new_epilogue(self, scope, channels):
        if self.kwargs['use_noise']:
            self._params.zeros(f'{scope}/Noise/weight', [channels])
        self._new_bias(scope, channels)
        if self.kwargs['use_styles']:
            self._new_weight(f'{scope}/StyleMod', [self.kwargs['dlatent_size'], channels * 2], gain=1.0)
            self._new_bias(f'{scope}/StyleMod', channels * 2)

    def _new_torgb(self, res):
        scope = f'ToRGB_lod{self.resolution_log2 - res}'
        self._new_weight(scope, [1, 1, self._nf(res - 1), self.kwargs['num_channels']], gain=1.0)
        self._new_bias(scope, self.kwargs['num_channels'])

    # Forward.
    def _epilogue(self, x, scope, layer_idx, dlatents, randomize_noise):
        """noise -> bias -> act -> (pixel norm) -> (instance norm) -> (StyleMod) on NHWC x."""
        kw = self.kwargs
        if kw['use_noise']:
            if randomize_noise:
                s = tf.shape(x)
                noise = tf.random.normal([s[0], s[1], s[2], 1])
            else:
                noise = nchw_to_nhwc(self.own_vars[f'noise{layer_idx}'])
            x = x + noise * self.own_vars[f'{scope}/Noise/weight']
        x = self._act(self._bias(scope, x))
        if kw['use_pixel_norm']:
            x = normalize_2nd_moment(x, axis=3)
        if kw['use_instance_norm']:
            x = instance_norm(x)
        if kw['use_styles']:
            style = self._bias(f'{scope}/StyleMod', self._dense(f'{scope}/StyleMod', dlatents[:, layer_idx]))
            c = x.shape[3]
            x = x * (style[:, tf.newaxis, tf.newaxis, :c] + 1) + style[:, tf.newaxis, tf.newaxis, c:]
        return x

    def _input_block(self, dlatents, noise):
        """The 4x4 block: const (or dense from W[0]) + epilogue, 3x3 conv + epilogue. NHWC out."""
        nf = self._nf(1)
        if self.kwargs['const_input_layer']:
            x = nchw_to_nhwc(self.own_vars['4x4/Const/const'])
            x = tf.tile(x, [tf.shape(dlatents)[0], 1, 1, 1])
            x = self._epilogue(x, '4x4/Const', 0, dlatents, noise)
        else:
            x = self._dense('4x4/Dense', dlatents[:, 0])
            x = nchw_to_nhwc(tf.reshape(x, [-1, nf, 4, 4]))
            x = self._epilogue(x, '4x4/Dense', 0, dlatents, noise)
        return self._epilogue(conv2d(x, self._w('4x4/Conv/weight')), '4x4/Conv', 1, dlatents, noise)

    def _block(self, res, x, dlatents, noise):
        """Block of resolution 2^res: Conv0_up (upscale+conv, blur) and Conv1, each with its epilogue."""
        kw = self.kwargs
        scope = f'{2 ** res}x{2 ** res}'
        fused = kw['fused_scale'] if kw['fused_scale'] != 'auto' else 2 ** res >= 128
        x = upscale2d_conv2d(x, self._w(f'{scope}/Conv0_up/weight'), fused)
        if kw['blur_filter']:
            x = blur2d(x, kw['blur_filter'])
        x = self._epilogue(x, f'{scope}/Conv0_up', res * 2 - 4, dlatents, noise)
        return self._epilogue(conv2d(x, self._w(f'{scope}/Conv1/weight')), f'{scope}/Conv1', res * 2 - 3,
                              dlatents, noise)

    def _torgb(self, res, x):
        scope = f'ToRGB_lod{self.resolution_log2 - res}'
        return self._bias(scope, conv2d(x, self._w(f'{scope}/weight')))

    def __call__(self, dlatents_in, lod=None, **dynamic_kwargs):
        kw = self._merged(dynamic_kwargs)
        clean = kw['is_template_graph'] or kw['force_clean_graph']
        noise = kw['randomize_noise'] and not clean
        structure = kw['structure']
        if structure == 'auto':
            structure = 'linear'  # see the class docstring
        if structure not in ('fixed', 'linear', 'recursive'):
            raise StyleGANTLError(f"{self.name}: unknown structure {structure!r}")
        if structure != 'fixed' and f'ToRGB_lod{self.resolution_log2 - 2}/weight' not in self.own_vars:
            raise StyleGANTLError(f"{self.name}: built with structure='fixed', cannot run {structure!r}")
        dlatents = tf.convert_to_tensor(dlatents_in, tf.float32)
        lod_in = self.own_vars['lod'] if lod is None else tf.convert_to_tensor(lod, tf.float32)
        x = self._input_block(dlatents, noise)
        r2 = self.resolution_log2
        if structure == 'fixed':
            for res in range(3, r2 + 1):
                x = self._block(res, x, dlatents, noise)
            images = self._torgb(r2, x)
        elif structure == 'linear':
            images = self._torgb(2, x)
            for res in range(3, r2 + 1):
                x = self._block(res, x, dlatents, noise)
                images = lod_blend(self._torgb(res, x), upscale2d(images), lod_in - (r2 - res))
        else:
            images = self._grow(x, 3, r2 - 3, lod_in, dlatents, noise) if r2 > 2 else self._torgb(2, x)
        return nhwc_to_nchw(images)

    def _grow(self, x, res, lod, lod_in, dlatents, noise):
        """Recursive structure: compute only the levels that lod_in needs (nested tf.cond)."""
        y = self._block(res, x, dlatents, noise)

        def plain():
            return upscale2d(self._torgb(res, y), 2 ** lod)

        def blended():
            img = lerp(self._torgb(res, y), upscale2d(self._torgb(res - 1, x)), lod_in - lod)
            return upscale2d(img, 2 ** lod)

        def here():
            return tf.cond(lod_in > lod, blended, plain)

        if lod > 0:
            return tf.cond(lod_in < lod, lambda: self._grow(y, res + 1, lod - 1, lod_in, dlatents, noise), here)
        return here()


class G_style(_V1Generator):
    """Style-based generator: mapping -> (training: W average, style mixing) -> truncation -> synthesis.

    Args:
        static_kwargs: pickled static kwargs; missing keys take ``G_STYLE_DEFAULTS`` (the rest are
            forwarded to the components, which are built from them when not given).
        name: network name ('G' or 'Gs').
        seed: seed of the NVIDIA-style initialisation (components built here use seed+1, seed+2).
        mapping, synthesis: prebuilt ``G_mapping`` / ``G_synthesis`` components.
    Call arguments:
        latents_in: [N, latent_size]; labels_in: [N, label_size] or None.
        truncation_psi, truncation_cutoff: truncation trick; v1 truncates the first ``cutoff`` layers
            only when BOTH are not None (defaults 0.7 and 8; psi == 1 or cutoff <= 0 means off).
        truncation_psi_val, truncation_cutoff_val, is_validation: the settings used when validating.
        is_training: update ``dlatent_avg`` and apply style mixing (``style_mixing_prob``); no truncation.
        return_dlatents: also return the W+ fed to the synthesis (an extension; NVIDIA's v1 has none).
        Other kwargs (randomize_noise, structure, ...) go to the components.
    Returns:
        NCHW float32 images [N, C, R, R] (and W+ [N, num_layers, Dw] if return_dlatents).
    Example:
        G = G_style({'resolution': 32, 'latent_size': 64, 'dlatent_size': 64, 'mapping_fmaps': 64})
        images = G(tf.random.normal([2, 64]), None, randomize_noise=False)
    """

    _DEFAULTS = G_STYLE_DEFAULTS

    def __init__(self, static_kwargs, name='G', seed=0, mapping=None, synthesis=None, **components):
        super().__init__(static_kwargs, name, seed, components)
        forwarded = dict(static_kwargs or {})
        if synthesis is None:
            synthesis = G_synthesis(forwarded, seed=seed + 1)
        if mapping is None:
            mapping = G_mapping(dict(forwarded, dlatent_broadcast=synthesis.num_styles), seed=seed + 2)
        self.mapping, self.synthesis = mapping, synthesis
        self.num_layers = synthesis.num_styles
        dlatent_size = synthesis.kwargs['dlatent_size']
        with self.name_scope:
            self._params.zeros('lod', [], trainable=False)
            self._params.zeros('dlatent_avg', [dlatent_size], trainable=False)

    def _truncation_settings(self, kw):
        """(psi, cutoff, beta, mixing_prob) after NVIDIA's normalisation of the G_style kwargs."""
        is_training, is_validation = kw['is_training'], kw['is_validation']
        if is_training and is_validation:
            raise StyleGANTLError(f"{self.name}: is_training and is_validation cannot both be True")
        psi, cutoff = kw['truncation_psi'], kw['truncation_cutoff']
        if is_validation:
            psi, cutoff = kw['truncation_psi_val'], kw['truncation_cutoff_val']
        if is_training or (psi is not None and not _is_tensor(psi) and psi == 1):
            psi = None
        if is_training or (cutoff is not None and not _is_tensor(cutoff) and cutoff <= 0):
            cutoff = None
        beta, mix = kw['dlatent_avg_beta'], kw['style_mixing_prob']
        if not is_training or (beta is not None and not _is_tensor(beta) and beta == 1):
            beta = None
        if not is_training or (mix is not None and not _is_tensor(mix) and mix <= 0):
            mix = None
        return psi, cutoff, beta, mix

    def __call__(self, latents_in, labels_in=None, return_dlatents=False, **dynamic_kwargs):
        kw = self._merged(dynamic_kwargs)
        psi, cutoff, beta, mix = self._truncation_settings(kw)
        forwarded = {k: v for k, v in dynamic_kwargs.items() if k not in G_STYLE_DEFAULTS}
        if kw['is_template_graph']:
            forwarded['force_clean_graph'] = True
        latents = tf.convert_to_tensor(latents_in, tf.float32)
        lod_in = self.own_vars['lod']
        dlatents = self.mapping(latents, labels_in, **forwarded)
        if beta is not None:
            self._update_dlatent_avg(dlatents, beta)
        if mix is not None:
            dlatents = self._style_mix(latents, labels_in, dlatents, lod_in, mix, forwarded)
        if psi is not None and cutoff is not None:
            dlatents = layers.truncate(dlatents, self.own_vars['dlatent_avg'], psi, cutoff)
        self.synthesis.own_vars['lod'].assign(lod_in)
        images = self.synthesis(dlatents, lod=lod_in, **forwarded)
        return (images, dlatents) if return_dlatents else images

    def _update_dlatent_avg(self, dlatents, beta):
        """``dlatent_avg <- lerp(batch mean of W[:, 0], dlatent_avg, beta)`` (not differentiated)."""
        batch_avg = tf.reduce_mean(tf.stop_gradient(dlatents[:, 0]), axis=0)
        avg = self.own_vars['dlatent_avg']
        avg.assign(lerp(batch_avg, avg, beta))

    def _style_mix(self, latents, labels_in, dlatents, lod_in, prob, forwarded):
        """Style mixing regularisation: layers >= a random cutoff take W of a second random z."""
        dlatents2 = self.mapping(tf.random.normal(tf.shape(latents)), labels_in, **forwarded)
        cur_layers = self.num_layers - tf.cast(lod_in, tf.int32) * 2
        return layers.style_mix(dlatents, dlatents2, prob, self.num_layers, cur_layers)


class D_basic(_V1Module):
    """Progressive-growing discriminator: FromRGB per lod, (Conv0, blur, Conv1_down) blocks, minibatch
    stddev, 4x4 conv, two dense layers, optional label switch.

    Args:
        static_kwargs: pickled static kwargs; missing keys take ``D_BASIC_DEFAULTS``.
        name: network name ('D').
        seed: seed of the NVIDIA-style initialisation.
    Call arguments:
        images_in: NCHW float32 [N, num_channels, R, R].
        labels_in: [N, label_size], or None (= zeros, as NVIDIA feeds a missing input).
        structure: 'fixed' | 'linear' | 'recursive' | 'auto' (= 'linear', see ``G_synthesis``).
    Returns:
        scores [N, 1] (raw logits).
    """

    _DEFAULTS = D_BASIC_DEFAULTS
    _KNOWN = _D_KEYS
    _RUNTIME = _D_RUNTIME

    def __init__(self, static_kwargs, name='D', seed=0, **components):
        super().__init__(static_kwargs, name, seed, components)
        self._init_image_geometry()
        with self.name_scope:
            self._create_variables()

    def _create_variables(self):
        kw, nf, r2 = self.kwargs, self._nf, self.resolution_log2
        fixed = kw['structure'] == 'fixed'
        self._params.zeros('lod', [], trainable=False)
        self._new_fromrgb(r2)
        for res in range(r2, 2, -1):
            scope = f'{2 ** res}x{2 ** res}'
            self._new_weight(f'{scope}/Conv0', [3, 3, nf(res - 1), nf(res - 1)])
            self._new_bias(f'{scope}/Conv0', nf(res - 1))
            self._new_weight(f'{scope}/Conv1_down', [3, 3, nf(res - 1), nf(res - 2)])
            self._new_bias(f'{scope}/Conv1_down', nf(res - 2))
            if not fixed:
                self._new_fromrgb(res - 1)
        mbstd = kw['mbstd_num_features'] if kw['mbstd_group_size'] > 1 else 0
        self._new_weight('4x4/Conv', [3, 3, nf(1) + mbstd, nf(1)])
        self._new_bias('4x4/Conv', nf(1))
        self._new_weight('4x4/Dense0', [nf(1) * 16, nf(0)])
        self._new_bias('4x4/Dense0', nf(0))
        self._new_weight('4x4/Dense1', [nf(0), max(kw['label_size'], 1)], gain=1.0)
        self._new_bias('4x4/Dense1', max(kw['label_size'], 1))

    def _new_fromrgb(self, res):
        scope = f'FromRGB_lod{self.resolution_log2 - res}'
        self._new_weight(scope, [1, 1, self.kwargs['num_channels'], self._nf(res - 1)])
        self._new_bias(scope, self._nf(res - 1))

    def _fromrgb(self, x, res):
        scope = f'FromRGB_lod{self.resolution_log2 - res}'
        return self._act(self._bias(scope, conv2d(x, self._w(f'{scope}/weight'))))

    def _block(self, x, res):
        """Block of resolution 2^res on NHWC x; res == 2 is the final 4x4 block (-> [N, max(labels, 1)])."""
        kw = self.kwargs
        scope = f'{2 ** res}x{2 ** res}'
        if res >= 3:
            x = self._act(self._bias(f'{scope}/Conv0', conv2d(x, self._w(f'{scope}/Conv0/weight'))))
            if kw['blur_filter']:
                x = blur2d(x, kw['blur_filter'])
            fused = kw['fused_scale'] if kw['fused_scale'] != 'auto' else 2 ** res >= 128
            x = conv2d_downscale2d(x, self._w(f'{scope}/Conv1_down/weight'), fused)
            return self._act(self._bias(f'{scope}/Conv1_down', x))
        if kw['mbstd_group_size'] > 1:
            x = layers.minibatch_stddev(x, kw['mbstd_group_size'], kw['mbstd_num_features'])
        x = self._act(self._bias('4x4/Conv', conv2d(x, self._w('4x4/Conv/weight'))))
        x = self._act(self._bias('4x4/Dense0', self._dense('4x4/Dense0', flatten_nchw(x))))
        return self._bias('4x4/Dense1', self._dense('4x4/Dense1', x))

    def __call__(self, images_in, labels_in=None, lod=None, **dynamic_kwargs):
        kw = self._merged(dynamic_kwargs)
        structure = kw['structure']
        if structure == 'auto':
            structure = 'linear'  # see G_synthesis
        if structure not in ('fixed', 'linear', 'recursive'):
            raise StyleGANTLError(f"{self.name}: unknown structure {structure!r}")
        if structure != 'fixed' and 'FromRGB_lod1/weight' not in self.own_vars and self.resolution_log2 > 2:
            raise StyleGANTLError(f"{self.name}: built with structure='fixed', cannot run {structure!r}")
        images = nchw_to_nhwc(tf.convert_to_tensor(images_in, tf.float32))
        lod_in = self.own_vars['lod'] if lod is None else tf.convert_to_tensor(lod, tf.float32)
        r2 = self.resolution_log2
        if structure == 'fixed':
            x = self._fromrgb(images, r2)
            for res in range(r2, 2, -1):
                x = self._block(x, res)
            scores = self._block(x, 2)
        elif structure == 'linear':
            img = images
            x = self._fromrgb(img, r2)
            for res in range(r2, 2, -1):
                x = self._block(x, res)
                img = downscale2d(img)
                x = lod_blend(x, self._fromrgb(img, res - 1), lod_in - (r2 - res))
            scores = self._block(x, 2)
        else:
            scores = self._grow(images, 2, r2 - 2, lod_in)
        if kw['label_size']:
            labels = layers.labels_or_zeros(labels_in, images, kw['label_size'])
            scores = tf.reduce_sum(scores * labels, axis=1, keepdims=True)
        return scores

    def _grow(self, images, res, lod, lod_in):
        """Recursive structure: read the input at the resolution lod_in asks for (nested tf.cond)."""
        def entry():
            return self._fromrgb(downscale2d(images, 2 ** lod), res)

        if lod > 0:
            x = tf.cond(lod_in < lod, lambda: self._grow(images, res + 1, lod - 1, lod_in), entry)
        else:
            x = entry()
        x = self._block(x, res)
        if res > 2:
            x = tf.cond(lod_in > lod,
                        lambda: lerp(x, self._fromrgb(downscale2d(images, 2 ** (lod + 1)), res - 1), lod_in - lod),
                        lambda: x)
        return x
