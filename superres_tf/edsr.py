"""Residual super-resolution network that works at the LOW resolution (EDSR-baseline-like).

Layout (NHWC float32 in [0, 1]): 3x3 conv stem to `width` channels -> `blocks` residual blocks
(3x3 conv, ReLU, 3x3 conv, added to the block input; no normalisation) -> 3x3 conv, added to the
stem output -> 3x3 conv to C * scale**2 channels (zero-initialised) -> pixel shuffle by `scale`
-> added to a bicubic upsampling of the input. Every conv but the last runs at the input
resolution, so the cost per OUTPUT pixel is about 2 * parameters / scale**2 FLOPs.

`output='luma'` (C = 1): the network predicts one grey residual, added equally to R, G and B.
Adding the same value to R, G and B leaves Cb and Cr of BT.601 YCbCr unchanged (their R, G, B
coefficients sum to zero), so the chroma of the result is exactly the bicubic chroma: no colour
fringes by construction, at the price of no chroma restoration. `output='rgb'` (C = 3) predicts a
full colour residual. References: Lim et al. 2017 (EDSR), Shi et al. 2016 (sub-pixel convolution).
"""

import keras

from superres_tf.degrade import check_scale
from superres_tf.errors import ConfigError
from superres_tf.unet import BicubicUpsample, PixelShuffle

OUTPUTS = {"luma": 1, "rgb": 3}


def _conv(channels, name, **kwargs):
    return keras.layers.Conv2D(channels, 3, padding="same", name=name, **kwargs)


def residual_block(x, width, name):
    """x + conv(relu(conv(x))), both 3x3 with `width` channels."""
    y = _conv(width, f"{name}_conv0", activation="relu")(x)
    y = _conv(width, f"{name}_conv1")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def build_edsr(scale=4, width=64, blocks=12, output="luma", name=None):
    """Build the network.

    Args:
      scale: 1, 2 or 4: output height/width = scale * input height/width (any input size).
      width: channels of every conv in the trunk.
      blocks: number of residual blocks.
      output: 'luma' (one grey residual: chroma stays bicubic) or 'rgb' (colour residual).
      name: model name (default 'edsr_x{scale}').

    Returns:
      keras.Model mapping NHWC float32 [N, H, W, 3] in [0, 1] to [N, H*scale, W*scale, 3]
      (float32, nominally [0, 1]: clip when converting to pixels).
    """
    check_scale(scale)
    if width < 1 or blocks < 0:
        raise ConfigError(f"width={width}, blocks={blocks}: expected width >= 1 and blocks >= 0")
    if output not in OUTPUTS:
        raise ConfigError(f"output={output!r}: expected one of {sorted(OUTPUTS)}")
    inputs = keras.Input((None, None, 3), name="low")
    stem = _conv(width, "stem")(inputs)
    x = stem
    for index in range(blocks):
        x = residual_block(x, width, f"block{index}")
    x = _conv(width, "trunk_end")(x)
    x = keras.layers.Add(name="trunk_skip")([stem, x])
    channels = OUTPUTS[output]
    x = _conv(channels * scale ** 2, "to_residual", kernel_initializer="zeros", dtype="float32")(x)
    if scale > 1:
        x = PixelShuffle(scale, dtype="float32", name="shuffle")(x)
    if output == "luma":
        x = keras.layers.Concatenate(name="grey_to_rgb", dtype="float32")([x, x, x])
    base = BicubicUpsample(scale, dtype="float32", name="bicubic")(inputs) if scale > 1 else inputs
    out = keras.layers.Add(name="residual", dtype="float32")([x, base])
    return keras.Model(inputs, out, name=name or f"edsr_x{scale}")
