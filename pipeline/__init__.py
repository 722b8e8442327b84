"""Stage bookkeeping, presets, stage bodies and the report behind ``run_pipeline.py``.

The pipeline owns no model code: every stage calls the public functions of ``stylegan_tl`` and
``superres_tf``. Modules:

- ``presets``: :class:`~pipeline.presets.Config` (every setting; the trainers' options are
  referenced, not re-listed) and the ``demo``/``paper``/``test`` presets.
- ``records``: workspace paths, fingerprints, stage records, up-to-date checks, resume, the
  folders the pipeline writes into.
- ``gan_stages``: the stage bodies prepare, finetune, generate (``stylegan_tl``).
- ``transfer``: the transfer stage (how far the samples moved toward the fine-tuning photos).
- ``sr_stages``: the stage bodies sr_data, sr_train, enhance (``superres_tf``).
- ``steps``: the stage list, the report stage and :func:`~pipeline.steps.run`.
- ``report``: ``report.html`` (self-contained) and ``summary.json``.
"""

from superres_tf.conventions import ProjectError


class PipelineError(ProjectError):
    """Bad usage or input of the pipeline; the CLI prints it on one line and exits 2."""
