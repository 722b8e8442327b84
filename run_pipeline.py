"""The article end to end: fine-tune StyleGAN on photos, sample, super-resolve, report.

    python run_pipeline.py --stage=all                       # embedded demo, offline, CPU
    python run_pipeline.py --stage=all --preset=paper --data_dir=$HOME/photos --work_dir=runs/mine

Stages (in order): prepare, finetune, generate, transfer, sr_data, sr_train, enhance, report. Each stage
records its settings, inputs and outputs in ``<work_dir>/stages/<stage>.json``; a re-run skips the
stages that are up to date, ``--force`` redoes them, and an interrupted stage resumes. See
docs/pipeline.md. Every setting of :class:`pipeline.presets.Config` is a flag of the same name
(generated from the field); a flag not given keeps the preset's value.
"""

import dataclasses
import os
import sys

from absl import flags

from pipeline import steps
from pipeline.presets import PRESETS, Config, make_config
from superres_tf import conventions

FLAGS = flags.FLAGS


def define_flags():
    """The run's own flags, then one per setting of ``Config`` (default None: the preset's value)."""
    flags.DEFINE_enum("stage", "all", ("all",) + tuple(steps.STAGES), "Stage to run ('all': every stage in order).")
    flags.DEFINE_enum("preset", "demo", tuple(PRESETS),
                      "demo: embedded photos, small net, CPU, <15 min. paper: the article on a GPU. "
                      "test: a tiny run for the test suite.")
    flags.DEFINE_bool("force", False, "Redo the selected stage(s) even when up to date.")
    conventions.define_flags(Config, use_defaults=False)


def config_from_flags() -> Config:
    """The run's ``Config``: the preset's values overridden by every flag given (existing paths made
    absolute)."""
    overrides = conventions.options_from_flags(Config)
    for field in dataclasses.fields(Config):
        value = overrides.get(field.name)
        if field.metadata.get("path") and value and os.path.exists(os.path.expanduser(value)):
            overrides[field.name] = os.path.abspath(os.path.expanduser(value))
    return make_config(FLAGS.preset, **overrides)


def run_from_flags():
    """Run the stages the flags ask for (progress on stdout); nothing more to print."""
    cfg = config_from_flags()
    try:
        steps.run(cfg, FLAGS.stage, FLAGS.force)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    return []


if __name__ == "__main__":
    define_flags()
    conventions.run(run_from_flags)
