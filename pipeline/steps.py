"""The stage list, the ``report`` stage and :func:`run`, which runs stages in order.

Work-dir layout: ``stages/<stage>.json`` (records), ``prepared/`` (photos at the GAN resolution),
``finetune/run-<key>/`` (the GAN trainer's outdir), ``samples/`` (fine-tuned network),
``samples_start/`` (starting network, same seeds), ``sr_data/`` (held-out split +
degraded copies), ``sr_train/run-<key>/`` (the SR trainer's outdir), ``enhanced/``,
``report.html``, ``summary.json``.
"""

import dataclasses
import os
import sys
import time

from pipeline import report
from pipeline.gan_stages import FINETUNE, GENERATE, PREPARE
from pipeline.records import OutputDir, Stage, StageResult, Workspace, format_seconds, json_bytes, run_stage
from pipeline.sr_stages import ENHANCE, SR_DATA, SR_TRAIN
from pipeline.transfer import TRANSFER

# ---------------------------------------------------------------------------------------------
# report

_REPORTED = ("prepare", "finetune", "generate", "transfer", "sr_data", "sr_train", "enhance")


def _report(cfg, ws, resume):
    records = {name: ws.load_record(name) for name in _REPORTED}
    summary = report.build_summary(dataclasses.asdict(cfg), records)
    curves = {}
    for stage, title in (("finetune", "GAN fine-tuning"), ("sr_train", "Super-resolution training")):
        log_dir = ws.output(stage, "log_dir")
        if log_dir:
            curves[title] = report.read_scalars(log_dir)
    pairs = [(ws.path(s), ws.path(e)) for s, e in summary["pairs"]]
    start_folder = ws.output("generate", "samples_start")
    starts = [os.path.join(start_folder, os.path.basename(s)) for s, _ in pairs] if start_folder else []
    page = report.render_html(summary, pairs, curves, starts=[p for p in starts if os.path.exists(p)],
                              resolve=ws.path)
    out = OutputDir(ws.root, ws.root)
    return StageResult({"report": out.write("report.html", page.encode("utf-8")),
                        "summary": out.write("summary.json", json_bytes(summary))})


REPORT = Stage(
    "report",
    params=lambda cfg: dataclasses.asdict(cfg),
    inputs=lambda cfg, ws: {name: ws.record_path(name) for name in _REPORTED},
    run=_report)

STAGES = {stage.name: stage for stage in
          (PREPARE, FINETUNE, GENERATE, TRANSFER, SR_DATA, SR_TRAIN, ENHANCE, REPORT)}


def run(cfg, stage: str = "all", force: bool = False, out=sys.stdout) -> dict:
    """Run ``stage`` (a name of ``STAGES``, or ``'all'`` for every stage in order) of ``cfg``.

    Returns ``{stage: record}``. Progress goes to ``out``.
    """
    ws = Workspace(cfg.work_dir)
    names = list(STAGES) if stage == "all" else [stage]
    start = time.time()
    print(f"pipeline: preset={cfg.preset} work_dir={ws.root} stages={','.join(names)}",
          file=out, flush=True)
    records = {name: run_stage(STAGES[name], cfg, ws, force=force,
                               index=f"[{i + 1}/{len(names)}] ", out=out)
               for i, name in enumerate(names)}
    print(f"pipeline: finished in {format_seconds(time.time() - start)}"
          + (f"; report: {ws.path('report.html')}" if "report" in names else ""),
          file=out, flush=True)
    return records
