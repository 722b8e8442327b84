"""StyleGAN2 networks (NVIDIA ``training/networks_stylegan2.py``, configs E/F), clean-room TF2.

One ``tf.Module`` per NVIDIA build function: :class:`G_main`, :class:`G_mapping`,
:class:`G_synthesis_stylegan2`, :class:`D_stylegan2`. Public inputs/outputs are NCHW like NVIDIA's;
the maths runs in NHWC (see ``layers``). Variables: NVIDIA local names, layouts, creation order and
initialisation (``own_vars``). ``arch_ada`` subclasses these for StyleGAN2-ADA (TF).

Architectures: G and D each support ``'orig'``, ``'skip'`` and ``'resnet'``.

Mixed precision (ADA-TF's scheme, also available to StyleGAN2 networks for training):
``set_precision(num_fp16_res, conv_clamp)`` on the synthesis network or D makes the blocks of the
``num_fp16_res`` highest resolutions compute in float16 (activations and convolutions; styles,
demodulation, the 4x4 block, the RGB skip path and D's minibatch-stddev/4x4 epilogue stay float32)
and clamps every conv layer's output to +-``conv_clamp``. Networks start in float32.
"""

import numpy as np
import tensorflow as tf

from . import layers, ops
from .errors import StyleGANTLError

_UNSET = object()  # "not passed": take the value from the static kwargs (NVIDIA merges both)


def _pick(value, kwargs, name):
    return kwargs[name] if value is _UNSET else value


def _is_tensor(x):
    return isinstance(x, (tf.Tensor, tf.Variable))


class ArchModule(tf.Module):
    """Base of every network module: complete static kwargs, own variables, seeded init.

    Subclasses set ``FUNC_NAME`` (NVIDIA build function name), ``DEFAULTS`` (its static defaults) and
    ``ALSO_ALLOWED`` (kwargs NVIDIA forwards from the parent network, accepted and ignored).
    """

    FUNC_NAME = None
    DEFAULTS = {}
    ALSO_ALLOWED = ()
    FAMILY_KWARGS = frozenset()  # every kwarg of the family's build functions (set below the classes)

    def __init__(self, static_kwargs, name, seed=0):
        super().__init__(name=None)
        self.net_name = name
        self.kwargs = layers.resolve_static_kwargs(self.FUNC_NAME, dict(static_kwargs), self.DEFAULTS,
                                                   self.ALSO_ALLOWED)
        if self.kwargs.get("dtype", "float32") not in ("float32", "float16"):
            raise StyleGANTLError(f"{self.FUNC_NAME}: dtype must be 'float32' or 'float16', "
                                  f"got {self.kwargs['dtype']!r}")
        self.params = layers.Params(seed)

    def ignore_kwargs(self, unused):
        """Accept call kwargs this network does not use, as NVIDIA's build functions do (``**_kwargs``:
        its Network passes every call kwarg on), if some network of the family knows the name."""
        unknown = sorted(set(unused) - self.FAMILY_KWARGS)
        if unknown:
            raise StyleGANTLError(f"{self.FUNC_NAME} ({self.net_name}): unknown call kwargs {unknown}")

    @property
    def own_vars(self):
        """OrderedDict local name -> tf.Variable, NVIDIA creation order."""
        return self.params.vars

    def nf(self, stage):
        """Feature maps at ``stage`` (log2 resolution - 1): clip(fmap_base / 2**(stage*decay), min, max)."""
        k = self.kwargs
        return int(np.clip(int(k["fmap_base"] / (2.0 ** (stage * k["fmap_decay"]))), k.get("fmap_min", 1),
                           k["fmap_max"]))

    def resolution_log2(self):
        res = self.kwargs["resolution"]
        log2 = int(np.log2(res))
        if res != 2 ** log2 or res < 4:
            raise StyleGANTLError(f"{self.FUNC_NAME}: resolution must be a power of two >= 4, got {res}")
        return log2

    def labels_or_zeros(self, labels, batch_of):
        """``labels`` as float32, or zeros [N, label_size] when None (N taken from ``batch_of``)."""
        return layers.labels_or_zeros(labels, batch_of, self.kwargs["label_size"])

    # Mixed precision (synthesis networks and discriminators; see the module docstring).
    num_fp16_res = 0
    clamped_layers = ()

    def set_precision(self, num_fp16_res, conv_clamp):
        """Compute the blocks of the ``num_fp16_res`` highest resolutions in float16 and clamp the
        conv layers' outputs to +-``conv_clamp`` (None: no clamp). Call before tracing."""
        if not self.clamped_layers:
            raise StyleGANTLError(f"{self.FUNC_NAME}: no mixed-precision path")
        self.num_fp16_res = int(num_fp16_res)
        for layer in self.clamped_layers:
            layer.clamp = conv_clamp

    def compute_dtype(self, res):
        """tf.float16 for the blocks of resolution 2**res among the ``num_fp16_res`` highest, else float32."""
        return tf.float16 if res > self.resolution_log2() - self.num_fp16_res else tf.float32


# --------------------------------------------------------------------------------------------------
# Mapping.

_MAPPING_DEFAULTS = dict(
    latent_size=512,            # Z dimensionality
    label_size=0,               # label dimensionality, 0 = unconditional
    dlatent_size=512,           # W dimensionality
    dlatent_broadcast=None,     # output [N, dlatent_size] or [N, dlatent_broadcast, dlatent_size]
    mapping_layers=8,           # number of dense layers
    mapping_fmaps=512,          # features in the hidden layers
    mapping_lrmul=0.01,         # learning-rate multiplier of the mapping layers
    mapping_nonlinearity="lrelu",
    normalize_latents=True,     # 2nd-moment normalise Z first
    dtype="float32",
)


_SYNTHESIS_DEFAULTS = dict(
    dlatent_size=512,           # W dimensionality
    num_channels=3,             # output colour channels
    resolution=1024,            # output resolution
    fmap_base=16 << 10,         # feature-map multiplier
    fmap_decay=1.0,             # log2 feature-map reduction per doubling of resolution
    fmap_min=1,
    fmap_max=512,
    randomize_noise=True,       # True = fresh N(0,1) noise per call, False = the stored noise{i}
    architecture="skip",        # 'orig', 'skip' or 'resnet'
    nonlinearity="lrelu",
    dtype="float32",
    resample_kernel=[1, 3, 3, 1],
    fused_modconv=True,         # per-sample (grouped) modulated conv; same numbers either way
)


class G_mapping(ArchModule):
    """StyleGAN2 mapping network Z (+ labels) -> W.

    Call: ``(latents [N, latent_size], labels [N, label_size] or None, is_training=False)`` ->
    dlatents ``[N, dlatent_broadcast, dlatent_size]`` (or ``[N, dlatent_size]`` if not broadcast).
    Labels (label_size > 0): ``LabelConcat/weight [label_size, latent_size]`` embeds them, concatenated
    to Z before normalisation.
    """

    FUNC_NAME = "G_mapping"
    DEFAULTS = _MAPPING_DEFAULTS
    ALSO_ALLOWED = tuple(_SYNTHESIS_DEFAULTS)

    def __init__(self, static_kwargs, name="G_mapping", seed=0):
        super().__init__(static_kwargs, name, seed)
        k = self.kwargs
        in_features = self._build_label_embedding()
        self.dense = []
        for idx in range(k["mapping_layers"]):
            out = k["dlatent_size"] if idx == k["mapping_layers"] - 1 else self.hidden_features()
            self.dense.append(layers.Dense(self.params, f"Dense{idx}", in_features, out,
                                           lrmul=k["mapping_lrmul"], act=k["mapping_nonlinearity"]))
            in_features = out

    def hidden_features(self):
        return self.kwargs["mapping_fmaps"]

    def _build_label_embedding(self):
        """Create the label variables; return the number of features entering Dense0."""
        k = self.kwargs
        if k["label_size"]:
            self.label_concat = self.params.normal("LabelConcat/weight", [k["label_size"], k["latent_size"]])
            return 2 * k["latent_size"]
        return k["latent_size"]

    def embed(self, latents, labels):
        """Z and labels -> the input of Dense0 (v2: concat then normalise)."""
        x = latents
        if self.kwargs["label_size"]:
            x = tf.concat([x, tf.matmul(labels, self.label_concat)], axis=1)
        if self.kwargs["normalize_latents"]:
            x = layers.normalize_2nd_moment(x)
        return x

    def __call__(self, latents_in, labels_in=None, is_training=False, is_validation=False, **unused):
        self.ignore_kwargs(unused)
        latents = tf.cast(latents_in, tf.float32)
        x = self.embed(latents, self.labels_or_zeros(labels_in, latents))
        for dense in self.dense:
            x = dense(x)
        if self.kwargs["dlatent_broadcast"] is not None:
            x = tf.tile(x[:, tf.newaxis], [1, self.kwargs["dlatent_broadcast"], 1])
        return x


# --------------------------------------------------------------------------------------------------
# Synthesis.


class SynthesisLayer(tf.Module):
    """Modulated conv -> + noise * noise_strength -> bias + act (+ clamp). NHWC.

    Variables: ``<scope>/{weight, mod_weight, mod_bias}``, ``<scope>/noise_strength`` (if use_noise,
    scalar, init 0), ``<scope>/bias``.
    """

    def __init__(self, params, scope, in_channels, out_channels, w_dim, layer_idx, noise_var, act,
                 up=False, resample_kernel=None, clamp=None):
        """``clamp`` may be changed after construction (:meth:`ArchModule.set_precision`)."""
        super().__init__(name=None)
        self.layer_idx, self.noise_var, self.act, self.clamp = layer_idx, noise_var, act, clamp
        self.conv = layers.ModulatedConv2d(params, scope, in_channels, out_channels, 3, w_dim, up=up,
                                           resample_kernel=resample_kernel)
        self.noise_strength = params.zeros(f"{scope}/noise_strength", []) if noise_var is not None else None
        self.bias = params.zeros(f"{scope}/bias", [out_channels])

    def __call__(self, x, dlatents, randomize_noise, fused_modconv):
        x = self.conv(x, dlatents[:, self.layer_idx], fused_modconv)
        if self.noise_strength is not None:
            if randomize_noise:
                noise = tf.random.normal([tf.shape(x)[0], x.shape[1], x.shape[2], 1], dtype=x.dtype)
            else:
                noise = tf.cast(layers.nchw_to_nhwc(self.noise_var), x.dtype)
            x += noise * tf.cast(self.noise_strength, x.dtype)
        return layers.bias_act(x, self.bias, self.act, clamp=self.clamp)


class ToRGB(tf.Module):
    """1x1 modulated conv without demodulation + bias, linear (+ clamp). NHWC, dtype of the input.

    Variables: ``<scope>/{weight, mod_weight, mod_bias, bias}``.
    """

    def __init__(self, params, scope, in_channels, num_channels, w_dim, layer_idx, clamp=None):
        super().__init__(name=None)
        self.layer_idx, self.clamp = layer_idx, clamp
        self.conv = layers.ModulatedConv2d(params, scope, in_channels, num_channels, 1, w_dim,
                                           demodulate=False)
        self.bias = params.zeros(f"{scope}/bias", [num_channels])

    def __call__(self, x, dlatents, fused_modconv):
        x = self.conv(x, dlatents[:, self.layer_idx], fused_modconv)
        return layers.bias_act(x, self.bias, clamp=self.clamp)


class G_synthesis_stylegan2(ArchModule):
    """StyleGAN2 synthesis network W+ -> image.

    Call: ``(dlatents [N, num_layers, dlatent_size], randomize_noise=<static>, fused_modconv=<static>)``
    -> images ``[N, num_channels, R, R]`` NCHW float32 (not clamped).
    """

    FUNC_NAME = "G_synthesis_stylegan2"
    DEFAULTS = _SYNTHESIS_DEFAULTS
    ALSO_ALLOWED = tuple(_MAPPING_DEFAULTS)

    def __init__(self, static_kwargs, name="G_synthesis", seed=0):
        super().__init__(static_kwargs, name, seed)
        k = self.kwargs
        if k["architecture"] not in ("orig", "skip", "resnet"):
            raise StyleGANTLError(f"{self.FUNC_NAME}: unknown architecture {k['architecture']!r}")
        log2 = self.resolution_log2()
        self.num_layers = 2 * log2 - 2
        w_dim, rk, clamp, act = k["dlatent_size"], k["resample_kernel"], self.conv_clamp(), k["nonlinearity"]
        sizes = [2 ** ((i + 5) // 2) for i in range(self.num_layers - 1)]
        noise = [self.params.normal(f"noise{i}", [1, 1, size, size], trainable=False) if self.use_noise() else None
                 for i, size in enumerate(sizes)]
        const_ch = self.const_channels()
        self.const = self.params.normal("4x4/Const/const", [1, const_ch, 4, 4])
        self.conv4 = SynthesisLayer(self.params, "4x4/Conv", const_ch, self.nf(1), w_dim, 0, noise[0], act,
                                    clamp=clamp)
        self.torgb = {}
        if k["architecture"] == "skip":
            self.torgb[2] = ToRGB(self.params, "4x4/ToRGB", self.nf(1), k["num_channels"], w_dim, 1, clamp)
        self.blocks = []
        for res in range(3, log2 + 1):
            scope = f"{2 ** res}x{2 ** res}"
            conv0 = SynthesisLayer(self.params, f"{scope}/Conv0_up", self.nf(res - 2), self.nf(res - 1), w_dim,
                                   res * 2 - 5, noise[res * 2 - 5], act, up=True, resample_kernel=rk, clamp=clamp)
            conv1 = SynthesisLayer(self.params, f"{scope}/Conv1", self.nf(res - 1), self.nf(res - 1), w_dim,
                                   res * 2 - 4, noise[res * 2 - 4], act, clamp=clamp)
            skip = None
            if k["architecture"] == "resnet":
                skip = layers.Conv2d(self.params, f"{scope}/Skip", self.nf(res - 2), self.nf(res - 1), 1,
                                     use_bias=False, up=True, resample_kernel=rk)
            self.blocks.append((conv0, conv1, skip))
            if k["architecture"] == "skip" or res == log2:
                self.torgb[res] = ToRGB(self.params, f"{scope}/ToRGB", self.nf(res - 1), k["num_channels"],
                                        w_dim, res * 2 - 3, clamp)
        self.clamped_layers = [self.conv4] + [c for conv0, conv1, _ in self.blocks for c in (conv0, conv1)]
        self.clamped_layers += list(self.torgb.values())

    # Hooks that ADA's G_synthesis overrides through its kwargs.
    def conv_clamp(self):
        return self.kwargs.get("conv_clamp")

    def use_noise(self):
        return self.kwargs.get("use_noise", True)

    def const_channels(self):
        return self.kwargs.get("fmap_const") or self.nf(1)

    def __call__(self, dlatents_in, randomize_noise=_UNSET, fused_modconv=_UNSET, is_training=False,
                 is_validation=False, **unused):
        self.ignore_kwargs(unused)
        randomize_noise = _pick(randomize_noise, self.kwargs, "randomize_noise")
        fused = _pick(fused_modconv, self.kwargs, "fused_modconv")
        w = tf.cast(dlatents_in, tf.float32)
        x = tf.tile(layers.nchw_to_nhwc(self.const), [tf.shape(w)[0], 1, 1, 1])
        x = self.conv4(x, w, randomize_noise, fused)
        y = self.torgb[2](x, w, fused) if 2 in self.torgb else None
        for res, (conv0, conv1, skip) in enumerate(self.blocks, start=3):
            x = t = tf.cast(x, self.compute_dtype(res))
            x = conv1(conv0(x, w, randomize_noise, fused), w, randomize_noise, fused)
            if skip is not None:
                x = (x + skip(t)) * tf.cast(1 / np.sqrt(2), x.dtype)
            if y is not None:
                y = ops.upsample_2d(y, k=self.kwargs["resample_kernel"], data_format="NHWC")
            if res in self.torgb:
                t = tf.cast(self.torgb[res](x, w, fused), tf.float32)
                y = t if y is None else y + t
        return layers.nhwc_to_nchw(y)


# --------------------------------------------------------------------------------------------------
# Generator.

_G_MAIN_DEFAULTS = dict(
    truncation_psi=0.5,         # truncation strength (None / 1 = off)
    truncation_cutoff=None,     # truncate layers < cutoff; None = every layer
    truncation_psi_val=None,    # used instead when is_validation
    truncation_cutoff_val=None,
    dlatent_avg_beta=0.995,     # EMA decay of dlatent_avg when is_training
    style_mixing_prob=0.9,      # style-mixing probability when is_training
    is_training=False,
    is_validation=False,
    return_dlatents=False,
    is_template_graph=False,
    mapping_func="G_mapping",
    synthesis_func="G_synthesis_stylegan2",
)


class G_main(ArchModule):
    """StyleGAN2 generator: mapping -> (training: W average update, style mixing) -> truncation -> synthesis.

    Own variables: ``lod`` (scalar, non-trainable), ``dlatent_avg [dlatent_size]`` (non-trainable).
    Call: ``(latents [N, latent_size], labels [N, label_size] or None, **dynamic)`` -> images NCHW, or
    ``(images, dlatents)`` with ``return_dlatents=True``. Dynamic kwargs default to the static ones.
    """

    FUNC_NAME = "G_main"
    DEFAULTS = _G_MAIN_DEFAULTS
    ALSO_ALLOWED = tuple(_MAPPING_DEFAULTS) + tuple(_SYNTHESIS_DEFAULTS)
    MAPPING = G_mapping
    SYNTHESIS = G_synthesis_stylegan2
    HAS_LOD = True

    def __init__(self, static_kwargs, name="G", seed=0, mapping=None, synthesis=None):
        cls = type(self)
        super().__init__(static_kwargs, name, seed)
        sub_kwargs = {n: v for n, v in dict(static_kwargs).items() if n not in self.DEFAULTS}
        self.synthesis = synthesis or cls.SYNTHESIS(sub_kwargs, "G_synthesis", seed + 1)
        self.num_layers = self.synthesis.num_layers
        self.mapping = mapping or cls.MAPPING(dict(sub_kwargs, dlatent_broadcast=self.num_layers),
                                              "G_mapping", seed + 2)
        self.lod = self.params.zeros("lod", [], trainable=False) if cls.HAS_LOD else None
        self.dlatent_avg = self.params.zeros("dlatent_avg", [self.synthesis.kwargs["dlatent_size"]],
                                             trainable=False)

    def cur_layers(self):
        """Layers in use for style mixing (v2: num_layers - 2*int(lod))."""
        if self.lod is None:
            return self.num_layers
        return self.num_layers - tf.cast(self.lod, tf.int32) * 2

    def __call__(self, latents_in, labels_in=None, truncation_psi=_UNSET, truncation_cutoff=_UNSET,
                 truncation_psi_val=_UNSET, truncation_cutoff_val=_UNSET, dlatent_avg_beta=_UNSET,
                 style_mixing_prob=_UNSET, is_training=_UNSET, is_validation=_UNSET, return_dlatents=_UNSET,
                 randomize_noise=_UNSET, fused_modconv=_UNSET, is_template_graph=_UNSET, **unused):
        self.ignore_kwargs(unused)
        k = self.kwargs
        psi, cutoff = _pick(truncation_psi, k, "truncation_psi"), _pick(truncation_cutoff, k, "truncation_cutoff")
        is_training, is_validation = _pick(is_training, k, "is_training"), _pick(is_validation, k, "is_validation")
        beta, mix_prob = _pick(dlatent_avg_beta, k, "dlatent_avg_beta"), _pick(style_mixing_prob, k, "style_mixing_prob")
        if is_training and is_validation:
            raise StyleGANTLError("G_main: is_training and is_validation cannot both be True")
        if is_validation:
            psi = _pick(truncation_psi_val, k, "truncation_psi_val")
            cutoff = _pick(truncation_cutoff_val, k, "truncation_cutoff_val")
        if is_training or (psi is not None and not _is_tensor(psi) and psi == 1):
            psi = None
        if is_training:
            cutoff = None
        if not is_training or (beta is not None and not _is_tensor(beta) and beta == 1):
            beta = None
        if not is_training or (mix_prob is not None and not _is_tensor(mix_prob) and mix_prob <= 0):
            mix_prob = None

        labels = self.mapping.labels_or_zeros(labels_in, latents_in)
        dlatents = self.mapping(latents_in, labels, is_training=is_training)
        if beta is not None:
            batch_avg = tf.reduce_mean(dlatents[:, 0], axis=0)
            self.dlatent_avg.assign(layers.lerp(batch_avg, self.dlatent_avg, beta))
        if mix_prob is not None:
            latents2 = tf.random.normal(tf.shape(latents_in))
            dlatents2 = self.mapping(latents2, labels, is_training=is_training)
            dlatents = layers.style_mix(dlatents, dlatents2, mix_prob, self.num_layers, self.cur_layers())
        if psi is not None:
            dlatents = layers.truncate(dlatents, self.dlatent_avg, psi, cutoff)
        images = self.synthesis(dlatents, randomize_noise=randomize_noise, fused_modconv=fused_modconv,
                                is_training=is_training)
        if _pick(return_dlatents, k, "return_dlatents"):
            return images, dlatents
        return images


# --------------------------------------------------------------------------------------------------
# Discriminator.

_D_DEFAULTS = dict(
    num_channels=3,             # input colour channels
    resolution=1024,            # input resolution
    label_size=0,               # label dimensionality, 0 = unconditional
    fmap_base=16 << 10,
    fmap_decay=1.0,
    fmap_min=1,
    fmap_max=512,
    architecture="resnet",      # 'orig', 'skip' or 'resnet'
    nonlinearity="lrelu",
    mbstd_group_size=4,         # minibatch-stddev group size (min(group, N)); <= 1 disables
    mbstd_num_features=1,
    dtype="float32",
    resample_kernel=[1, 3, 3, 1],
)


class D_stylegan2(ArchModule):
    """StyleGAN2 discriminator.

    Call: ``(images [N, C, R, R] NCHW, labels [N, label_size] or None)`` -> scores ``[N, 1]``
    (raw logits; conditional: ``sum(out * labels, axis=1)``).
    """

    FUNC_NAME = "D_stylegan2"
    DEFAULTS = _D_DEFAULTS

    def __init__(self, static_kwargs, name="D", seed=0):
        super().__init__(static_kwargs, name, seed)
        k = self.kwargs
        if k["architecture"] not in ("orig", "skip", "resnet"):
            raise StyleGANTLError(f"{self.FUNC_NAME}: unknown architecture {k['architecture']!r}")
        log2 = self.resolution_log2()
        self._layer_count = 0
        out_features = self._build_label_mapping()
        act, rk, clamp, nf = k["nonlinearity"], k["resample_kernel"], self.conv_clamp(), self.nf
        self.fromrgb, self.blocks = {}, []
        for res in range(log2, 2, -1):
            scope = f"{2 ** res}x{2 ** res}"
            if k["architecture"] == "skip" or res == log2:
                self.fromrgb[res] = self._conv(f"{scope}/FromRGB", k["num_channels"], nf(res - 1), 1, act=act,
                                               clamp=clamp)
            conv0 = self._conv(f"{scope}/Conv0", nf(res - 1), nf(res - 1), 3, act=act, clamp=clamp)
            conv1 = self._conv(f"{scope}/Conv1_down", nf(res - 1), nf(res - 2), 3, act=act, down=True,
                               resample_kernel=rk, clamp=clamp)
            skip = None
            if k["architecture"] == "resnet":
                skip = self._conv(f"{scope}/Skip", nf(res - 1), nf(res - 2), 1, use_bias=False, down=True,
                                  resample_kernel=rk)
            self.blocks.append((res, conv0, conv1, skip))
        if k["architecture"] == "skip":
            self.fromrgb[2] = self._conv("4x4/FromRGB", k["num_channels"], nf(1), 1, act=act, clamp=clamp)
        self.mbstd_features = k["mbstd_num_features"] if self.use_mbstd() else 0
        self.conv4 = self._conv("4x4/Conv", nf(1) + self.mbstd_features, nf(1), 3, act=act, clamp=clamp)
        self.dense0 = layers.Dense(self.params, "4x4/Dense0", nf(1) * 16, nf(0), act=act,
                                   trainable=self._next_trainable())
        self.output = layers.Dense(self.params, "Output", nf(0), out_features)
        self.clamped_layers = list(self.fromrgb.values()) + [c for _, conv0, conv1, _ in self.blocks
                                                            for c in (conv0, conv1)] + [self.conv4]

    # Hooks that ADA's D_main overrides.
    def conv_clamp(self):
        return self.kwargs.get("conv_clamp")

    def use_mbstd(self):
        return self.kwargs["mbstd_group_size"] > 1

    def _build_label_mapping(self):
        """Create label variables (none in v2); return the Output layer's width."""
        return max(self.kwargs["label_size"], 1)

    def condition(self, scores, labels):
        """[N, out] Output activations and labels -> [N, 1] scores."""
        if self.kwargs["label_size"]:
            return tf.reduce_sum(scores * labels, axis=1, keepdims=True)
        return scores

    def _add_fromrgb(self, x, y, res):
        """``x`` plus FromRGB of the float32 images ``y`` at ``res`` (if this architecture has one there),
        in the dtype of that resolution's block."""
        if res not in self.fromrgb:
            return x
        t = self.fromrgb[res](tf.cast(y, self.compute_dtype(res)))
        return t if x is None else t + tf.cast(x, t.dtype)

    def _next_trainable(self):
        """Freeze-D: the first ``freeze_layers`` layers from the top are not trainable (ADA)."""
        self._layer_count += 1
        return self._layer_count > self.kwargs.get("freeze_layers", 0)

    def _conv(self, scope, in_channels, out_channels, kernel, **kw):
        return layers.Conv2d(self.params, scope, in_channels, out_channels, kernel,
                             trainable=self._next_trainable(), **kw)

    def __call__(self, images_in, labels_in=None, is_training=False, is_validation=False, **unused):
        self.ignore_kwargs(unused)
        labels = self.labels_or_zeros(labels_in, images_in)
        y = layers.nchw_to_nhwc(tf.cast(images_in, tf.float32))
        x = None
        for res, conv0, conv1, skip in self.blocks:
            x = self._add_fromrgb(x, y, res)
            x = t = tf.cast(x, self.compute_dtype(res))
            x = conv1(conv0(x))
            if skip is not None:
                x = (x + skip(t)) * tf.cast(1 / np.sqrt(2), x.dtype)
            if self.kwargs["architecture"] == "skip":
                y = ops.downsample_2d(y, k=self.kwargs["resample_kernel"], data_format="NHWC")
        x = tf.cast(self._add_fromrgb(x, y, 2), tf.float32)
        if self.mbstd_features:
            x = layers.minibatch_stddev(x, self.kwargs["mbstd_group_size"], self.mbstd_features)
        x = self.dense0(self.conv4(x))
        return self.condition(self.output(x), labels)


def set_family_kwargs(classes, extra=("force_clean_graph",)):
    """Give ``classes`` (one family's networks) the union of their kwarg names as ``FAMILY_KWARGS``."""
    names = frozenset(extra).union(*(cls.DEFAULTS for cls in classes))
    for cls in classes:
        cls.FAMILY_KWARGS = names


set_family_kwargs([G_mapping, G_synthesis_stylegan2, G_main, D_stylegan2])
