"""Perceptual ("feature") loss: pixel L1 + VGG16 feature L1 at several depths + Gram-matrix L1.

After fastai lesson 7's FeatureLoss and Johnson et al. 2016, re-tuned for Keras' VGG16 (no batch
norm, caffe preprocessing, so raw feature magnitudes are in the tens to thousands and grow with
depth). To make one set of weights meaningful for any VGG16 weights, each feature and Gram term is
a RELATIVE L1: mean |f(pred) - f(true)| / mean |f(true)| per image. The default layer weights keep
fastai's 5 : 15 : 2 ratio, scaled so that for a bicubic x4 reconstruction of the sample photos the
feature terms are about as large as the pixel term (see docs/superres.md).

Inputs: y_true, y_pred NHWC float32 RGB in [0, 1]; the loss is computed in float32 even under
mixed precision.
"""

import keras
from absl import logging

from superres_tf.errors import ConfigError
from superres_tf.vgg import feature_model, float32_policy, load_vgg16

DEFAULT_LAYERS = ("block2_conv2", "block3_conv3", "block4_conv3")
DEFAULT_WEIGHTS = (0.05, 0.15, 0.02)
DEFAULT_GRAM_WEIGHTS = (0.005, 0.015, 0.002)
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
    """pixel_weight * L1 + sum_i weights[i] * relL1(VGG_i) + sum_i gram_weights[i] * relL1(Gram_i).

    Args:
      vgg_weights: 'imagenet' (Keras' cache, `~/.keras/models/` + the notop .h5), a weights file
        path, or None (seeded random VGG16 on purpose). If ImageNet weights cannot be had, a seeded
        random VGG16 is used with a loud warning; `weights_source` then starts with 'RANDOM' and
        the training script writes it into the run's outputs.
      layers: names of Keras VGG16 layers whose outputs are compared.
      weights: one weight per layer for the feature terms.
      gram_weights: one weight per layer for the Gram (style) terms; None or zeros to drop them.
      pixel_weight: weight of the pixel L1 term.
      seed: seed of random VGG16 weights.

    Call arguments: y_true, y_pred: NHWC float RGB in [0, 1] of equal shape. Returns the mean over
    the batch (Keras reduction); `per_term(y_true, y_pred)` gives each term.

    Example:
      loss = PerceptualLoss(vgg_weights=None); value = loss(high, model(low))
    """

    def __init__(self, vgg_weights="imagenet", layers=DEFAULT_LAYERS, weights=DEFAULT_WEIGHTS,
                 gram_weights=DEFAULT_GRAM_WEIGHTS, pixel_weight=1.0, seed=0, name="perceptual",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        layers, weights = tuple(layers), tuple(weights)
        gram_weights = tuple(gram_weights) if gram_weights is not None else (0.0,) * len(layers)
        if not len(layers) == len(weights) == len(gram_weights):
            raise ConfigError(f"PerceptualLoss: {len(layers)} layers but {len(weights)} weights and "
                              f"{len(gram_weights)} gram_weights")
        self.vgg_weights, self.layers, self.weights = vgg_weights, layers, weights
        self.gram_weights, self.pixel_weight, self.seed = gram_weights, pixel_weight, seed
        with float32_policy():
            vgg, self.weights_source = load_vgg16(vgg_weights, seed=seed)
            unknown = [n for n in layers if n not in {layer.name for layer in vgg.layers}]
            if unknown:
                raise ConfigError(f"PerceptualLoss: unknown VGG16 layers {unknown}")
            self.features = feature_model(vgg, layers) if layers else None
        logging.info("perceptual loss: VGG16 weights = %s", self.weights_source)

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
        return {**super().get_config(), "vgg_weights": self.vgg_weights, "layers": list(self.layers),
                "weights": list(self.weights), "gram_weights": list(self.gram_weights),
                "pixel_weight": self.pixel_weight, "seed": self.seed}
