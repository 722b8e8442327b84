"""Keras VGG16 (no top) for the perceptual loss and the optional U-Net encoder.

Weights come from (a) Keras' download cache for 'imagenet'
(`$KERAS_HOME/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`, KERAS_HOME defaulting to
~/.keras), downloaded by Keras if absent and the network allows, (b) a file path (.h5 or
.weights.h5 of a `keras.applications.VGG16(include_top=False)`), or (c) seeded random He-normal
values. Inputs of the models built here are NHWC float32 RGB in [0, 1]; caffe preprocessing
(x255, RGB->BGR, minus the ImageNet BGR mean, no std) happens inside.
"""

import contextlib
import os

import keras
import numpy as np
from absl import logging

from superres_tf.errors import WeightsError

IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def imagenet_cache_path():
    """Where Keras keeps (or would download) the ImageNet VGG16 no-top weights."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models", IMAGENET_FILE)


@keras.saving.register_keras_serializable(package="superres_tf")
class CaffePreprocess(keras.layers.Layer):
    """RGB in [0, 1] (NHWC) -> caffe-style VGG input: BGR in 0-255 minus the ImageNet mean."""

    def call(self, inputs):
        bgr = keras.ops.flip(keras.ops.cast(inputs, self.compute_dtype) * 255.0, axis=-1)
        return bgr - keras.ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=self.compute_dtype)

    def get_config(self):
        return super().get_config()


@contextlib.contextmanager
def dtype_policy(name):
    """Build layers with the Keras dtype policy `name` ('float32', 'mixed_bfloat16', ...) inside."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)


def float32_policy():
    """Build layers in float32 even when a mixed-precision global policy is set."""
    return dtype_policy("float32")


def _randomize(model, seed):
    """Set every conv kernel to seeded He-normal values and every bias to zero (in place)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            std = np.sqrt(2.0 / np.prod(kernel.shape[:3]))
            layer.set_weights([rng.normal(0.0, std, kernel.shape).astype(np.float32),
                               np.zeros_like(bias)])


def _download_imagenet():
    """Let Keras fetch the ImageNet weights into its cache; returns the local path."""
    from keras.src.applications import vgg16
    return keras.utils.get_file(IMAGENET_FILE, vgg16.WEIGHTS_PATH_NO_TOP, cache_subdir="models",
                                file_hash="6d6bbae143d832006294945121d1f1fc")


def load_vgg16(weights="imagenet", seed=0):
    """Build VGG16 without its classifier (input NHWC caffe-preprocessed, any size).

    Args:
      weights: 'imagenet' (Keras cache, download attempted if missing), a file path, or None
        (seeded random weights, on purpose).
      seed: seed of the random weights, used when `weights` is None or ImageNet weights cannot be
        had.

    Returns:
      (model, source): `source` says where the weights came from; it starts with 'RANDOM' whenever
      the weights are random, so callers can record it.
    """
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    if weights is None:
        _randomize(model, seed)
        return model, f"RANDOM (seed {seed}, requested with vgg_weights=None)"
    if weights == "imagenet":
        path = imagenet_cache_path()
        if not os.path.exists(path):
            try:
                path = _download_imagenet()
            except Exception as error:  # any failure to fetch means: no ImageNet weights here
                _randomize(model, seed)
                source = (f"RANDOM (seed {seed}): ImageNet VGG16 weights not in {imagenet_cache_path()} "
                          f"and could not be downloaded ({type(error).__name__})")
                logging.warning("!" * 78 + "\n%s\nThe perceptual loss uses a RANDOM VGG16: features "
                                "are not ImageNet features. Put the file there (see docs/superres.md) "
                                "for the real loss.\n" + "!" * 78, source)
                return model, source
    else:
        path = weights
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: VGG16 weights file not found")
    try:
        model.load_weights(path)
    except Exception as error:
        raise WeightsError(f"{path}: cannot load VGG16 weights ({str(error).splitlines()[0]})") from None
    return model, ("imagenet " if weights == "imagenet" else "file ") + path


def feature_model(vgg, layers):
    """[0, 1] RGB NHWC -> list of the named VGG16 layer outputs (graph cut after the deepest)."""
    inputs = keras.Input((None, None, 3))
    tapped = keras.Model(vgg.inputs, [vgg.get_layer(name).output for name in layers])
    tapped.trainable = False
    return keras.Model(inputs, tapped(CaffePreprocess()(inputs)), name="vgg16_features")
