"""Evidence for the super-resolution loss: matched models that differ only in their loss.

  python bench/sr_loss_ablation.py --data=PHOTOS --outdir=bench/out/sr_ablation [--steps=1500]

Trains one EDSR-like x4 network per loss variant on the same photos (a held-out split by file),
with the same architecture, data stream, seed, schedule and number of steps:

  pixel          pixel L1 only
  imagenet       pixel L1 + perceptual loss on EfficientNet-Lite0 with its ImageNet weights
                 (the offline backbone; the taps and weights of superres_tf.perceptual)
  imagenet_light the same with the feature and Gram weights divided by 10
  random         pixel L1 + the same perceptual loss on a RANDOM EfficientNet-Lite0

then scores each on the held-out photos resized to --width pixels wide, low resolution made with
PIL bicubic /4 ('bicubic') and that copy saved as JPEG q50 ('jpeg50'): PSNR-Y, SSIM-Y, Cb/Cr PSNR
and sharpness (gradient energy over the truth's) of the model and of bicubic, per image. Prints
Markdown tables and writes them with the raw rows to <outdir>/ablation.json. A run that exists in
<outdir>/<variant> is resumed, so an interrupted ablation continues.
"""

import json
import os
import sys

import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from superres_tf import conventions  # noqa: E402

LIGHT = 0.1
VARIANTS = ("pixel", "imagenet", "imagenet_light", "random")

flags.DEFINE_string("data", None, "Folder of photos (split by file: train / held out).")
flags.DEFINE_string("outdir", "bench/out/sr_ablation", "Output folder (one run folder per variant).")
flags.DEFINE_list("variants", list(VARIANTS), "Loss variants to train and score.")
flags.DEFINE_integer("steps", 1500, "Optimizer steps of every variant.")
flags.DEFINE_integer("width", 48, "EDSR channels.")
flags.DEFINE_integer("blocks", 6, "EDSR residual blocks.")
flags.DEFINE_integer("crop", 144, "High-resolution crop side.")
flags.DEFINE_integer("batch", 16, "Batch size.")
flags.DEFINE_float("lr", 5e-4, "Peak learning rate (one-cycle).")
flags.DEFINE_float("holdout", 0.25, "Fraction of the photos held out (by file, seed 0).")
flags.DEFINE_integer("eval_width", 512, "Held-out photos are resized to this width before scoring.")
FLAGS = flags.FLAGS


def loss_options(variant):
    """run_training's loss keywords of one variant."""
    from superres_tf.perceptual import LOSS_DEFAULTS
    taps, weights, grams = LOSS_DEFAULTS["efficientnet_lite0"]
    if variant == "pixel":
        return {"backbone": "random", "loss_layers": ()}
    if variant == "imagenet":
        return {"backbone": "efficientnet_lite0"}
    if variant == "imagenet_light":
        return {"backbone": "efficientnet_lite0", "loss_layers": taps,
                "loss_weights": [w * LIGHT for w in weights], "gram_weights": [g * LIGHT for g in grams]}
    if variant == "random":
        return {"backbone": "random_efficientnet_lite0"}
    raise ValueError(f"unknown variant {variant!r} (expected one of {VARIANTS})")


def train_variant(variant):
    """Train (or resume) one variant; returns (model path, config dict)."""
    from superres_tf.train import run_training
    outdir = os.path.join(FLAGS.outdir, variant)
    epochs = max(1, FLAGS.steps // 250)
    result = run_training(FLAGS.data, outdir, scale=4, arch="edsr", width=FLAGS.width, blocks=FLAGS.blocks,
                          crops=(FLAGS.crop,), stage_epochs=(epochs,), steps_per_epoch=FLAGS.steps // epochs,
                          batch_size=FLAGS.batch, max_lr=FLAGS.lr, holdout=FLAGS.holdout, seed=0,
                          photo_scales=(1.0, 0.8, 0.64, 0.5, 0.4),
                          resume=os.path.exists(os.path.join(outdir, "checkpoint", "state.json")),
                          **loss_options(variant))
    with open(result["config"]) as handle:
        return result["model"], json.load(handle)


def score_variant(model_path, config):
    """{protocol: rows} on the run's held-out files (superres_tf.evaluate)."""
    from superres_tf.evaluate import PROTOCOLS, evaluate
    from superres_tf.unet import load_model
    model = load_model(model_path)
    paths = [os.path.join(FLAGS.data, name) for name in config["heldout_files"]]
    return {name: evaluate(model, paths, 4, PROTOCOLS[name], width=FLAGS.eval_width)
            for name in ("bicubic", "jpeg50")}


def summary_table(results):
    """One Markdown row per variant and protocol: means over the held-out photos."""
    from superres_tf.evaluate import summarize
    lines = ["| loss | input | PSNR-Y gain (95% interval) | SSIM-Y (bicubic) | Cb / Cr PSNR (bicubic) | "
             "sharpness (bicubic) |", "|---|---|---|---|---|---|"]
    for variant, tables in results.items():
        for protocol, rows in tables.items():
            s = summarize(rows)
            low, high = s["gain_95"]
            lines.append(f"| {variant} | {protocol} | {s['gain_psnr_y']:+.2f} [{low:+.2f}, {high:+.2f}] | "
                         f"{s['model_ssim_y']:.4f} ({s['bicubic_ssim_y']:.4f}) | "
                         f"{s['model_psnr_cb']:.2f} / {s['model_psnr_cr']:.2f} "
                         f"({s['bicubic_psnr_cb']:.2f} / {s['bicubic_psnr_cr']:.2f}) | "
                         f"{s['model_sharpness']:.3f} ({s['bicubic_sharpness']:.3f}) |")
    return "\n".join(lines)


def main():
    if not FLAGS.data:
        raise conventions.ProjectError("--data is required (a folder of photos)")
    from superres_tf.evaluate import format_table
    results, tables = {}, {}
    for variant in FLAGS.variants:
        model_path, config = train_variant(variant)
        results[variant] = score_variant(model_path, config)
        tables[variant] = {protocol: format_table(rows) for protocol, rows in results[variant].items()}
    summary = summary_table(results)
    yield summary
    for variant, per_protocol in tables.items():
        for protocol, table in per_protocol.items():
            yield f"\n### {variant}, {protocol}\n\n{table}"
    with open(os.path.join(FLAGS.outdir, "ablation.json"), "w") as handle:
        json.dump({"flags": {k: FLAGS[k].value for k in ("steps", "width", "blocks", "crop", "batch", "lr",
                                                          "holdout", "eval_width")},
                   "summary": summary, "tables": tables, "rows": results}, handle, indent=1,
                  default=lambda x: float(x) if isinstance(x, np.floating) else str(x))


if __name__ == "__main__":
    conventions.run(main)
