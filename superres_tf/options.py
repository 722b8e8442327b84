"""What a super-resolution training run does: :class:`Options`, the one source of its settings.

Each field has its default, its help text and, where it has one, its choices; the flags of
``python -m superres_tf.train`` are generated from the fields (:func:`superres_tf.conventions.define_flags`;
the :class:`Degradation` fields become flat flags such as ``--jpeg_quality``), ``run_training``
takes them as keywords, every value is recorded in the run's ``config.json``, and the pipeline's
settings refer to them. No TensorFlow import (the pipeline reads this module before it starts).

Adding an option: one field here, and its use in :mod:`superres_tf.train`.
"""

import dataclasses
from typing import Optional, Tuple

from superres_tf.conventions import option

ARCHS = ("edsr", "unet")
BACKBONES = ("auto", "vgg16", "efficientnet_lite0", "random", "random_efficientnet_lite0")
PRECISIONS = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
STRATEGIES = ("default", "mirrored", "one_device")


def span(kind):
    """A parser of range flags: ``['30', '95']`` -> ``(30, 95)``, one value ``v`` -> ``(v, v)``,
    none -> None."""
    def parse(values):
        values = [kind(v) for v in values if v != ""]
        return None if not values else (values[0], values[-1])
    return parse


@dataclasses.dataclass
class Degradation:
    """How training photos are made low-resolution (the keywords of :func:`superres_tf.degrade`).

    The defaults are what the model meets in use: clean antialiased bicubic on a third of the
    crops, JPEG at any quality 30-95 on the rest; mild blur (before the downscale, in
    high-resolution pixels) and mild noise on a few.
    """

    resample: str = option("bicubic", "Downscaling filter.", choices=("bicubic", "bilinear"))
    jpeg_quality: Optional[Tuple[int, int]] = option((30, 95), "JPEG quality range of the degradation "
                                                     "('' = no JPEG).", parse=span(int))
    jpeg_prob: float = option(0.65, "Probability of the JPEG step.")
    blur_sigma: Optional[Tuple[float, float]] = option((0.3, 1.2), "Gaussian blur sigma range before the "
                                                       "downscale ('' = none).", parse=span(float))
    blur_prob: float = option(0.1, "Probability of the blur step (when --blur_sigma is set).")
    noise_sigma: Optional[Tuple[float, float]] = option((0.5, 3.0), "Gaussian noise sigma range, 0-255 units "
                                                        "('' = none).", parse=span(float))
    noise_prob: float = option(0.1, "Probability of the noise step (when --noise_sigma is set).")


@dataclasses.dataclass
class Options:
    """Every setting of a training run (see the module docstring)."""

    data: str = option(None, "Folder of training photos (sub-folders included).", required=True)
    outdir: str = option(None, "Output folder (checkpoints, model.keras, TensorBoard, config.json).", required=True)
    scale: int = option(4, "Upscaling factor: 1, 2 or 4.")
    arch: str = option("unet", "Network: 'edsr' (residual blocks at low resolution) or 'unet'.", choices=ARCHS)
    width: int = option(32, "Channels (edsr: of every conv; unet: at the first level).")
    depth: int = option(2, "unet: levels.")
    convs: int = option(2, "unet: 3x3 convs per level.")
    blocks: int = option(12, "edsr: residual blocks.")
    output: str = option("luma", "edsr: grey residual (chroma stays bicubic) or colour.", choices=("luma", "rgb"))
    crops: Tuple[int, ...] = option((96, 192), "High-resolution crop size of each progressive-resizing stage.")
    stage_epochs: Tuple[int, ...] = option((4, 2), "Epochs of each stage.")
    photo_scales: Tuple[float, ...] = option((1.0,), "Fractions of each photo's size used for training crops.")
    flips: str = option("horizontal", "Crop orientations: 'horizontal' (mirror only) or 'dihedral' (the 8 "
                        "flips and 90-degree turns, as EDSR trains).", choices=("horizontal", "dihedral"))
    steps_per_epoch: int = option(100, "Optimizer steps per epoch.")
    batch_size: int = option(16, "Global batch size.")
    max_lr: float = option(1e-3, "Peak learning rate.", flag="lr")
    schedule: str = option("onecycle", "Learning-rate schedule.", choices=("onecycle", "cosine"))
    weight_decay: float = option(1e-4, "AdamW weight decay.")
    holdout: float = option(0.2, "Fraction of the files held out (by file) for evaluation (from Python also "
                            "a list of file names, relative to --data).")
    seed: int = option(0, "Seed of the split, the initial weights and the data stream.")
    backbone: str = option("auto", "Features of the perceptual loss: 'auto' (VGG16 ImageNet if cached or "
                           "downloadable, else EfficientNet-Lite0 ImageNet from its package), 'vgg16', "
                           "'efficientnet_lite0', or 'random' (tests only). Not loaded for a pixel-only loss.",
                           choices=BACKBONES)
    backbone_weights: Optional[str] = option(None, "A weights file for the backbone (overrides its default source).")
    loss_layers: Optional[Tuple[str, ...]] = option(None, "Backbone layers of the feature loss (default: the "
                                                    "backbone's taps; '' = pixel L1 only, no backbone).")
    loss_weights: Optional[Tuple[float, ...]] = option(None, "Feature-loss weight per layer (default: the backbone's).")
    gram_weights: Optional[Tuple[float, ...]] = option(None, "Gram-loss weight per layer (default: the backbone's).")
    pixel_weight: float = option(1.0, "Pixel L1 weight.")
    degradation: Degradation = option(help="How the low-resolution inputs are made (flat flags: --resample, "
                                      "--jpeg_quality, ...); from Python a Degradation or a dict of its fields.",
                                      default_factory=Degradation)
    mixed_precision: str = option("none", "Mixed precision (bf16 suits recent CPUs).", choices=tuple(sorted(PRECISIONS)))
    strategy: str = option("default", "tf.distribute strategy.", choices=STRATEGIES)
    resume: bool = option(False, "Continue the checkpoint in --outdir (epoch, step, optimizer).")
    val_max_side: int = option(256, "Held-out photos are centre-cropped to this size for per-epoch metrics.")
    verbose: object = option("auto", "Keras fit verbosity: 'auto' (a progress bar on a terminal, one line per "
                             "epoch otherwise), 0, 1 or 2.", flag=False)
