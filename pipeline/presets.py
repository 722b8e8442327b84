"""Pipeline settings: the ``demo``, ``paper`` and ``test`` presets and the flag overrides.

``demo`` (default) runs offline on a 2-core CPU in under 15 minutes and shows transfer learning:
the small 64 px StyleGAN2 shipped in ``data/models/`` (trained on all the embedded photos) is
fine-tuned on a visibly different subset of them, ``data/samples/landscapes/sky-and-water/``;
the report compares its samples before and after, then sharpens them with the embedded x4
super-resolution model. ``paper`` is the article's setting on a
GPU box: ``stylegan2-church-config-f`` at 256 px fine-tuned with ADA on the user's photos, then a
x4 U-Net trained with the ImageNet VGG16 perceptual loss. ``test`` is a seconds-long tiny run for
the test suite.
"""

import dataclasses
import glob
import os
from typing import List, Optional

from pipeline import PipelineError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED_PHOTOS = os.path.join(REPO_ROOT, "data", "samples", "landscapes")
DEMO_PHOTOS = os.path.join(EMBEDDED_PHOTOS, "sky-and-water")  # the demo's fine-tuning photos
SHIPPED_MODELS = os.path.join(REPO_ROOT, "data", "models")
# Special values of --resume_pkl and --sr_model.
AUTO = "auto"          # resume_pkl: the pickle shipped in data/models/ if any, else from scratch
SCRATCH = "none"       # resume_pkl: a new network from create_networks
EMBEDDED = "embedded"  # sr_model: the x4 model shipped in superres_tf/weights/
TRAIN = "train"        # sr_model: train one in the sr_train stage


@dataclasses.dataclass
class Config:
    """Every setting of a pipeline run (presets fill them, flags override them)."""

    preset: str = "demo"
    work_dir: str = "runs/demo"
    data_dir: Optional[str] = None      # photo folder; None means "the preset has none: required"
    start_photos: Optional[str] = None  # the photos the starting network was trained on, if known
                                        # (the transfer figures' nearest-photo search includes them)
    seed: int = 0
    # GAN fine-tuning (stylegan_tl.train.run_training)
    resume_pkl: str = AUTO              # path, URL, official name, 'auto' or 'none'
    family: str = "stylegan2"           # architecture of a from-scratch network
    resolution: int = 64
    fmap_max: int = 64                  # channel cap of a from-scratch network
    kimg: float = 5.0
    batch: int = 8
    gamma: Optional[float] = None       # R1 weight; None = the training default for the resolution
    aug: str = "noaug"                  # 'noaug' or 'ada'
    mirror: bool = True
    freezed: int = 0
    snap: int = 1                       # snapshot interval, ticks of 4 kimg (stylegan_tl.train)
    # Sampling (stylegan_tl.generate)
    seeds: List[int] = dataclasses.field(default_factory=lambda: list(range(8)))
    truncation_psi: float = 0.7
    # Super-resolution (superres_tf)
    sr_scale: int = 4
    sr_model: str = EMBEDDED            # path of a .keras, 'embedded' or 'train'
    sr_crops: List[int] = dataclasses.field(default_factory=lambda: [96, 192])  # progressive
    sr_epochs: List[int] = dataclasses.field(default_factory=lambda: [4, 2])    # per crop size
    sr_steps: int = 100                 # steps per epoch
    sr_batch: int = 16
    sr_backbone: str = "auto"           # perceptual-loss features: 'auto', 'vgg16', 'efficientnet_lite0',
                                        # 'random' (tests) or a weights file (.h5 VGG16, .pth Lite0)
    heldout: float = 0.2                # fraction of the photos held out for SR metrics
    tile: int = 256
    overlap: int = 32


PRESETS = {
    "demo": dict(data_dir=DEMO_PHOTOS, start_photos=EMBEDDED_PHOTOS),  # the other defaults are the demo's
    "paper": dict(
        work_dir="runs/paper", resume_pkl="stylegan2-church-config-f", resolution=256, kimg=200.0,
        batch=32, gamma=100.0, aug="ada", snap=10, seeds=list(range(16)), sr_model=TRAIN,
        sr_crops=[128, 256], sr_epochs=[20, 20], sr_steps=500, sr_batch=16, sr_backbone="vgg16",
        heldout=0.1),
    "test": dict(
        work_dir="runs/test", resume_pkl=SCRATCH, resolution=16, fmap_max=16, kimg=0.016,
        batch=4, snap=1, seeds=[0, 1, 2], sr_scale=2, sr_model=TRAIN, sr_crops=[32],
        sr_epochs=[1], sr_steps=2, sr_batch=2, sr_backbone="random", heldout=0.34, tile=32,
        overlap=8),
}


def shipped_starting_pickle() -> Optional[str]:
    """The first ``data/models/*.pkl`` shipped in the repository, or None."""
    found = sorted(glob.glob(os.path.join(SHIPPED_MODELS, "*.pkl")))
    return found[0] if found else None


def make_config(preset: str, **overrides) -> Config:
    """Preset values, then every override that is not None.

    Raises:
      PipelineError: unknown preset or setting, or a preset without photos and no ``data_dir``.
    """
    if preset not in PRESETS:
        raise PipelineError(f"--preset={preset}: expected one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise PipelineError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = Config(**values)
    if not cfg.data_dir:
        raise PipelineError(f"--data_dir is required with --preset={preset} (a folder of photos)")
    if cfg.resume_pkl == AUTO:
        cfg.resume_pkl = shipped_starting_pickle() or SCRATCH
    elif overrides.get("start_photos") is None and cfg.resume_pkl != shipped_starting_pickle():
        cfg.start_photos = None  # another starting network: its training photos are unknown
    return cfg


def parse_seeds(text: str) -> List[int]:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]``.

    Raises:
      PipelineError: a malformed item.
    """
    seeds = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            low, _, high = item.partition("-")
            seeds.extend(range(int(low), int(high or low) + 1))
        except ValueError:
            raise PipelineError(f"--seeds={text}: expected e.g. '0-7' or '1,5,9'") from None
    if not seeds:
        raise PipelineError(f"--seeds={text}: no seeds")
    return seeds


def parse_int_list(name: str, items: List[str]) -> List[int]:
    """``['96', '192']`` -> ``[96, 192]``; PipelineError naming flag ``name`` otherwise."""
    try:
        values = [int(item) for item in items]
    except ValueError:
        values = []
    if not values:
        raise PipelineError(f"--{name}={','.join(items)}: expected integers, e.g. '96,192'")
    return values
