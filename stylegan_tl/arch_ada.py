"""StyleGAN2-ADA (TF, NVIDIA ``training/networks.py``, pickle version 5), clean-room TF2.

Subclasses of the StyleGAN2 modules in ``arch_v2`` with ADA's defaults and additions:
``G_mapping`` (``mapping_fmaps=None`` = dlatent_size; labels through ``LabelEmbed`` + 2nd-moment
normalisation), ``G_synthesis`` (``fused_modconv=False`` default, ``conv_clamp``, ``fmap_const``,
``use_noise``, ``num_fp16_res``), ``G_main`` (no ``lod``), ``D_main`` (``mbstd_group_size=None`` =
whole batch, ``conv_clamp``, Freeze-D ``freeze_layers``, label ``cmap`` projection).

``conv_clamp`` applies as in NVIDIA's code. ``num_fp16_res`` is recorded, but a network computes in
float32 until ``set_precision`` (``arch_v2``) asks for float16: inference stays float32 (float16 only
changes rounding, and its convolutions are slower on CPU); training (``stylegan_tl.train``) uses the
pickle's own ``num_fp16_res`` by default, as NVIDIA's training does. ``dtype='float16'`` is accepted
and computed in float32.
"""

import numpy as np
import tensorflow as tf

from . import arch_v2, layers
from .errors import StyleGANTLError

_MAPPING_DEFAULTS = dict(
    arch_v2.G_mapping.DEFAULTS,
    mapping_fmaps=None,         # width of the hidden mapping layers, None = dlatent_size
    label_fmaps=None,           # width of the label embedding, None = latent_size
)

_SYNTHESIS_DEFAULTS = dict(
    arch_v2.G_synthesis_stylegan2.DEFAULTS,
    fmap_const=None,            # channels of the constant input, None = nf(1)
    use_noise=True,             # False = no noise inputs
    fused_modconv=False,        # ADA-TF default: non-fused modulated conv
    num_fp16_res=0,             # float16 resolutions when training (set_precision)
    conv_clamp=None,            # clamp conv outputs to +-conv_clamp, None = off
)


class G_mapping(arch_v2.G_mapping):
    """ADA mapping network. Labels: ``LabelEmbed/{weight [label_size, label_fmaps], bias}`` (lrmul 1),
    2nd-moment normalised and concatenated after normalising Z."""

    DEFAULTS = _MAPPING_DEFAULTS
    ALSO_ALLOWED = tuple(_SYNTHESIS_DEFAULTS)

    def hidden_features(self):
        return self.kwargs["mapping_fmaps"] or self.kwargs["dlatent_size"]

    def _build_label_embedding(self):
        k = self.kwargs
        if k["label_size"]:
            embed = k["label_fmaps"] or k["latent_size"]
            self.label_embed = layers.Dense(self.params, "LabelEmbed", k["label_size"], embed)
            return k["latent_size"] + embed
        return k["latent_size"]

    def embed(self, latents, labels):
        x = latents
        if self.kwargs["normalize_latents"]:
            x = layers.normalize_2nd_moment(x)
        if self.kwargs["label_size"]:
            x = tf.concat([x, layers.normalize_2nd_moment(self.label_embed(labels))], axis=1)
        return x


class G_synthesis(arch_v2.G_synthesis_stylegan2):
    """ADA synthesis network (see ``arch_v2.G_synthesis_stylegan2`` for the call)."""

    FUNC_NAME = "G_synthesis"
    DEFAULTS = _SYNTHESIS_DEFAULTS
    ALSO_ALLOWED = tuple(_MAPPING_DEFAULTS)


class G_main(arch_v2.G_main):
    """ADA generator: as StyleGAN2's ``G_main`` without the ``lod`` variable."""

    DEFAULTS = dict(arch_v2.G_main.DEFAULTS, synthesis_func="G_synthesis")
    ALSO_ALLOWED = tuple(_MAPPING_DEFAULTS) + tuple(_SYNTHESIS_DEFAULTS)
    MAPPING = G_mapping
    SYNTHESIS = G_synthesis
    HAS_LOD = False


class D_main(arch_v2.D_stylegan2):
    """ADA discriminator (see ``arch_v2.D_stylegan2``).

    Conditional (label_size > 0): ``LabelEmbed`` (dense, lrmul 1) -> 2nd-moment normalisation ->
    ``Mapping{i}`` (``mapping_layers`` dense layers, lrmul ``mapping_lrmul``) gives ``cmap [N, fmaps]``
    (fmaps = ``mapping_fmaps``, default nf(0)); ``Output`` has fmaps units and the score is
    ``sum(out * cmap, 1) / sqrt(fmaps)``. Unconditional: ``Output`` has ``score_max`` units, the first
    ``score_size`` (a static or call-time kwarg) are returned.
    """

    FUNC_NAME = "D_main"
    DEFAULTS = dict(
        arch_v2.D_stylegan2.DEFAULTS,
        mapping_layers=0,           # extra dense layers for the label embedding
        mapping_fmaps=None,         # their width, None = nf(0)
        mapping_lrmul=0.1,
        mbstd_group_size=None,      # None = whole minibatch
        num_fp16_res=0,             # float16 resolutions when training (set_precision)
        conv_clamp=None,
        freeze_layers=0,            # Freeze-D: first N layers from the top are not trainable
        score_size=1,               # scores returned (auxrot comparison method)
        score_max=1,                # Output units without labels
        # Comparison methods of the ADA paper that are not implemented: only their defaults are accepted.
        augment_strength=0,
        use_pagan=False,
        pagan_num=16,
        pagan_fade=0.5,
        use_spectral_norm=False,
        adaptive_dropout=0,
    )
    UNSUPPORTED = dict(use_pagan=False, use_spectral_norm=False, adaptive_dropout=0)

    def __init__(self, static_kwargs, name="D", seed=0):
        for key, default in self.UNSUPPORTED.items():
            if static_kwargs.get(key, default) != default:
                raise StyleGANTLError(f"D_main: {key}={static_kwargs[key]!r} (an ADA comparison method) is not supported")
        super().__init__(static_kwargs, name, seed)

    def use_mbstd(self):
        return self.kwargs["mbstd_num_features"] > 0

    def _build_label_mapping(self):
        k = self.kwargs
        if not k["label_size"]:
            return k["score_max"]
        self.cmap_dim = k["mapping_fmaps"] or self.nf(0)
        self.label_embed = layers.Dense(self.params, "LabelEmbed", k["label_size"], self.cmap_dim)
        self.label_mapping = [layers.Dense(self.params, f"Mapping{idx}", self.cmap_dim, self.cmap_dim,
                                           lrmul=k["mapping_lrmul"], act=k["nonlinearity"])
                              for idx in range(k["mapping_layers"])]
        return self.cmap_dim

    def __call__(self, images_in, labels_in=None, score_size=None, **kwargs):
        """As ``D_stylegan2``; returns ``[N, score_size]`` (call-time ``score_size`` overrides the static)."""
        scores = super().__call__(images_in, labels_in, **kwargs)
        return scores[:, :self.kwargs["score_size"] if score_size is None else score_size]

    def condition(self, scores, labels):
        """[N, Output units] -> all unconditional scores (sliced by ``__call__``) or the cmap projection."""
        if not self.kwargs["label_size"]:
            return scores
        cmap = layers.normalize_2nd_moment(self.label_embed(labels))
        for dense in self.label_mapping:
            cmap = dense(cmap)
        return tf.reduce_sum(scores * cmap, axis=1, keepdims=True) / np.sqrt(self.cmap_dim)


arch_v2.set_family_kwargs([G_mapping, G_synthesis, G_main, D_main])
