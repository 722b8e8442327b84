"""The super-resolution stages: ``sr_data``, ``sr_train``, ``enhance`` (calls into ``superres_tf``).

The held-out photos (for the metrics) are a seeded split of ``--data_dir`` by file, except when a
given model (the embedded one or ``--sr_model=FILE``) was trained on photos of that folder: then
they are that model's own held-out files, read from its training config, so that the metrics never
score a photo the model was trained on.
"""

import json
import os

import numpy as np

from pipeline import PipelineError, presets
from pipeline.gan_stages import check_photo_folder
from pipeline.records import OutputDir, Stage, StageResult, json_bytes, trainer_dir

_SCORES = ("model_psnr", "model_ssim", "bicubic_psnr", "bicubic_ssim")


def given_sr_model(cfg):
    """The model file used without training (None with ``--sr_model=train``).

    Raises:
      PipelineError: a missing model file, or the embedded model asked for at another scale than
        its own (x4).
    """
    if cfg.sr_model == presets.EMBEDDED:
        from superres_tf.enhance import DEFAULT_MODEL
        if cfg.sr_scale != 4:
            raise PipelineError(f"--sr_scale={cfg.sr_scale}: the embedded model ({DEFAULT_MODEL}) "
                                "is x4; use --sr_scale=4, --sr_model=train or a model file")
        if not os.path.isfile(DEFAULT_MODEL):
            raise PipelineError(f"{DEFAULT_MODEL}: the embedded SR model is missing; "
                                "use --sr_model=train or --sr_model=FILE.keras")
        return DEFAULT_MODEL
    if cfg.sr_model != presets.TRAIN and not os.path.isfile(cfg.sr_model):
        raise PipelineError(f"{cfg.sr_model}: --sr_model is not a file (nor 'embedded'/'train')")
    return None if cfg.sr_model == presets.TRAIN else cfg.sr_model


def _train_config(model_path):
    """(path, dict) of the training config beside a model, or (None, None)."""
    from superres_tf.evaluate import find_train_config, read_train_config
    path = find_train_config(model_path) if model_path else None
    return (path, read_train_config(path)) if path else (None, None)


def _degradation(model_path) -> dict:
    """The degradation a model was trained to undo (its config's), else the trainer's default."""
    from superres_tf.dataset import DEFAULT_DEGRADATION
    _, config = _train_config(model_path)
    return dict(config["degradation"] if config and "degradation" in config else DEFAULT_DEGRADATION)


def _split(cfg):
    """(training names, held-out names, where the split comes from)."""
    from superres_tf.dataset import split_files
    from superres_tf.images import image_name, list_images
    paths = list_images(cfg.data_dir)
    names = [image_name(p, cfg.data_dir) for p in paths]
    config_path, config = _train_config(given_sr_model(cfg))
    if config and set(names) & set(config.get("train_files", [])):
        held = [n for n in names if n in set(config.get("heldout_files", []))]
        return [n for n in names if n not in held], held, f"held-out files of {config_path}"
    train, held = split_files(paths, holdout=cfg.heldout, seed=cfg.seed)
    return ([image_name(p, cfg.data_dir) for p in train], [image_name(p, cfg.data_dir) for p in held],
            f"split by file ({cfg.heldout:g} held out, seed {cfg.seed})")


# ---------------------------------------------------------------------------------------------
# sr_data: the held-out split and its degraded copies


def _sr_data(cfg, ws, resume):
    from superres_tf.dataset import heldout_pairs, load_rgb_images
    from superres_tf.images import encode_image, from_unit_float
    train, held, source = _split(cfg)
    degradation = _degradation(given_sr_model(cfg))
    out = OutputDir(ws.path("sr_data"), ws.root)
    out.clear()
    low_dir = os.path.join(out.path, "heldout_low")
    os.makedirs(low_dir, exist_ok=True)
    # The same images, order and seeds as superres_tf.evaluate.evaluate (min side 4 x scale).
    loaded = load_rgb_images([os.path.join(cfg.data_dir, n) for n in held], 4 * cfg.sr_scale)
    for name, low, _ in heldout_pairs(loaded, cfg.sr_scale, cfg.seed, degradation):
        rel = os.path.join("heldout_low", os.path.splitext(name)[0] + ".png")
        out.write(rel, encode_image(from_unit_float(low), rel, error=PipelineError))
    split = {"train": train, "heldout": held, "source": source, "seed": cfg.seed,
             "degradation": degradation}
    split_path = out.write("split.json", json_bytes(split))
    warnings = [] if held else [f"{cfg.data_dir}: no held-out photos ({source}): no SR metrics"]
    return StageResult({"split": split_path, "heldout_low": low_dir},
                       {"num_train": len(train), "num_heldout": len(held), "source": source},
                       warnings)


SR_DATA = Stage(
    "sr_data",
    params=lambda cfg: {"heldout": cfg.heldout, "seed": cfg.seed, "sr_scale": cfg.sr_scale},
    inputs=lambda cfg, ws: {"photos": check_photo_folder(cfg.data_dir),
                            "model": given_sr_model(cfg)},
    run=_sr_data)

# ---------------------------------------------------------------------------------------------
# sr_train: superres_tf.train.run_training (or a given model), then the held-out metrics


def _sr_train_params(cfg) -> dict:
    """The model and scale (they matter to a given model too), the seed, and when training, every
    setting passed to the SR trainer and the backbone."""
    trains = cfg.sr_model == presets.TRAIN
    training = {k: v for k, v in presets.settings_for(cfg, presets.SrOptions).items() if k != "sr_scale"}
    return {"sr_model": cfg.sr_model if cfg.sr_model in (presets.EMBEDDED, presets.TRAIN) else "file",
            "sr_scale": cfg.sr_scale, "seed": cfg.seed,
            "training": dict(training, sr_backbone=cfg.sr_backbone) if trains else None}


def _backbone_options(sr_backbone) -> dict:
    """run_training's backbone keywords for --sr_backbone (a backbone name or a weights file)."""
    from superres_tf.options import BACKBONES
    if sr_backbone in BACKBONES:
        return {"backbone": sr_backbone}
    return {"backbone": "auto", "backbone_weights": sr_backbone}


def _train_sr(cfg, ws, resume, heldout) -> StageResult:
    """``superres_tf.train.run_training`` on the photos, holding out ``heldout`` (file names)."""
    from superres_tf.train import WARNING_FILE, run_training
    params = _sr_train_params(cfg)
    # A longer run (more epochs) of the same settings continues the previous one.
    key = dict(params, training=dict(params["training"], sr_epochs=None))
    run_dir = trainer_dir(ws, ws.run_dir("sr_train", key), resume)
    outdir, before = run_dir.path, run_dir.files()
    try:
        out = run_training(cfg.data_dir, outdir, holdout=heldout, seed=cfg.seed, **_backbone_options(cfg.sr_backbone),
                           resume=resume and os.path.isdir(os.path.join(outdir, "checkpoint")),
                           **presets.trainer_options(cfg, presets.SrOptions))
    finally:  # also after an interruption: what the trainer wrote is the pipeline's
        run_dir.adopt_new(before)
    warnings = []
    if os.path.exists(os.path.join(outdir, WARNING_FILE)):
        with open(os.path.join(outdir, WARNING_FILE), encoding="utf-8") as f:
            warnings.append(" ".join(f.read().split()))
    return StageResult({"model": out["model"], "log_dir": os.path.join(outdir, "tensorboard")},
                       {"features_source": out["weights_source"],
                        "epochs_done": out["epochs_done"]}, warnings)


def sr_metrics(cfg, model_path, names) -> dict:
    """Mean PSNR-Y / SSIM-Y of the model and of bicubic on the held-out photos ``names``, for
    the model's training degradation and for the standard bicubic-only ("BI") protocol."""
    from superres_tf.evaluate import BICUBIC_ONLY, evaluate
    from superres_tf.unet import load_model
    if not names:
        return {}
    model = load_model(model_path)
    paths = [os.path.join(cfg.data_dir, name) for name in names]
    protocols = {}
    for label, degradation in (("training degradation", _degradation(model_path)),
                               ("bicubic downscale only (BI)", BICUBIC_ONLY)):
        rows = evaluate(model, paths, cfg.sr_scale, degradation, cfg.seed, cfg.tile, cfg.overlap)
        protocols[label] = {key: float(np.mean([row[key] for row in rows])) for key in _SCORES}
    return {"num_images": len(rows), "scale": cfg.sr_scale, "files": names,
            "protocols": protocols}


def _given_model(model_path) -> StageResult:
    """A model used as is; a warning when its training config says it had random features."""
    from superres_tf.train import features_source
    config_path, config = _train_config(model_path)
    source = features_source(config) if config else "unknown (no training config)"
    warnings = [f"{model_path} was trained with a {source} in its perceptual loss "
                f"(see {config_path})"] if source.startswith("RANDOM") else []
    return StageResult({"model": model_path}, {"features_source": source}, warnings)


def _sr_train(cfg, ws, resume):
    with open(ws.require("sr_data", "split"), encoding="utf-8") as f:
        split = json.load(f)
    model = given_sr_model(cfg)
    done = _given_model(model) if model else _train_sr(cfg, ws, resume, split["heldout"])
    done.result["metrics"] = dict(sr_metrics(cfg, done.outputs["model"], split["heldout"]),
                                  source=split["source"])
    return done


SR_TRAIN = Stage(
    "sr_train", _sr_train_params,
    inputs=lambda cfg, ws: {"split": ws.require("sr_data", "split"),
                            "model": given_sr_model(cfg)},
    run=_sr_train, resume_ignores=("training",))

# ---------------------------------------------------------------------------------------------
# enhance: superres_tf.enhance.enhance_folder on the samples


def _enhance(cfg, ws, resume):
    from superres_tf.enhance import enhance_folder
    from superres_tf.unet import load_model
    samples = ws.require("generate", "samples")
    out = OutputDir(ws.path("enhanced"), ws.root)
    out.clear()
    with out.staging() as staging:
        made, failed = enhance_folder(load_model(ws.require("sr_train", "model")), samples, staging,
                                      tile=cfg.tile, overlap=cfg.overlap, suffix="", ext="png")
        if failed:
            raise PipelineError(f"{samples}: {len(failed)} sample(s) failed to enhance: "
                                + "; ".join(failed.values()))
        written = out.move_in(made)
    pairs = [[ws.rel(os.path.join(samples, os.path.basename(p))), ws.rel(p)]
             for p in sorted(written)]
    return StageResult({"enhanced": out.path}, {"pairs": pairs})


ENHANCE = Stage(
    "enhance",
    params=lambda cfg: {"tile": cfg.tile, "overlap": cfg.overlap},
    inputs=lambda cfg, ws: {"samples": ws.require("generate", "samples"),
                            "model": ws.require("sr_train", "model")},
    run=_enhance)
