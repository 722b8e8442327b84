"""The stage bodies: each one calls the public functions of ``stylegan_tl`` / ``superres_tf``.

Every stage is a :class:`pipeline.records.Stage`: the settings it depends on (``params``), the
files whose content it depends on (``inputs``: the photos or the previous stage's outputs, read
from that stage's record) and ``run``, which returns a :class:`StageResult`.

Work-dir layout: ``prepared/`` (photos at the GAN resolution), ``finetune/run-<key>/`` (the GAN
trainer's outdir), ``samples/``, ``sr_data/`` (held-out split + degraded copies),
``sr_train/run-<key>/`` (the SR trainer's outdir), ``enhanced/``, ``report.html``,
``summary.json``, ``stages/<stage>.json``.
"""

import dataclasses
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image

from pipeline import PipelineError, presets, report
from pipeline.records import (Stage, StageResult, Workspace, atomic_write_bytes, atomic_write_json,
                              format_seconds, run_stage)


def _save_png(path: str, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _require(ws: Workspace, stage: str, name: str) -> str:
    path = ws.output(stage, name)
    if not path:
        raise PipelineError(f"{ws.record_path(stage)}: stage {stage} has not completed "
                            f"(run --stage={stage} first)")
    return path


def _run_dir(ws: Workspace, stage: str, params: dict, inputs: dict, ignores) -> str:
    """``<work_dir>/<stage>/run-<key>``: one trainer outdir per setting, so that a changed
    setting starts a new run beside the old one and an unchanged one resumes in place."""
    kept = {k: v for k, v in params.items() if k not in ignores}
    content = {name: {rel: [v[0], v[2]] for rel, v in fp.items()} for name, fp in inputs.items()}
    key = hashlib.sha256(json.dumps([kept, content], sort_keys=True).encode()).hexdigest()[:10]
    return ws.path(stage, f"run-{key}")


def _fresh_dir(path: str, resume: bool) -> str:
    """Create ``path``; when not resuming, first remove what a previous attempt left there."""
    if not resume and os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# prepare


def check_photo_folder(data_dir: str) -> str:
    """Return ``data_dir`` if it is a folder holding at least one image file.

    Raises:
      PipelineError: missing, empty, or no image files (one line naming the folder).
    """
    from stylegan_tl.dataset import IMAGE_EXTENSIONS, list_image_files
    if not os.path.isdir(data_dir):
        raise PipelineError(f"{data_dir}: --data_dir is not a directory")
    if not os.listdir(data_dir):
        raise PipelineError(f"{data_dir}: --data_dir is empty")
    if not list_image_files(data_dir):
        raise PipelineError(f"{data_dir}: --data_dir has no image files "
                           f"({' '.join(IMAGE_EXTENSIONS)})")
    return data_dir


def starting_pickle(cfg):
    """Local path of the starting network (an URL or official name is downloaded into the cache
    once), or None for a network from scratch."""
    if cfg.resume_pkl == presets.SCRATCH:
        return None
    from stylegan_tl.pretrained import resolve_network_pkl
    return resolve_network_pkl(cfg.resume_pkl)


@functools.lru_cache(maxsize=4)
def _pickle_resolution(path: str, size: int, mtime_ns: int):
    from stylegan_tl.pickle_io import read_network_pkl
    gs = read_network_pkl(path)[2]
    synthesis = gs.components.get("synthesis")
    for kwargs in (gs.static_kwargs, synthesis.static_kwargs if synthesis else {}):
        if kwargs.get("resolution"):
            return int(kwargs["resolution"])
    return None


def gan_resolution(cfg) -> int:
    """The GAN's resolution: the starting network's own, else ``cfg.resolution``."""
    path = starting_pickle(cfg)
    if path:
        st = os.stat(path)
        return _pickle_resolution(path, st.st_size, st.st_mtime_ns) or cfg.resolution
    return cfg.resolution


def _prepare(cfg, ws, resume):
    from stylegan_tl.dataset import list_image_files, load_dataset
    array = load_dataset(cfg.data_dir, gan_resolution(cfg), min_images=1)
    files = [os.path.relpath(f, cfg.data_dir) for f in list_image_files(cfg.data_dir)]
    names = [f for f in files if f not in set(array.skipped)]
    out = _fresh_dir(ws.path("prepared"), resume=False)
    for name, chw in zip(names, array.images):
        stem = os.path.splitext(name)[0].replace(os.sep, "__")
        _save_png(os.path.join(out, f"{stem}.png"), Image.fromarray(np.transpose(chw, (1, 2, 0))))
    warnings = [f"unreadable photo skipped: {name}" for name in array.skipped]
    return StageResult({"prepared": out}, {"num_images": len(names),
                                           "resolution": array.resolution}, warnings)


PREPARE = Stage(
    "prepare",
    params=lambda cfg: {"resolution": gan_resolution(cfg)},
    inputs=lambda cfg, ws: {"photos": check_photo_folder(cfg.data_dir)},
    run=_prepare)

# ---------------------------------------------------------------------------------------------
# finetune

_GAN_RESUME_IGNORES = ("kimg", "snap")


def _finetune_params(cfg) -> dict:
    scratch = cfg.resume_pkl == presets.SCRATCH  # else: the pickle's content is an input
    return {"scratch": {"family": cfg.family, "resolution": cfg.resolution,
                        "fmap_max": cfg.fmap_max} if scratch else None,
            "kimg": cfg.kimg, "batch": cfg.batch, "gamma": cfg.gamma, "aug": cfg.aug,
            "mirror": cfg.mirror, "freezed": cfg.freezed, "snap": cfg.snap, "seed": cfg.seed}


def _finetune_inputs(cfg, ws) -> dict:
    return {"prepared": _require(ws, "prepare", "prepared"), "start_pkl": starting_pickle(cfg)}


def _finetune(cfg, ws, resume):
    from stylegan_tl.train import run_training
    params = _finetune_params(cfg)
    inputs = ws.load_record("finetune")["inputs"]
    outdir = _fresh_dir(_run_dir(ws, "finetune", params, inputs, _GAN_RESUME_IGNORES), resume)
    if params["scratch"]:
        start, extra = None, dict(family=cfg.family, resolution=cfg.resolution,
                                  G_kwargs={"fmap_max": cfg.fmap_max},
                                  D_kwargs={"fmap_max": cfg.fmap_max})
    else:
        start, extra = starting_pickle(cfg), {}
    # An outdir holding a snapshot + training state makes run_training continue it.
    out = run_training(data=_require(ws, "prepare", "prepared"), outdir=outdir, resume=start,
                       kimg=cfg.kimg, batch=cfg.batch, gamma=cfg.gamma, mirror=cfg.mirror,
                       aug=cfg.aug, freezed=cfg.freezed, snap=cfg.snap, seed=cfg.seed, **extra)
    result = {"kimg": out["kimg"], "stats": out.get("stats", {})}
    return StageResult({"snapshot": out["snapshot"], "log_dir": out["log_dir"]}, result)


FINETUNE = Stage("finetune", _finetune_params, _finetune_inputs, _finetune, _GAN_RESUME_IGNORES)

# ---------------------------------------------------------------------------------------------
# generate


def _generate(cfg, ws, resume):
    from stylegan_tl import load_network_pkl
    from stylegan_tl.generate import generate_images
    _, _, gs = load_network_pkl(_require(ws, "finetune", "snapshot"))
    out = ws.path("samples")
    paths = generate_images(gs, cfg.seeds, truncation_psi=cfg.truncation_psi,
                            noise_mode="const", outdir=out)
    keep = {os.path.abspath(p) for p in paths}
    for name in os.listdir(out):  # samples of seeds no longer asked for
        if os.path.abspath(os.path.join(out, name)) not in keep:
            os.remove(os.path.join(out, name))
    return StageResult({"samples": out}, {"images": sorted(ws.rel(p) for p in paths)})


GENERATE = Stage(
    "generate",
    params=lambda cfg: {"seeds": cfg.seeds, "truncation_psi": cfg.truncation_psi},
    inputs=lambda cfg, ws: {"snapshot": _require(ws, "finetune", "snapshot")},
    run=_generate)

# ---------------------------------------------------------------------------------------------
# sr_data


def _sr_data(cfg, ws, resume):
    from superres_tf.dataset import split_files
    from superres_tf.images import from_unit_float, list_images
    train, held = split_files(list_images(cfg.data_dir), holdout=cfg.heldout, seed=cfg.seed)
    split = {"train": [os.path.basename(p) for p in train],
             "heldout": [os.path.basename(p) for p in held], "seed": cfg.seed}
    out = _fresh_dir(ws.path("sr_data"), resume=False)
    low_dir = os.path.join(out, "heldout_low")
    os.makedirs(low_dir)
    for name, low, _ in _heldout_triples(cfg, split["heldout"]):
        stem = os.path.splitext(name)[0]
        _save_png(os.path.join(low_dir, f"{stem}.png"), Image.fromarray(from_unit_float(low)))
    atomic_write_json(os.path.join(out, "split.json"), split)
    return StageResult({"split": os.path.join(out, "split.json"), "heldout_low": low_dir},
                       {"num_train": len(train), "num_heldout": len(held)})


SR_DATA = Stage(
    "sr_data",
    params=lambda cfg: {"heldout": cfg.heldout, "seed": cfg.seed, "sr_scale": cfg.sr_scale},
    inputs=lambda cfg, ws: {"photos": check_photo_folder(cfg.data_dir)},
    run=_sr_data)

# ---------------------------------------------------------------------------------------------
# sr_train (+ held-out metrics of the model used)


def _sr_train_params(cfg) -> dict:
    trains = cfg.sr_model == presets.TRAIN
    return {"sr_model": cfg.sr_model if cfg.sr_model in (presets.EMBEDDED, presets.TRAIN) else "file",
            "sr_scale": cfg.sr_scale, "seed": cfg.seed,
            "training": {"sr_crops": cfg.sr_crops, "sr_epochs": cfg.sr_epochs,
                         "sr_steps": cfg.sr_steps, "sr_batch": cfg.sr_batch,
                         "vgg_weights": cfg.vgg_weights} if trains else None}


def _given_sr_model(cfg):
    """The model file the stage uses without training (None with ``--sr_model=train``).

    Raises:
      PipelineError: the embedded model asked for at another scale than its own (x4).
    """
    if cfg.sr_model == presets.EMBEDDED:
        from superres_tf.enhance import DEFAULT_MODEL
        if cfg.sr_scale != 4:
            raise PipelineError(f"--sr_scale={cfg.sr_scale}: the embedded model ({DEFAULT_MODEL}) "
                                "is x4; use --sr_scale=4, --sr_model=train or a model file")
        return DEFAULT_MODEL
    return None if cfg.sr_model == presets.TRAIN else cfg.sr_model


def _heldout_triples(cfg, names):
    """(name, low, high) float32 HWC [0, 1] of the held-out photos, degraded with the seed."""
    from superres_tf.dataset import heldout_pairs, load_rgb_images
    paths = [os.path.join(cfg.data_dir, name) for name in names]
    return heldout_pairs(load_rgb_images(paths, cfg.sr_scale), cfg.sr_scale, cfg.seed)


def sr_metrics(cfg, model_path, names) -> dict:
    """Mean PSNR-Y / SSIM-Y of the model and of bicubic on the held-out photos ``names``."""
    from superres_tf.enhance import enhance_image
    from superres_tf.metrics import bicubic_baseline, score
    from superres_tf.unet import load_model
    model, model_scores, bicubic_scores = load_model(model_path), [], []
    for _, low, high in _heldout_triples(cfg, names):
        model_scores.append(score(enhance_image(model, low, tile=cfg.tile, overlap=cfg.overlap),
                                  high, cfg.sr_scale))
        bicubic_scores.append(score(bicubic_baseline(low, cfg.sr_scale, high.shape[1::-1]),
                                    high, cfg.sr_scale))
    if not model_scores:
        return {}
    (psnr, ssim), (base_psnr, base_ssim) = np.mean(model_scores, 0), np.mean(bicubic_scores, 0)
    return {"model_psnr_y": float(psnr), "model_ssim": float(ssim),
            "bicubic_psnr_y": float(base_psnr), "bicubic_ssim": float(base_ssim),
            "num_images": len(model_scores), "scale": cfg.sr_scale}


def _train_sr(cfg, ws, resume, heldout):
    """``superres_tf.train.run_training`` on the photos, holding out the sr_data split."""
    from superres_tf.train import WARNING_FILE, run_training
    params = _sr_train_params(cfg)
    # A longer run of the same settings continues the previous one.
    key_params = dict(params, training=dict(params["training"], sr_epochs=None))
    outdir = _fresh_dir(_run_dir(ws, "sr_train", key_params, ws.load_record("sr_train")["inputs"],
                                 ()), resume)
    out = run_training(cfg.data_dir, outdir, scale=cfg.sr_scale, crops=tuple(cfg.sr_crops),
                       stage_epochs=tuple(cfg.sr_epochs), steps_per_epoch=cfg.sr_steps,
                       batch_size=cfg.sr_batch, holdout=heldout, seed=cfg.seed,
                       vgg_weights=None if cfg.vgg_weights == "none" else cfg.vgg_weights,
                       resume=resume and os.path.isdir(os.path.join(outdir, "checkpoint")))
    warnings = []
    if os.path.exists(os.path.join(outdir, WARNING_FILE)):
        with open(os.path.join(outdir, WARNING_FILE), encoding="utf-8") as f:
            warnings.append(" ".join(f.read().split()))
    result = {"log_dir": ws.rel(os.path.join(outdir, "tensorboard")),
              "vgg_weights_source": out["weights_source"], "epochs_done": out["epochs_done"],
              "training_metrics": out["metrics"]}
    return out["model"], result, warnings


def _sr_train(cfg, ws, resume):
    with open(_require(ws, "sr_data", "split"), encoding="utf-8") as f:
        heldout = json.load(f)["heldout"]
    model, result, warnings = _given_sr_model(cfg), {}, []
    if model is None:
        model, result, warnings = _train_sr(cfg, ws, resume, heldout)
    result["metrics"] = sr_metrics(cfg, model, heldout)
    return StageResult({"model": model}, result, warnings)


SR_TRAIN = Stage(
    "sr_train", _sr_train_params,
    inputs=lambda cfg, ws: {"split": _require(ws, "sr_data", "split"),
                            "model": _given_sr_model(cfg)},
    run=_sr_train, resume_ignores=("training",))

# ---------------------------------------------------------------------------------------------
# enhance


def _enhance(cfg, ws, resume):
    from superres_tf.enhance import enhance_folder
    from superres_tf.unet import load_model
    samples = _require(ws, "generate", "samples")
    out = _fresh_dir(ws.path("enhanced"), resume=False)
    written, failed = enhance_folder(load_model(_require(ws, "sr_train", "model")), samples, out,
                                     tile=cfg.tile, overlap=cfg.overlap, suffix="", ext="png")
    if failed:
        raise PipelineError(f"{samples}: {len(failed)} sample(s) failed to enhance: "
                            + "; ".join(failed.values()))
    pairs = [[ws.rel(os.path.join(samples, os.path.basename(p))), ws.rel(p)] for p in sorted(written)]
    return StageResult({"enhanced": out}, {"pairs": pairs})


ENHANCE = Stage(
    "enhance",
    params=lambda cfg: {"tile": cfg.tile, "overlap": cfg.overlap},
    inputs=lambda cfg, ws: {"samples": _require(ws, "generate", "samples"),
                            "model": _require(ws, "sr_train", "model")},
    run=_enhance)

# ---------------------------------------------------------------------------------------------
# report

_REPORTED = ("prepare", "finetune", "generate", "sr_data", "sr_train", "enhance")


def _report(cfg, ws, resume):
    records = {name: ws.load_record(name) for name in _REPORTED}
    summary = report.build_summary(dataclasses.asdict(cfg), records)
    curves = {}
    for stage, title in (("finetune", "GAN fine-tuning"), ("sr_train", "Super-resolution training")):
        log_dir = ((records[stage] or {}).get("outputs", {}).get("log_dir")
                   or (records[stage] or {}).get("result", {}).get("log_dir"))
        if log_dir:
            curves[title] = report.read_scalars(ws.path(log_dir))
    pairs = [(ws.path(s), ws.path(e)) for s, e in summary["pairs"]]
    page = report.render_html(summary, pairs, curves)
    atomic_write_bytes(ws.path("report.html"), page.encode("utf-8"))
    atomic_write_json(ws.path("summary.json"), summary)
    return StageResult({"report": ws.path("report.html"), "summary": ws.path("summary.json")})


REPORT = Stage(
    "report",
    params=lambda cfg: dataclasses.asdict(cfg),
    inputs=lambda cfg, ws: {name: ws.record_path(name) for name in _REPORTED},
    run=_report)

STAGES = {stage.name: stage for stage in
          (PREPARE, FINETUNE, GENERATE, SR_DATA, SR_TRAIN, ENHANCE, REPORT)}


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
