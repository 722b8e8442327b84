"""Stage bookkeeping, presets, stage bodies and the report behind ``run_pipeline.py``.

The pipeline owns no model code: every stage calls the public functions of ``stylegan_tl`` and
``superres_tf``. Modules:

- ``records``: workspace paths, fingerprints, stage records, up-to-date checks, resume.
- ``presets``: the ``demo``/``paper``/``test`` settings.
- ``steps``: the stage bodies (prepare, finetune, generate, sr_data, sr_train, enhance).
- ``report``: ``report.html`` (self-contained) and ``summary.json``.
"""


class PipelineError(Exception):
    """Bad usage or input of the pipeline; the CLI prints it on one line and exits 2."""
