"""Keras 3 U-Net for super-resolution: low-resolution NHWC [0, 1] in, `scale` x larger out.

Layout: stem conv -> `depth` encoder levels (convs, then 2x2 max-pool; optionally a VGG16 encoder)
-> bottleneck -> `depth` decoder levels (pixel-shuffle x2 upsampling with ICNR init, concatenate
the skip, convs) -> log2(scale) pixel-shuffle x2 upsamplers -> 3-channel conv, added to a bicubic
upsampling of the input (global residual), so the untrained network starts as plain bicubic.

Pixel shuffle is `tf.nn.depth_to_space`, whose output pixel (row i, col j) of a 2x2 block takes
input channel (i * 2 + j) * C + c. ICNR therefore TILES one C-channel kernel 4 times along the
output-channel axis (PyTorch's PixelShuffle would need each channel repeated 4 times instead):
at initialisation every 2x2 block is constant, i.e. nearest-neighbour upsampling.
"""

import math
import os
import zipfile

import keras
import tensorflow as tf

from superres_tf.degrade import check_scale
from superres_tf.errors import ConfigError, WeightsError
from superres_tf.features import CaffePreprocess, load_vgg16

# VGG16 layer giving the features at stride 2**level, for the optional encoder.
VGG_TAPS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")


@keras.saving.register_keras_serializable(package="superres_tf")
class ICNR(keras.initializers.Initializer):
    """ICNR kernel initializer for a conv followed by depth_to_space(`factor`).

    Draws a kernel with C = out_channels / factor**2 outputs from `base` and tiles it factor**2
    times along the last axis (TF's depth_to_space order), so conv + shuffle starts as
    nearest-neighbour upsampling of a C-channel conv. Reference: Aitken et al. 2017, "Checkerboard
    artifact free sub-pixel convolution".
    """

    def __init__(self, factor=2, base="he_normal"):
        self.factor = factor
        self.base = keras.initializers.get(base)

    def __call__(self, shape, dtype=None):
        blocks = self.factor ** 2
        if shape[-1] % blocks:
            raise ConfigError(f"ICNR: {shape[-1]} output channels is not a multiple of {blocks}")
        kernel = self.base(tuple(shape[:-1]) + (shape[-1] // blocks,), dtype=dtype)
        return keras.ops.tile(kernel, (1,) * (len(shape) - 1) + (blocks,))

    def get_config(self):
        return {"factor": self.factor, "base": keras.initializers.serialize(self.base)}


class _Upscale(keras.layers.Layer):
    """Base of layers that enlarge NHWC height and width by an integer `factor`."""

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        h, w = (None if s is None else s * self.factor for s in (h, w))
        return (n, h, w, c // self.channel_divisor(self.factor))  # subclasses define the divisor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="superres_tf")
class PixelShuffle(_Upscale):
    """depth_to_space: NHWC [N, H, W, C * f * f] -> [N, H * f, W * f, C] (TF channel order)."""

    @staticmethod
    def channel_divisor(factor):
        return factor ** 2

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.factor)


@keras.saving.register_keras_serializable(package="superres_tf")
class BicubicUpsample(_Upscale):
    """NHWC [N, H, W, C] -> [N, H * f, W * f, C] by bicubic interpolation (no antialiasing)."""

    @staticmethod
    def channel_divisor(factor):
        return 1

    def call(self, inputs):
        size = tf.shape(inputs)[1:3] * self.factor
        return tf.cast(tf.image.resize(inputs, size, method="bicubic"), inputs.dtype)


def _conv(channels, name, kernel_size=3, **kwargs):
    """3x3 'same' conv with ReLU (the U-Net's basic unit)."""
    return keras.layers.Conv2D(channels, kernel_size, padding="same", activation="relu", name=name,
                               **kwargs)


def _conv_block(x, channels, convs, name):
    """`convs` successive 3x3 conv + ReLU layers."""
    for index in range(convs):
        x = _conv(channels, f"{name}_conv{index}")(x)
    return x


def upsample2x(x, channels, name):
    """Pixel-shuffle x2 upsampler: 3x3 conv to 4*channels (ICNR) -> depth_to_space -> ReLU."""
    x = keras.layers.Conv2D(channels * 4, 3, padding="same", kernel_initializer=ICNR(2),
                            name=f"{name}_conv")(x)
    x = PixelShuffle(2, name=f"{name}_shuffle")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _plain_encoder(inputs, width, depth, convs):
    """Conv encoder: returns (skip features per level, bottleneck features)."""
    x = _conv(width, "stem")(inputs)
    skips = []
    for level in range(depth):
        x = _conv_block(x, width * 2 ** level, convs, f"enc{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    return skips, _conv_block(x, width * 2 ** depth, convs, "bottleneck")


def _vgg_encoder(inputs, depth, weights):
    """VGG16 encoder (frozen weights trainable with the rest): taps at strides 1 .. 2**depth."""
    vgg, source = load_vgg16(weights)
    if source.startswith("RANDOM") and weights is not None:
        raise WeightsError(f"encoder_weights={weights!r}: ImageNet VGG16 weights not available "
                           "offline; use encoder_weights=None or a weights file path")
    taps = keras.Model(vgg.inputs, [vgg.get_layer(VGG_TAPS[level]).output for level in range(depth + 1)],
                       name="vgg16_encoder")
    features = taps(CaffePreprocess(name="caffe_preprocess")(inputs))
    return list(features[:-1]), features[-1]


def build_unet(scale=4, width=32, depth=2, convs=2, residual=True, encoder=None,
               encoder_weights="imagenet", name=None):
    """Build the super-resolution U-Net.

    Args:
      scale: 1, 2 or 4: output height/width = scale * input height/width.
      width: channels of the first level; level d has width * 2**d (plain encoder).
      depth: number of encoder/decoder levels (input sides must be multiples of 2**depth; enhance
        pads tiles for you). 0 gives a plain conv net.
      convs: 3x3 convs per level.
      residual: add a bicubic upsampling of the input to the output (the output conv starts at 0).
      encoder: None (plain conv encoder) or 'vgg16' (Keras VGG16 layers, depth <= 4).
      encoder_weights: 'imagenet', a weights file path or None, for encoder='vgg16'.
      name: model name (default 'unet_x{scale}').

    Returns:
      keras.Model mapping NHWC float32 [N, H, W, 3] in [0, 1] to [N, H*scale, W*scale, 3]
      (float32, nominally [0, 1]: clip when converting to pixels).
    """
    check_scale(scale)
    if width < 1 or depth < 0 or convs < 1:
        raise ConfigError(f"width={width}, depth={depth}, convs={convs}: expected width >= 1, "
                          "depth >= 0, convs >= 1")
    inputs = keras.Input((None, None, 3), name="low")
    if encoder is None:
        skips, x = _plain_encoder(inputs, width, depth, convs)
    elif encoder == "vgg16":
        if not 1 <= depth <= 4:
            raise ConfigError(f"encoder='vgg16' needs 1 <= depth <= 4, got {depth}")
        skips, x = _vgg_encoder(inputs, depth, encoder_weights)
    else:
        raise ConfigError(f"encoder={encoder!r}: expected None or 'vgg16'")
    for level in reversed(range(depth)):
        x = upsample2x(x, width * 2 ** level, f"dec{level}_up")
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = _conv_block(x, width * 2 ** level, convs, f"dec{level}")
    for step in range(int(math.log2(scale))):
        x = upsample2x(x, width, f"up{step}")
    out = keras.layers.Conv2D(3, 3, padding="same", dtype="float32", name="to_rgb",
                              kernel_initializer="zeros" if residual else "glorot_uniform")(x)
    if residual:
        base = BicubicUpsample(scale, dtype="float32", name="bicubic")(inputs) if scale > 1 else inputs
        out = keras.layers.Add(name="residual", dtype="float32")([out, base])
    return keras.Model(inputs, out, name=name or f"unet_x{scale}")


def model_multiple(model):
    """Input sides must be multiples of this (2**number of max-pool / stride-2 stages)."""
    pools = sum(1 for layer in all_layers(model)
                if isinstance(layer, keras.layers.MaxPooling2D) or getattr(layer, "strides", (1,)) == (2, 2))
    return 2 ** pools


def all_layers(model):
    """Layers of `model`, nested models flattened."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def load_model(path):
    """Load a .keras super-resolution model; one-line WeightsError naming `path` if unusable."""
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: model file not found")
    if not path.endswith((".keras", ".h5")):
        raise WeightsError(f"{path}: not a Keras model file (expected a .keras or .h5 file)")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: not a Keras .keras model (not a zip archive)")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise WeightsError(f"{path}: cannot load model ({str(error).splitlines()[0]})") from None
