"""The article end to end: fine-tune StyleGAN on photos, sample, super-resolve, report.

    python run_pipeline.py --stage=all                       # embedded demo, offline, CPU
    python run_pipeline.py --stage=all --preset=paper --data_dir=$HOME/photos --work_dir=runs/mine

Stages (in order): prepare, finetune, generate, transfer, sr_data, sr_train, enhance, report. Each stage
records its settings, inputs and outputs in ``<work_dir>/stages/<stage>.json``; a re-run skips the
stages that are up to date, ``--force`` redoes them, and an interrupted stage resumes. See
docs/pipeline.md.
"""

import os
import sys

from absl import app, flags

from pipeline import PipelineError, steps
from pipeline.presets import PRESETS, make_config, parse_int_list, parse_seeds

flags.DEFINE_enum("stage", "all", ("all",) + tuple(steps.STAGES), "Stage to run ('all': every stage in order).")
flags.DEFINE_enum("preset", "demo", tuple(PRESETS),
                  "demo: embedded photos, small net, CPU, <15 min. paper: the article on a GPU. "
                  "test: a tiny run for the test suite.")
flags.DEFINE_string("work_dir", None, "Output folder (default runs/<preset>).")
flags.DEFINE_string("data_dir", None, "Folder of photos to fine-tune on (demo default: "
                    "data/samples/landscapes/sky-and-water).")
flags.DEFINE_string("start_photos", None, "Folder of the photos the starting network was trained on, for "
                    "the nearest-photo figure (demo default: data/samples/landscapes; unknown for others).")
flags.DEFINE_bool("force", False, "Redo the selected stage(s) even when up to date.")
flags.DEFINE_integer("seed", None, "Seed of training, splits and degradations.")
# GAN fine-tuning
flags.DEFINE_string("resume_pkl", None, "Starting network: pickle path, URL, official name "
                    "(e.g. stylegan2-church-config-f), 'auto' (data/models/*.pkl if shipped, else "
                    "scratch) or 'none' (a new network).")
flags.DEFINE_integer("resolution", None, "GAN resolution (from-scratch networks; a pickle keeps its own).")
flags.DEFINE_integer("fmap_max", None, "Channel cap of a from-scratch network.")
flags.DEFINE_float("kimg", None, "Fine-tuning length in thousands of real images shown.")
flags.DEFINE_integer("batch", None, "GAN minibatch size.")
flags.DEFINE_float("gamma", None, "R1 regularisation weight (default: the trainer's choice).")
flags.DEFINE_enum("aug", None, ("noaug", "ada"), "Discriminator augmentation.")
flags.DEFINE_bool("mirror", None, "Add x-flipped copies of the photos.")
flags.DEFINE_integer("freezed", None, "Freeze-D: number of frozen discriminator layers.")
flags.DEFINE_integer("snap", None, "Snapshot interval in ticks of 4 kimg (NVIDIA ADA's unit).")
# Sampling
flags.DEFINE_string("seeds", None, "Sample seeds, e.g. '0-7' or '1,5,9'.")
flags.DEFINE_float("truncation_psi", None, "Truncation psi of the samples.")
# Super-resolution
flags.DEFINE_integer("sr_scale", None, "Super-resolution factor (1, 2 or 4).")
flags.DEFINE_string("sr_model", None, "A .keras model to use, 'embedded' (the shipped x4 model) "
                    "or 'train' (train one on --data_dir).")
flags.DEFINE_list("sr_crops", None, "SR training crops (high-resolution side, px), one per "
                  "progressive-resizing stage, e.g. '96,192'.")
flags.DEFINE_list("sr_epochs", None, "SR training epochs of each crop size, e.g. '4,2'.")
flags.DEFINE_integer("sr_steps", None, "SR training steps per epoch.")
flags.DEFINE_integer("sr_batch", None, "SR training batch size.")
flags.DEFINE_string("sr_backbone", None, "Features of the SR perceptual loss: 'auto' (ImageNet VGG16 "
                    "if cached or downloadable, else ImageNet EfficientNet-Lite0 from its package), "
                    "'vgg16', 'efficientnet_lite0', 'random' (a warning is recorded) or a weights file.")
flags.DEFINE_float("heldout", None, "Fraction of the photos held out from SR training for metrics.")
flags.DEFINE_integer("tile", None, "Enhance tile size, px (input side).")
flags.DEFINE_integer("overlap", None, "Enhance tile overlap, px.")

FLAGS = flags.FLAGS
_PASSED_THROUGH = ("work_dir", "data_dir", "start_photos", "seed", "resume_pkl", "resolution", "fmap_max", "kimg",
                   "batch", "gamma", "aug", "mirror", "freezed", "snap", "truncation_psi",
                   "sr_scale", "sr_model", "sr_steps", "sr_batch", "sr_backbone", "heldout",
                   "tile", "overlap")
_OWN_FLAGS = ("stage", "preset", "force", "seeds", "sr_crops", "sr_epochs") + _PASSED_THROUGH


def config_from_flags():
    """The run's ``Config``: the preset's values overridden by every flag given."""
    overrides = {name: FLAGS[name].value for name in _PASSED_THROUGH}
    if FLAGS.seeds is not None:
        overrides["seeds"] = parse_seeds(FLAGS.seeds)
    for name in ("sr_crops", "sr_epochs"):
        if FLAGS[name].value is not None:
            overrides[name] = parse_int_list(name, FLAGS[name].value)
    for name in ("data_dir", "start_photos", "resume_pkl", "sr_model", "sr_backbone"):
        value = overrides[name]
        if value and os.path.exists(os.path.expanduser(value)):
            overrides[name] = os.path.abspath(os.path.expanduser(value))
    return make_config(FLAGS.preset, **overrides)


def _project_errors() -> tuple:
    """The exception classes whose message is shown as ``error: ...`` (without a traceback).

    Taken from ``sys.modules`` so that a failure before TensorFlow is imported stays fast.
    """
    found = [PipelineError]
    for module, name in (("stylegan_tl.errors", "StyleGANTLError"),
                         ("superres_tf.errors", "SuperResError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def _exit_code(error: Exception) -> int:
    """1 for a run that failed (training diverged), 2 for bad usage or input."""
    return 1 if type(error).__name__ == "TrainingDiverged" else 2


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(2)
    try:
        cfg, stage, force = config_from_flags(), FLAGS.stage, FLAGS.force
        # The packages' command-line modules define flags of the same names (seed, kimg, ...) when
        # imported; the pipeline's flags are read into `cfg` now, so release them first.
        for name in _OWN_FLAGS:
            delattr(FLAGS, name)
        steps.run(cfg, stage, force)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - project errors become one line, others re-raise
        if not isinstance(error, _project_errors()):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(_exit_code(error))


def _parse_flags(argv):
    """absl's flag parsing, with a bad flag reported like any bad input (one line, exit 2)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
