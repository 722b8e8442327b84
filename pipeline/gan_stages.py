"""The StyleGAN stages: ``prepare``, ``finetune``, ``generate`` (calls into ``stylegan_tl``).

Each is a :class:`pipeline.records.Stage`: the settings it depends on (``params``), the files whose
content it depends on (``inputs``: the photos, the starting pickle, or an earlier stage's outputs
read from that stage's record) and ``run``, which returns a :class:`StageResult`.
"""

import functools
import os

import numpy as np

from pipeline import PipelineError, presets
from pipeline.records import OutputDir, Stage, StageResult, trainer_dir


def check_photo_folder(data_dir: str) -> str:
    """Return ``data_dir`` if it is a folder holding at least one image file.

    Raises:
      PipelineError: missing, empty, or no image files (one line naming the folder).
    """
    from stylegan_tl.dataset import list_image_files
    from superres_tf.images import IMAGE_SUFFIXES
    if not os.path.isdir(data_dir):
        raise PipelineError(f"{data_dir}: --data_dir is not a directory")
    if not os.listdir(data_dir):
        raise PipelineError(f"{data_dir}: --data_dir is empty")
    if not list_image_files(data_dir):
        raise PipelineError(f"{data_dir}: --data_dir has no image files "
                            f"({' '.join(IMAGE_SUFFIXES)})")
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


# ---------------------------------------------------------------------------------------------
# prepare: photos -> prepared/*.png, square, at the GAN resolution


def _prepare(cfg, ws, resume):
    from stylegan_tl.dataset import list_image_files, load_dataset
    from stylegan_tl.train import Options
    from superres_tf.images import encode_image
    # Too few photos are reported here, naming --data_dir, not later by the trainer.
    array = load_dataset(cfg.data_dir, gan_resolution(cfg), min_images=Options.min_images)
    files = [os.path.relpath(f, cfg.data_dir) for f in list_image_files(cfg.data_dir)]
    names = [f for f in files if f not in set(array.skipped)]
    out = OutputDir(ws.path("prepared"), ws.root)
    out.clear()
    for name, chw in zip(names, array.images):
        stem = os.path.splitext(name)[0].replace(os.sep, "__")
        out.write(f"{stem}.png", encode_image(np.transpose(chw, (1, 2, 0)), f"{stem}.png", error=PipelineError))
    warnings = [f"unreadable photo skipped: {name}" for name in array.skipped]
    return StageResult({"prepared": out.path}, {"num_images": len(names),
                                           "resolution": array.resolution}, warnings)


PREPARE = Stage(
    "prepare",
    params=lambda cfg: {"resolution": gan_resolution(cfg)},
    inputs=lambda cfg, ws: {"photos": check_photo_folder(cfg.data_dir)},
    run=_prepare)

# ---------------------------------------------------------------------------------------------
# finetune: stylegan_tl.train.run_training

_GAN_RESUME_IGNORES = ("kimg", "snap")   # a longer run of the same settings continues


def _finetune_params(cfg) -> dict:
    """The settings passed to the GAN trainer (those that only shape a network from scratch under
    'scratch', None when starting from a pickle, whose content is an input) and the seed."""
    scratch = cfg.resume_pkl == presets.SCRATCH
    settings = presets.settings_for(cfg, presets.GanOptions)
    shape = {k: v for k, v in settings.items() if presets.is_scratch_only(k)}
    return {"scratch": shape if scratch else None, "seed": cfg.seed,
            **{k: v for k, v in settings.items() if k not in shape}}


def _finetune(cfg, ws, resume):
    from stylegan_tl.train import run_training
    params = _finetune_params(cfg)
    key = {k: v for k, v in params.items() if k not in _GAN_RESUME_IGNORES}
    out = trainer_dir(ws, ws.run_dir("finetune", key), resume)
    # An outdir holding a snapshot + training state makes run_training continue it.
    before = out.files()
    try:
        done = run_training(data=ws.require("prepare", "prepared"), outdir=out.path, resume=starting_pickle(cfg),
                            seed=cfg.seed, **presets.trainer_options(cfg, presets.GanOptions))
    finally:  # also after an interruption: what the trainer wrote is the pipeline's
        out.adopt_new(before)
    result = {"kimg": done["kimg"], "stats": done.get("stats", {}), "metrics": run_metrics(done["snapshot"])}
    return StageResult({"snapshot": done["snapshot"], "log_dir": done["log_dir"]}, result)


def run_metrics(snapshot) -> dict:
    """The newest value of each metric computed in the snapshot's run folder (training with
    ``metrics``, or ``python -m stylegan_tl.metrics`` on one of its snapshots): ``{name: {value,
    snapshot, features, num_fakes, num_reals}}``, empty when none was computed."""
    from stylegan_tl.metrics import read_results
    if not snapshot:
        return {}
    return {name: {"value": r["results"][name], "snapshot": r["snapshot_pkl"], "features": r.get("features"),
                   "num_fakes": r.get("num_fakes"), "num_reals": r.get("num_reals")}
            for name, r in read_results(os.path.dirname(snapshot)).items()}


FINETUNE = Stage(
    "finetune", _finetune_params,
    inputs=lambda cfg, ws: {"prepared": ws.require("prepare", "prepared"),
                            "start_pkl": starting_pickle(cfg)},
    run=_finetune, resume_ignores=_GAN_RESUME_IGNORES)

# ---------------------------------------------------------------------------------------------
# generate: stylegan_tl.generate.generate_images from the last snapshot's Gs, and from the
# starting network's Gs with the same seeds (the "before" of the transfer)


def _sample(gs, cfg, out: OutputDir) -> list:
    """Samples of ``cfg.seeds`` from ``gs`` into ``out`` (only this stage's files are replaced)."""
    from stylegan_tl.generate import generate_images
    with out.staging() as staging:
        made = generate_images(gs, cfg.seeds, truncation_psi=cfg.truncation_psi,
                               noise_mode="const", outdir=staging)
        paths = out.move_in(made)
        out.clear(keep=[os.path.basename(p) for p in made])  # samples of seeds no longer asked for
    return paths


def _generate(cfg, ws, resume):
    from stylegan_tl import load_network_pkl
    paths = _sample(load_network_pkl(ws.require("finetune", "snapshot"))[2], cfg,
                    OutputDir(ws.path("samples"), ws.root))
    outputs = {"samples": ws.path("samples")}
    start = starting_pickle(cfg)
    if start:
        _sample(load_network_pkl(start)[2], cfg, OutputDir(ws.path("samples_start"), ws.root))
        outputs["samples_start"] = ws.path("samples_start")
    return StageResult(outputs, {"images": sorted(ws.rel(p) for p in paths)})


GENERATE = Stage(
    "generate",
    params=lambda cfg: {"seeds": cfg.seeds, "truncation_psi": cfg.truncation_psi},
    inputs=lambda cfg, ws: {"snapshot": ws.require("finetune", "snapshot"), "start_pkl": starting_pickle(cfg)},
    run=_generate)
