"""Compare a super-resolution model with bicubic upscaling on a folder of photos.

`python -m superres_tf.evaluate --model=M.keras --data=DIR [--scale=4] [--width=512]
[--degradation=bicubic,jpeg50|train] [--files=a.jpg,b.jpg | --files=heldout]` prints, per
degradation, PSNR-Y / SSIM-Y (border = scale, 8-bit results), chroma PSNR (Cb, Cr) and sharpness
of the model and of bicubic per image, the mean gain and its 95% interval.

--width=W first resizes each ground-truth photo to W pixels wide (Lanczos). --degradation=bicubic
is the standard "BI" protocol: the photo, cropped to a multiple of the scale, is downscaled with
antialiased bicubic only; jpeg50 then saves that low-resolution copy as JPEG quality 50 (PIL's
defaults). --degradation=train uses the degradation the model was trained with, read from the
training config JSON (`--train_config`; by default `<model>.json` or `config.json` beside the
model); image i is degraded with seed (seed, i).
"""

import json
import os

import numpy as np
from absl import flags, logging
from PIL import Image

from superres_tf import dataset, images, metrics
from superres_tf.enhance import DEFAULT_MODEL, enhance_image, model_scale
from superres_tf.errors import ConfigError, DatasetError, SuperResError
from superres_tf.unet import load_model

BICUBIC_ONLY = {"resample": "bicubic", "jpeg_quality": None, "jpeg_prob": 1.0, "blur_sigma": None,
                "noise_sigma": None}
# Named evaluation protocols: the standard BI one and the same low-resolution copy as JPEG q50.
PROTOCOLS = {"bicubic": BICUBIC_ONLY, "jpeg50": dict(BICUBIC_ONLY, jpeg_quality=50)}
_KEYS = ("psnr_y", "ssim_y", "psnr_cb", "psnr_cr", "sharpness")


def find_train_config(model_path):
    """Path of the training config beside a model (<model>.json, then config.json) or None."""
    for candidate in (os.path.splitext(model_path)[0] + ".json",
                      os.path.join(os.path.dirname(model_path), "config.json")):
        if os.path.isfile(candidate):
            return candidate
    return None


def read_train_config(path):
    """The training config dict saved by superres_tf.train (config.json)."""
    try:
        with open(path) as handle:
            config = json.load(handle)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read training config ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a training config (expected a JSON object)")
    return config


def config_value(config, key, path):
    """config[key], or a ConfigError naming the config file `path` when it lacks `key`."""
    if key not in config:
        raise ConfigError(f"{path}: training config has no {key!r}")
    return config[key]


def resize_to_width(array, width):
    """uint8 HWC photo -> `width` pixels wide (Lanczos, aspect kept); None or a wider target: as is."""
    if not width or array.shape[1] <= width:
        return array
    image = Image.fromarray(array)
    return np.asarray(image.resize((width, max(1, round(image.size[1] * width / image.size[0]))), Image.LANCZOS))


def evaluate(model, paths, scale, degradation, seed=0, tile=256, overlap=32, width=None):
    """Score model and bicubic on each photo (first resized to `width` pixels wide if given).

    Returns a list of dicts: name, then model_<k> and bicubic_<k> for k in psnr_y, ssim_y,
    psnr_cb, psnr_cr, sharpness (border `scale`, 8-bit results; see superres_tf.metrics), and the
    short aliases model_psnr, model_ssim, bicubic_psnr, bicubic_ssim (= the Y values).
    """
    loaded = dataset.load_rgb_images(paths, min_side=4 * scale)
    if not loaded:
        raise DatasetError(f"{os.path.dirname(paths[0]) if paths else '.'}: no usable image to evaluate "
                           f"among {len(paths)} file(s)")
    loaded = [(path, resize_to_width(array, width)) for path, array in loaded]
    rows = []
    for name, low, high in dataset.heldout_pairs(loaded, scale, seed, degradation):
        sr = enhance_image(model, low, tile=tile, overlap=overlap)
        row = {"name": name}
        for kind, result in (("model", sr), ("bicubic", metrics.bicubic_baseline(low, scale, high.shape[1::-1]))):
            row.update({f"{kind}_{k}": v for k, v in metrics.full_score(result, high, scale).items()})
            row.update({f"{kind}_psnr": row[f"{kind}_psnr_y"], f"{kind}_ssim": row[f"{kind}_ssim_y"]})
        rows.append(row)
        logging.info("%s: model %.3f dB, bicubic %.3f dB", name, row["model_psnr"], row["bicubic_psnr"])
    return rows


def summarize(rows):
    """Means of every score, and the mean PSNR-Y gain over bicubic with its 95% t-interval.

    Chroma PSNR is infinite on a grey photo for any output that keeps it grey; its means are over
    the photos where model and bicubic are both finite (inf when there are none)."""
    chroma = [r for r in rows if all(np.isfinite(r[f"{kind}_psnr_{c}"]) for kind in ("model", "bicubic")
                                     for c in ("cb", "cr"))]
    summary = {f"{kind}_{k}": float(np.mean([r[f"{kind}_{k}"] for r in (chroma if k in ("psnr_cb", "psnr_cr")
                                                                          else rows)] or [np.inf]))
               for kind in ("model", "bicubic") for k in _KEYS}
    gains = [r["model_psnr_y"] - r["bicubic_psnr_y"] for r in rows]
    summary["gain_psnr_y"], summary["gain_95"] = metrics.mean_interval(gains)
    return summary


def format_table(rows):
    """Markdown table: per image and mean, model vs bicubic PSNR-Y (dB), the gain, SSIM-Y,
    chroma PSNR and sharpness, then the 95% interval of the mean gain."""
    lines = ["| image | model PSNR-Y | bicubic PSNR-Y | gain (dB) | model SSIM-Y | bicubic SSIM-Y | "
             "model Cb / Cr PSNR | bicubic Cb / Cr PSNR | model sharpness | bicubic sharpness |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary = summarize(rows)
    for row in rows + [dict(summary, name="**mean**")]:
        lines.append(f"| {row['name']} | {row['model_psnr_y']:.2f} | {row['bicubic_psnr_y']:.2f} | "
                     f"{row['model_psnr_y'] - row['bicubic_psnr_y']:+.2f} | {row['model_ssim_y']:.4f} | "
                     f"{row['bicubic_ssim_y']:.4f} | {row['model_psnr_cb']:.2f} / {row['model_psnr_cr']:.2f} | "
                     f"{row['bicubic_psnr_cb']:.2f} / {row['bicubic_psnr_cr']:.2f} | "
                     f"{row['model_sharpness']:.2f} | {row['bicubic_sharpness']:.2f} |")
    low, high = summary["gain_95"]
    lines.append(f"\nmean PSNR-Y gain {summary['gain_psnr_y']:+.2f} dB, 95% interval [{low:+.2f}, {high:+.2f}] "
                 f"over {len(rows)} image(s)")
    return "\n".join(lines)


def select_files(folder, files, train_config, config_path=None):
    """Paths to evaluate: all images of `folder` (sub-folders included), the named ones (paths
    relative to `folder`), or the config's held-out files."""
    paths = images.list_images(folder)
    if not paths:
        raise DatasetError(f"{folder}: no image files")
    if not files:
        return paths
    if files == ["heldout"]:
        if train_config is None:
            raise ConfigError("--files=heldout needs a training config (--train_config)")
        files = config_value(train_config, "heldout_files", config_path)
    by_name = {images.image_name(p, folder): p for p in paths}
    missing = [f for f in files if f not in by_name]
    if missing:
        raise DatasetError(f"{folder}: no file named {', '.join(missing)}")
    return [by_name[f] for f in files]


def training_overlap_note(paths, train_config):
    """A warning line if some of `paths` have the names of the model's training files, else None."""
    trained = set((train_config or {}).get("train_files", []))
    seen = [p for p in paths if os.path.basename(p) in trained]
    if not seen:
        return None
    return (f"note: {len(seen)} of {len(paths)} images have the names of this model's training files, "
            "so their scores flatter it; --files=heldout scores only the photos it never saw")


FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags (defined only when run as a script, so importing adds none)."""
    flags.DEFINE_string("model", None, "Model (.keras); default: the embedded x4 model.")
    flags.DEFINE_string("data", None, "Folder of ground-truth photos.")
    flags.DEFINE_integer("scale", None, "Scale factor (default: the model's).")
    flags.DEFINE_list("degradation", ["bicubic"], "Comma-separated protocols: 'bicubic' (BI), 'jpeg50' "
                      "(BI, then JPEG q50), 'train' (the model's training degradation).")
    flags.DEFINE_integer("width", None, "Resize each ground-truth photo to this width first (Lanczos).")
    flags.DEFINE_list("files", [], "Only these file names ('heldout' = the training run's held-out files).")
    flags.DEFINE_string("train_config", None, "Training config JSON (default: beside the model).")
    flags.DEFINE_integer("seed", 0, "Seed of the degradation.")
    flags.DEFINE_integer("tile", 256, "Tile size for inference.")
    flags.DEFINE_integer("overlap", 32, "Tile overlap for inference.")


def run_from_flags():
    """Evaluate what the flags name; yields the report's lines."""
    model_path = FLAGS.model or DEFAULT_MODEL
    if not FLAGS.data:
        raise ConfigError("--data is required")
    model = load_model(model_path)
    scale = model_scale(model)
    if FLAGS.scale not in (None, scale):
        raise ConfigError(f"--scale={FLAGS.scale} but {model_path} upscales x{scale}")
    config_path = FLAGS.train_config or find_train_config(model_path)
    config = read_train_config(config_path) if config_path else None
    degradations = {}
    for name in FLAGS.degradation:
        if name == "train":
            if config is None:
                raise ConfigError(f"{model_path}: no training config beside it; pass --train_config")
            degradations[name] = config_value(config, "degradation", config_path)
        elif name in PROTOCOLS:
            degradations[name] = PROTOCOLS[name]
        else:
            raise ConfigError(f"--degradation={name}: expected {', '.join(PROTOCOLS)} or train")
    paths = select_files(FLAGS.data, FLAGS.files, config, config_path)
    tables = {name: evaluate(model, paths, scale, degradation, FLAGS.seed, FLAGS.tile, FLAGS.overlap,
                             FLAGS.width) for name, degradation in degradations.items()}
    for name, rows in tables.items():
        yield (f"\nmodel {model_path}, x{scale}, width {FLAGS.width or 'as is'}, degradation {name}: "
               f"{json.dumps(degradations[name])}")
        yield format_table(rows)
    if len(tables) > 1:
        gains = [summarize(rows)["gain_psnr_y"] for rows in tables.values()]
        yield f"\nmean PSNR-Y gain across the {len(tables)} degradations: {np.mean(gains):+.2f} dB"
    note = training_overlap_note(paths, config)
    if note:
        yield note


if __name__ == "__main__":
    from superres_tf import conventions

    define_flags()
    conventions.run(run_from_flags)
