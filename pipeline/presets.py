"""Pipeline settings: :class:`Config` (every setting; the defaults are the demo's), the ``paper`` and
``test`` presets, and the flag overrides (run_pipeline.py generates its flags from ``Config``).

``demo`` (default) runs offline on a 2-core CPU in under 15 minutes and shows transfer learning:
the small 32 px StyleGAN2 shipped in ``data/models/`` (trained on all the embedded photos) is
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
from stylegan_tl.generate import parse_seeds
from stylegan_tl.recipe import Options as GanOptions
from superres_tf.conventions import flag_name, option
from superres_tf.options import Options as SrOptions

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED_PHOTOS = os.path.join(REPO_ROOT, "data", "samples", "landscapes")
DEMO_PHOTOS = os.path.join(EMBEDDED_PHOTOS, "sky-and-water")  # the demo's fine-tuning photos
SHIPPED_MODELS = os.path.join(REPO_ROOT, "data", "models")
# Special values of --resume_pkl and --sr_model.
AUTO = "auto"          # resume_pkl: the pickle shipped in data/models/ if any, else from scratch
SCRATCH = "none"       # resume_pkl: a new network from create_networks
EMBEDDED = "embedded"  # sr_model: the x4 model shipped in superres_tf/weights/
TRAIN = "train"        # sr_model: train one in the sr_train stage


def setting(default, help, **meta):
    """A setting of the pipeline itself (its flag is generated from the field, see run_pipeline.py)."""
    return option(default, help, **meta)


def passed_to(trainer, name, default=None, default_factory=None, **meta):
    """A setting given to a trainer as its option ``name``: help and choices are the option's
    (``trainer``: :class:`stylegan_tl.recipe.Options` or :class:`superres_tf.options.Options`)."""
    field = next(f for f in dataclasses.fields(trainer) if f.name == name)
    return option(default, f"{_TRAINERS[trainer]} --{flag_name(field)}: {field.metadata['help']}",
                  choices=field.metadata.get("choices"), default_factory=default_factory,
                  passed_to=(trainer, name), **meta)


_TRAINERS = {GanOptions: "stylegan_tl.train", SrOptions: "superres_tf.train"}


def _seeds(items):
    return parse_seeds(",".join(items))


@dataclasses.dataclass
class Config:
    """Every setting of a pipeline run (presets fill them, flags override them). The defaults are
    the demo's. A trainer's option is referenced (:func:`passed_to`): adding one to the pipeline is
    one line here; the flag, the stage's parameters and the call follow."""

    preset: str = setting("demo", "the preset the run started from", flag=False)
    work_dir: str = setting("runs/demo", "Output folder (default runs/<preset>).", path=True)
    data_dir: Optional[str] = setting(None, "Folder of photos to fine-tune on (demo default: "  # None: required
                                      "data/samples/landscapes/sky-and-water).", path=True)
    start_photos: Optional[str] = setting(None, "Folder of the photos the starting network was trained on, for "
                                          "the nearest-photo figure (demo default: data/samples/landscapes; "
                                          "unknown for others).", path=True)
    seed: int = setting(0, "Seed of training, splits and degradations.")
    # GAN fine-tuning (stylegan_tl.train.run_training)
    resume_pkl: str = setting(AUTO, "Starting network: pickle path, URL, official name (e.g. "
                              "stylegan2-church-config-f), 'auto' (data/models/*.pkl if shipped, else scratch) "
                              "or 'none' (a new network).", path=True)
    family: str = passed_to(GanOptions, "family", "stylegan2", scratch=True)
    resolution: int = passed_to(GanOptions, "resolution", 64, scratch=True)
    fmap_max: int = passed_to(GanOptions, "fmap_max", 64, scratch=True)
    kimg: float = passed_to(GanOptions, "kimg", 8.0)
    batch: int = passed_to(GanOptions, "batch", 8)
    gamma: Optional[float] = passed_to(GanOptions, "gamma", None)
    aug: str = passed_to(GanOptions, "aug", "ada")
    mirror: bool = passed_to(GanOptions, "mirror", True)
    freezed: int = passed_to(GanOptions, "freezed", 0)
    snap: int = passed_to(GanOptions, "snap", 1)
    # Sampling (stylegan_tl.generate)
    seeds: List[int] = setting(None, "Sample seeds, e.g. '0-7' or '1,5,9'.", parse=_seeds,
                               default_factory=lambda: list(range(8)))
    truncation_psi: float = setting(0.7, "Truncation psi of the samples.")
    # Super-resolution (superres_tf)
    sr_scale: int = passed_to(SrOptions, "scale", 4)
    sr_model: str = setting(EMBEDDED, "A .keras model to use, 'embedded' (the shipped x4 model) or 'train' "
                            "(train one on --data_dir).", path=True)
    sr_crops: List[int] = passed_to(SrOptions, "crops", default_factory=lambda: [96, 192])
    sr_epochs: List[int] = passed_to(SrOptions, "stage_epochs", default_factory=lambda: [4, 2])
    sr_steps: int = passed_to(SrOptions, "steps_per_epoch", 100)
    sr_batch: int = passed_to(SrOptions, "batch_size", 16)
    sr_backbone: str = setting("auto", "Features of the SR perceptual loss: 'auto' (ImageNet VGG16 if cached or "
                               "downloadable, else ImageNet EfficientNet-Lite0 from its package), 'vgg16', "
                               "'efficientnet_lite0', 'random' (a warning is recorded) or a weights file "
                               "(.h5 VGG16, .pth Lite0).", path=True)
    heldout: float = setting(0.2, "Fraction of the photos held out from SR training for metrics.")
    tile: int = setting(256, "Enhance tile size, px (input side).")
    overlap: int = setting(32, "Enhance tile overlap, px.")


def settings_for(cfg: Config, trainer) -> dict:
    """``{setting name: value}`` of the settings of ``cfg`` passed to ``trainer`` (see :func:`passed_to`)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config)
            if f.metadata.get("passed_to", (None,))[0] is trainer}


def trainer_options(cfg: Config, trainer) -> dict:
    """The keyword arguments of ``trainer``'s ``run_training`` that ``cfg`` sets: ``{option: value}``."""
    names = {f.name: f.metadata["passed_to"][1] for f in dataclasses.fields(Config) if "passed_to" in f.metadata}
    return {names[name]: value for name, value in settings_for(cfg, trainer).items()}


def is_scratch_only(name: str) -> bool:
    """True for a setting that only matters to a network made from scratch."""
    return next(f for f in dataclasses.fields(Config) if f.name == name).metadata.get("scratch", False)


PRESETS = {
    "demo": dict(data_dir=DEMO_PHOTOS, start_photos=EMBEDDED_PHOTOS),  # the other defaults are the demo's
    "paper": dict(
        work_dir="runs/paper", resume_pkl="stylegan2-church-config-f", resolution=256, kimg=200.0,
        batch=32, gamma=100.0, aug="ada", snap=10, seeds=list(range(16)), sr_model=TRAIN,
        sr_crops=[128, 256], sr_epochs=[20, 20], sr_steps=500, sr_batch=16, sr_backbone="vgg16",
        heldout=0.1),
    "test": dict(
        work_dir="runs/test", resume_pkl=SCRATCH, resolution=16, fmap_max=16, kimg=0.016, aug="noaug",
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
