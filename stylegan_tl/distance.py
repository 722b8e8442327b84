"""Image distances for the projector: LPIPS on VGG16, pretrained-feature distance, or pixels.

Every distance compares NHWC float32 images in [0, 1] with one fixed target and returns one value
per image (differentiable, for use inside ``tf.GradientTape``):

* ``lpips``: LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a
  Perceptual Metric", v0.1, VGG variant): features at VGG16's relu1_2, relu2_2, relu3_3, relu4_3
  and relu5_3 (Keras layers ``block1_conv2`` ... ``block5_conv3``), each unit-normalised over
  channels; squared differences weighted per channel by the calibrated linear layers
  (``lin0.model.1.weight`` ... ``lin4.model.1.weight``, shape [1, C, 1, 1], in the ``lpips``
  package's ``lpips/weights/v0.1/vgg.pth``), averaged over positions and summed over layers. The
  VGG16 underneath is Keras' ImageNet VGG16 (the Caffe weights, Caffe preprocessing), not the
  torchvision VGG16 the linear layers were calibrated on: values are close to, not equal to, the
  ``lpips`` package's.
* ``features``: the same construction with unit channel weights on the taps of the super-resolution
  work's pretrained backbone (``superres_tf.features``: VGG16 ImageNet or the offline
  EfficientNet-Lite0).
* ``pixels``: mean squared difference of the pixels.

:func:`make_distance` picks the first one available (``kind='auto'``) and says which in ``name``
and ``source``. ``superres_tf`` is imported lazily, inside :func:`make_distance`, and only for the
first two kinds; TensorFlow when a distance is built.
"""

import importlib.util
import os

import numpy as np

from .errors import StyleGANTLError

KINDS = ("auto", "lpips", "features", "pixels")
LPIPS_TAPS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
LPIPS_PACKAGE_FILE = os.path.join("weights", "v0.1", "vgg.pth")


def _unit_channels(x):
    """Divide each feature vector (last axis) by its length (+1e-10 as LPIPS; finite gradient at 0)."""
    import tensorflow as tf

    return x / (tf.sqrt(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True) + 1e-20) + 1e-10)


class FeatureDistance:
    """Distance of images to a target through a list of feature maps.

    Args:
        name, source: what it is and where its weights came from (recorded by the projector).
        extract: f(images [N, H, W, 3] in [0, 1]) -> list of [N, h, w, C] maps.
        channel_weights: one [C] array per map (LPIPS linear layers), or None for ones.
        normalize: unit-normalise the channels of each map first (LPIPS).
        target: [1, H, W, 3] float32 in [0, 1].
    Call: images [N, H, W, 3] -> [N]: sum over maps of sum_c w_c * mean_(h,w) (a - b)^2.
    """

    def __init__(self, name, source, extract, channel_weights, normalize, target):
        import tensorflow as tf

        self.name, self.source, self._extract, self._normalize = name, source, extract, normalize
        target_features = extract(tf.convert_to_tensor(target, tf.float32))
        self._target = [self._prepare(f) for f in target_features]
        if channel_weights is None:
            channel_weights = [np.ones([f.shape[-1]]) for f in target_features]
        self._weights = [tf.constant(np.asarray(w, np.float32).reshape(-1)) for w in channel_weights]

    def _prepare(self, features):
        return _unit_channels(features) if self._normalize else features

    def __call__(self, images):
        import tensorflow as tf

        total = 0.0
        for features, target, weights in zip(self._extract(images), self._target, self._weights):
            squared = tf.square(self._prepare(features) - target)
            total += tf.reduce_sum(tf.reduce_mean(squared, axis=[1, 2]) * weights, axis=-1)
        return total


def lpips_package_weights():
    """Path of ``vgg.pth`` inside an installed ``lpips`` package (found without importing it, which
    would import PyTorch), or None."""
    spec = importlib.util.find_spec("lpips")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, LPIPS_PACKAGE_FILE)
        if os.path.isfile(path):
            return path
    return None


def read_lpips_weights(path):
    """The five LPIPS-VGG linear layers of a ``vgg.pth`` as [C] arrays (read without PyTorch)."""
    from superres_tf.errors import SuperResError
    from superres_tf.torch_weights import read_state_dict

    try:
        state = read_state_dict(path)
    except SuperResError as e:
        raise StyleGANTLError(str(e)) from None
    weights = []
    for i, channels in enumerate(LPIPS_CHANNELS):
        key = f"lin{i}.model.1.weight"
        if key not in state or state[key].size != channels:
            raise StyleGANTLError(f"{path}: not LPIPS-VGG weights ({key} with {channels} values missing)")
        weights.append(np.asarray(state[key], np.float32).reshape(channels))
    return weights


def _pixels(target, why):
    channels = np.full([target.shape[-1]], 1.0 / target.shape[-1], np.float32)
    return FeatureDistance("pixels", why, lambda x: [x], [channels], False, target)


def make_distance(target, kind="auto", lpips_weights=None, backbone=None):
    """The projector's distance to ``target`` ([1, H, W, 3] float32 in [0, 1]).

    Args:
        kind: 'lpips' (needs ImageNet VGG16 in the Keras cache, or downloadable, and the LPIPS
            linear layers), 'features' (a pretrained ``superres_tf.features`` backbone), 'pixels',
            or 'auto': the first of these that is available.
        lpips_weights: a ``vgg.pth`` path; default: the ``lpips`` package's, if installed.
        backbone: a ``superres_tf.features.Backbone`` to use instead of ``load_backbone('auto')``.
    Returns:
        A :class:`FeatureDistance`; its ``name`` and ``source`` say what was chosen and why.
    """
    if kind not in KINDS:
        raise StyleGANTLError(f"--distance={kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "pixels":
        return _pixels(target, "requested")
    lin_path = lpips_weights or lpips_package_weights()
    if lpips_weights and not os.path.isfile(lpips_weights):
        raise StyleGANTLError(f"{lpips_weights}: LPIPS weights file not found")
    try:
        from superres_tf.features import load_backbone
    except ImportError as e:
        if kind != "auto":
            raise StyleGANTLError(f"--distance={kind} needs the superres_tf package ({e})") from None
        return _pixels(target, f"superres_tf unavailable ({e})")
    backbone = backbone or load_backbone("auto")
    has_vgg = backbone.name == "vgg16" and backbone.pretrained
    if kind == "lpips" and not (has_vgg and lin_path):
        missing = [] if has_vgg else [f"ImageNet VGG16 weights (have: {backbone.name}, {backbone.source})"]
        missing += [] if lin_path else ["LPIPS linear layers (pip install --no-deps lpips, or --lpips_weights)"]
        raise StyleGANTLError(f"--distance=lpips needs {' and '.join(missing)}")
    if has_vgg and lin_path and kind in ("auto", "lpips"):
        extract = backbone.feature_model(LPIPS_TAPS)
        return FeatureDistance("lpips-vgg16", f"{backbone.source}; linear layers {lin_path}",
                               lambda x: list(extract(x)), read_lpips_weights(lin_path), True, target)
    if backbone.pretrained:
        why = "" if lin_path or backbone.name != "vgg16" else " (no LPIPS linear layers)"
        return FeatureDistance(f"features-{backbone.name}", backbone.source + why, backbone.features, None,
                               True, target)
    if kind == "features":
        raise StyleGANTLError(f"--distance=features needs a pretrained backbone ({backbone.source})")
    return _pixels(target, f"no pretrained features ({backbone.source})")
