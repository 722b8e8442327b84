"""Train a super-resolution network (EDSR-like or U-Net) with the perceptual loss.

`python -m superres_tf.train --data=DIR --scale=4 --outdir=DIR [--resume] ...` or
`run_training(data, outdir, scale=4, ...)` from Python. Progressive resizing: stage k trains on
crops of `crops[k]` pixels for `stage_epochs[k]` epochs; every photo is also used at the
fractions of its size in `photo_scales` (scale augmentation). AdamW with a one-cycle or cosine learning
rate over all steps. After every epoch: a checkpoint (model weights, optimizer state, epoch) in
`outdir/checkpoint/`, the current model in `outdir/model.keras` (float32, no optimizer), PSNR-Y /
SSIM-Y on the held-out photos (by file) and before/after images in TensorBoard
(`outdir/tensorboard/`). `outdir/config.json` records every setting, the split and the feature
backbone of the perceptual loss with where its weights came from; random feature weights also
leave `outdir/WARNING_RANDOM_FEATURES.txt`.
"""

import json
import math
import os
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from tensorflow.core.framework import summary_pb2

from superres_tf import dataset, metrics
from superres_tf.enhance import enhance_image
from superres_tf.errors import ConfigError, SuperResError, WeightsError
from superres_tf.images import atomic_write_bytes, from_unit_float
from superres_tf.features import NAMES as BACKBONES
from superres_tf.features import dtype_policy, float32_policy
from superres_tf.perceptual import PerceptualLoss
from superres_tf.models import KEYWORDS, build_model, make_arch

STRATEGIES = ("default", "mirrored", "one_device")
PRECISIONS = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
WARNING_FILE = "WARNING_RANDOM_FEATURES.txt"


def features_source(config):
    """Where the perceptual loss's feature weights of a training config came from (older configs
    called it 'vgg_weights_source'); 'unknown' when not recorded."""
    return config.get("features_source", config.get("vgg_weights_source", "unknown"))


@keras.saving.register_keras_serializable(package="superres_tf")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle (cosine warm-up to `max_lr` over `pct_start` of the steps, cosine decay to
    `max_lr / final_div`) or plain cosine decay (pct_start=0) over `total_steps`."""

    def __init__(self, max_lr, total_steps, pct_start=0.25, div=25.0, final_div=1e4):
        self.max_lr, self.total_steps, self.pct_start = max_lr, total_steps, pct_start
        self.div, self.final_div = div, final_div

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = max(1.0, self.pct_start * self.total_steps)
        low, end = self.max_lr / self.div, self.max_lr / self.final_div

        def cosine(start, stop, fraction):
            return stop + (start - stop) * 0.5 * (1.0 + tf.cos(math.pi * tf.clip_by_value(fraction, 0.0, 1.0)))

        decay = cosine(self.max_lr, end, (step - warm) / max(1.0, self.total_steps - warm))
        if self.pct_start <= 0:
            return cosine(self.max_lr, end, step / max(1.0, self.total_steps))
        return tf.where(step < warm, cosine(low, self.max_lr, step / warm), decay)

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
                "div": self.div, "final_div": self.final_div}


def _summary_metadata(plugin):
    """TensorBoard plugin metadata, so events need only TensorFlow (no tensorboard package)."""
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))


def write_scalar(tag, value, step):
    """One TensorBoard scalar into the default summary writer."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                     metadata=_summary_metadata("scalars"))


def write_image(tag, rgb, step):
    """One HWC float [0, 1] image (PNG-encoded) into the default summary writer."""
    png = tf.io.encode_png(tf.constant(from_unit_float(rgb)))
    tensor = tf.stack([tf.as_string(rgb.shape[1]), tf.as_string(rgb.shape[0]), png])
    tf.summary.write(tag, tensor, step=step, metadata=_summary_metadata("images"))


class LossLogger(keras.callbacks.Callback):
    """Training loss and learning rate to TensorBoard every `every` optimizer steps."""

    def __init__(self, writer, every=20):
        super().__init__()
        self.writer, self.every = writer, every

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if logs and step % self.every == 0:
            with self.writer.as_default(step=step):
                write_scalar("train/loss", logs["loss"], step)
                write_scalar("train/learning_rate", self.model.optimizer.learning_rate, step)


def save_model_atomic(model, path):
    """model.save to a temp .keras name beside `path`, then rename."""
    tmp = f"{path[:-len('.keras')]}.tmp{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, path)


def write_json(path, data):
    """Atomically write `data` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def get_strategy(name):
    """'default' | 'mirrored' | 'one_device' -> a tf.distribute.Strategy."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy((tf.config.list_logical_devices("GPU") or
                                                tf.config.list_logical_devices("CPU"))[0].name)
    raise ConfigError(f"strategy={name!r}: expected one of {STRATEGIES}")


def _save_arrays(path, arrays):
    """Atomically save a list of arrays as an .npz (keys keep the order)."""
    tmp = f"{path[:-len('.npz')]}.tmp{os.getpid()}.npz"
    np.savez(tmp, **{f"a{i:05d}": a for i, a in enumerate(arrays)})
    os.replace(tmp, path)


def _load_arrays(path):
    """The list of arrays saved by _save_arrays."""
    with np.load(path) as saved:
        return [saved[k] for k in sorted(saved.files)]


class Checkpointer:
    """Per-epoch checkpoint in `folder`: model weights, optimizer variables, state.json (last)."""

    def __init__(self, folder):
        self.folder = folder
        self.weights = os.path.join(folder, "model_weights.npz")
        self.optimizer = os.path.join(folder, "optimizer.npz")
        self.state = os.path.join(folder, "state.json")

    def save(self, model, optimizer, epoch):
        os.makedirs(self.folder, exist_ok=True)
        _save_arrays(self.weights, model.get_weights())
        _save_arrays(self.optimizer, [np.asarray(v) for v in optimizer.variables])
        write_json(self.state, {"epochs_done": epoch})

    def restore(self, model, optimizer):
        """Load the checkpoint into `model` / `optimizer`; returns the number of epochs done (0 if none)."""
        if not os.path.exists(self.state):
            return 0
        with open(self.state) as handle:
            done = json.load(handle)["epochs_done"]
        model.set_weights(_load_arrays(self.weights))
        optimizer.build(model.trainable_variables)
        values = _load_arrays(self.optimizer)
        if len(values) != len(optimizer.variables):
            raise WeightsError(f"{self.optimizer}: {len(values)} optimizer variables, expected "
                               f"{len(optimizer.variables)} (different model or optimizer settings?)")
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
        logging.info("resumed from %s: %d epochs done, optimizer step %d", self.folder, done,
                     int(optimizer.iterations.numpy()))
        return done


class EpochEnd(keras.callbacks.Callback):
    """After each epoch: held-out PSNR/SSIM + images to TensorBoard, checkpoint, model.keras."""

    def __init__(self, heldout, scale, loss, checkpointer, export, writer, tile):
        super().__init__()
        self.heldout, self.scale, self.loss = heldout, scale, loss
        self.checkpointer, self.export, self.writer, self.tile = checkpointer, export, writer, tile
        self.bicubic = [metrics.score(metrics.bicubic_baseline(low, scale, high.shape[1::-1]), high, scale)
                        for _, low, high in heldout]
        self.last = {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        scores, terms, panels = [], {}, []
        for index, (_, low, high) in enumerate(self.heldout):
            sr = enhance_image(self.model, low, tile=self.tile, overlap=min(32, self.tile // 4))
            scores.append(metrics.score(sr, high, self.scale))
            for key, value in self.loss.per_term(high[None], sr[None]).items():
                terms.setdefault(key, []).append(float(np.mean(value)))
            if index < 3:
                bicubic = metrics.bicubic_baseline(low, self.scale, high.shape[1::-1])
                panels.append(np.concatenate([bicubic, np.clip(sr, 0, 1), high], axis=1))
        if scores:
            psnr, ssim = np.mean(scores, axis=0)
            base_psnr, base_ssim = np.mean(self.bicubic, axis=0)
            logs.update(heldout_psnr_y=psnr, heldout_ssim_y=ssim)
            self.last = {"heldout_psnr_y": float(psnr), "heldout_ssim_y": float(ssim),
                         "bicubic_psnr_y": float(base_psnr), "bicubic_ssim_y": float(base_ssim),
                         "epoch": epoch + 1}
            logging.info("epoch %d: held-out PSNR-Y %.3f dB (bicubic %.3f), SSIM-Y %.4f (bicubic %.4f)",
                         epoch + 1, psnr, base_psnr, ssim, base_ssim)
            with self.writer.as_default(step=epoch + 1):
                for key, value in {**self.last, **{f"loss_{k}": np.mean(v) for k, v in terms.items()}}.items():
                    write_scalar(f"heldout/{key}", value, epoch + 1)
                for index, panel in enumerate(panels):
                    write_image(f"heldout/bicubic_model_truth_{index}", panel, epoch + 1)
            self.writer.flush()
        self.checkpointer.save(self.model, self.model.optimizer, epoch + 1)
        self.export(self.model)


def _export_fn(arch, path):
    """Returns f(model): copy the weights into a float32 model built from `arch`, save to `path`."""
    def export(model):
        with float32_policy():
            clean = build_model(arch)
        clean.set_weights(model.get_weights())
        save_model_atomic(clean, path)
    return export


def run_training(data, outdir, scale=4, arch="unet", width=32, depth=2, convs=2, blocks=12, output="luma",
                 crops=(96, 192), stage_epochs=(4, 2), photo_scales=(1.0,),
                 steps_per_epoch=100, batch_size=16, max_lr=1e-3, schedule="onecycle",
                 weight_decay=1e-4, holdout=0.2, seed=0, backbone="auto", backbone_weights=None,
                 loss_layers=None, loss_weights=None, gram_weights=None, pixel_weight=1.0, degradation=None,
                 mixed_precision="none", strategy="default", resume=False, val_max_side=256,
                 verbose="auto"):
    """Train (or resume) a network on the photos in `data`; write everything into `outdir`.

    `arch` is 'edsr' (uses width, blocks, output) or 'unet' (uses width, depth, convs); see
    superres_tf.models. `backbone` ('auto', 'vgg16', 'efficientnet_lite0', 'random') and
    `backbone_weights` (a file) choose the perceptual loss's features (superres_tf.features);
    `loss_layers`/`loss_weights`/`gram_weights` default to the backbone's taps and weights, and
    an empty `loss_layers` is a pixel-only L1 loss.

    Returns a dict: 'model' (path of outdir/model.keras), 'config' (path of config.json),
    'weights_source' (where the feature weights came from), 'heldout' (file names), 'metrics' (last held-out
    PSNR-Y/SSIM-Y of model and bicubic) and 'epochs_done'.
    """
    if len(crops) != len(stage_epochs):
        raise ConfigError(f"{len(crops)} crop sizes but {len(stage_epochs)} stage epoch counts")
    if schedule not in ("onecycle", "cosine"):
        raise ConfigError(f"schedule={schedule!r}: expected 'onecycle' or 'cosine'")
    if mixed_precision not in PRECISIONS:
        raise ConfigError(f"mixed_precision={mixed_precision!r}: expected one of {sorted(PRECISIONS)}")
    degradation = dict(dataset.DEFAULT_DEGRADATION if degradation is None else degradation)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{outdir}: cannot create the output folder ({error.strerror})") from None
    config_path, model_path = os.path.join(outdir, "config.json"), os.path.join(outdir, "model.keras")
    checkpointer = Checkpointer(os.path.join(outdir, "checkpoint"))
    if os.path.exists(checkpointer.state) and not resume:
        raise ConfigError(f"{outdir}: holds a checkpoint; pass --resume to continue it or use a new --outdir")

    train_images, held_images = dataset.load_folder(data, min(crops), holdout=holdout, seed=seed)
    heldout = dataset.heldout_pairs(held_images, scale, seed, degradation, max_side=val_max_side)
    with dtype_policy(PRECISIONS[mixed_precision]):
        keras.utils.set_random_seed(seed)
        arch = make_arch(arch, scale, width=width, depth=depth, convs=convs, blocks=blocks, output=output)
        total_steps = sum(stage_epochs) * steps_per_epoch
        with get_strategy(strategy).scope():
            model = build_model(arch)
            if loss_layers is not None and not len(loss_layers):  # pixel L1 only
                loss_weights, gram_weights = (), ()
            loss = PerceptualLoss(backbone=backbone, backbone_weights=backbone_weights, layers=loss_layers,
                                  weights=loss_weights, gram_weights=gram_weights, pixel_weight=pixel_weight,
                                  seed=seed)
            rate = OneCycle(max_lr, total_steps, pct_start=0.25 if schedule == "onecycle" else 0.0)
            optimizer = keras.optimizers.AdamW(rate, weight_decay=weight_decay)
            model.compile(optimizer=optimizer, loss=loss)
            done = checkpointer.restore(model, optimizer) if resume else 0

        config = {"data": os.path.abspath(data), "arch": arch, "crops": list(crops),
                  "stage_epochs": list(stage_epochs), "photo_scales": list(photo_scales),
                  "steps_per_epoch": steps_per_epoch,
                  "batch_size": batch_size, "max_lr": max_lr, "schedule": schedule,
                  "weight_decay": weight_decay, "seed": seed, "degradation": degradation,
                  "loss": loss.get_config(), "features": loss.backbone_info,
                  "features_source": loss.weights_source,
                  "mixed_precision": mixed_precision, "strategy": strategy,
                  "train_files": [os.path.basename(p) for p, _ in train_images],
                  "heldout_files": [os.path.basename(p) for p, _ in held_images],
                  "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}
        write_json(config_path, config)
        if loss.weights_source.startswith("RANDOM"):
            atomic_write_bytes(os.path.join(outdir, WARNING_FILE),
                               f"WARNING: the perceptual loss of this run used a {loss.weights_source}.\n"
                               "Its features are not ImageNet features: not a perceptual loss.\n".encode())

        writer = tf.summary.create_file_writer(os.path.join(outdir, "tensorboard", "heldout"))
        epoch_end = EpochEnd(heldout, scale, loss, checkpointer, _export_fn(arch, model_path), writer,
                             tile=max(16, val_max_side // scale))
        board = LossLogger(tf.summary.create_file_writer(os.path.join(outdir, "tensorboard", "train")))
        fit_verbose = (1 if sys.stdout.isatty() else 2) if verbose == "auto" else verbose
        start = 0
        for stage, (crop, epochs) in enumerate(zip(crops, stage_epochs)):
            end, first = start + epochs, max(start, done)
            if first < end:
                logging.info("stage %d: crops of %d px, epochs %d..%d", stage, crop, first + 1, end)
                stream = dataset.pair_dataset(train_images, scale, crop, batch_size, (seed, stage, first),
                                              degradation, photo_scales)
                model.fit(stream, epochs=end, initial_epoch=first, steps_per_epoch=steps_per_epoch,
                          callbacks=[board, epoch_end], verbose=fit_verbose)
            start = end
        if done >= start and not os.path.exists(model_path):
            epoch_end.export(model)
    result = {"model": model_path, "config": config_path, "weights_source": loss.weights_source,
              "heldout": config["heldout_files"], "metrics": epoch_end.last, "epochs_done": start}
    write_json(config_path, {**config, "result": result})
    if loss.weights_source.startswith("RANDOM"):
        logging.warning("finished WITH RANDOM FEATURES in the perceptual loss (%s); see %s",
                        loss.weights_source, os.path.join(outdir, WARNING_FILE))
    return result


FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags (defined only when run as a script, so importing adds none)."""
    flags.DEFINE_string("data", None, "Folder of training photos.")
    flags.DEFINE_string("outdir", None, "Output folder (checkpoints, model.keras, TensorBoard, config.json).")
    flags.DEFINE_integer("scale", 4, "Upscaling factor: 1, 2 or 4.")
    flags.DEFINE_enum("arch", "unet", sorted(KEYWORDS), "Network: 'edsr' (residual blocks at low "
                      "resolution) or 'unet'.")
    flags.DEFINE_integer("width", 32, "Channels (edsr: of every conv; unet: at the first level).")
    flags.DEFINE_integer("depth", 2, "unet: levels.")
    flags.DEFINE_integer("convs", 2, "unet: 3x3 convs per level.")
    flags.DEFINE_integer("blocks", 12, "edsr: residual blocks.")
    flags.DEFINE_enum("output", "luma", ["luma", "rgb"], "edsr: grey residual (chroma stays bicubic) or colour.")
    flags.DEFINE_list("photo_scales", ["1.0"], "Fractions of each photo's size used for training crops.")
    flags.DEFINE_list("crops", ["96", "192"], "High-resolution crop size of each progressive-resizing stage.")
    flags.DEFINE_list("stage_epochs", ["4", "2"], "Epochs of each stage.")
    flags.DEFINE_integer("steps_per_epoch", 100, "Optimizer steps per epoch.")
    flags.DEFINE_integer("batch_size", 16, "Global batch size.")
    flags.DEFINE_float("lr", 1e-3, "Peak learning rate.")
    flags.DEFINE_enum("schedule", "onecycle", ["onecycle", "cosine"], "Learning-rate schedule.")
    flags.DEFINE_float("weight_decay", 1e-4, "AdamW weight decay.")
    flags.DEFINE_float("holdout", 0.2, "Fraction of the files held out (by file) for evaluation.")
    flags.DEFINE_integer("seed", 0, "Seed of the split, the initial weights and the data stream.")
    flags.DEFINE_enum("backbone", "auto", list(BACKBONES), "Features of the perceptual loss: 'auto' (VGG16 "
                      "ImageNet if cached or downloadable, else EfficientNet-Lite0 ImageNet from its "
                      "package), 'vgg16', 'efficientnet_lite0', or 'random' (tests only).")
    flags.DEFINE_string("backbone_weights", None, "A weights file for the backbone (overrides its default source).")
    flags.DEFINE_list("loss_layers", None, "Backbone layers of the feature loss (default: the backbone's "
                      "taps; '' = pixel L1 only).")
    flags.DEFINE_list("loss_weights", None, "Feature-loss weight per layer (default: the backbone's).")
    flags.DEFINE_list("gram_weights", None, "Gram-loss weight per layer (default: the backbone's).")
    flags.DEFINE_float("pixel_weight", 1.0, "Pixel L1 weight.")
    flags.DEFINE_list("jpeg_quality", ["10", "70"], "JPEG quality range of the degradation ('' = no JPEG).")
    flags.DEFINE_float("jpeg_prob", 1.0, "Probability of the JPEG step.")
    flags.DEFINE_float("blur_prob", 1.0, "Probability of the blur step (when --blur_sigma is set).")
    flags.DEFINE_float("noise_prob", 1.0, "Probability of the noise step (when --noise_sigma is set).")
    flags.DEFINE_list("blur_sigma", [], "Gaussian blur sigma range before the downscale (empty = none).")
    flags.DEFINE_list("noise_sigma", [], "Gaussian noise sigma range, 0-255 units (empty = none).")
    flags.DEFINE_enum("resample", "bicubic", ["bicubic", "bilinear"], "Downscaling filter.")
    flags.DEFINE_enum("mixed_precision", "none", sorted(PRECISIONS), "Mixed precision (bf16 suits recent CPUs).")
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_bool("resume", False, "Continue the checkpoint in --outdir (epoch, step, optimizer).")
    flags.DEFINE_integer("val_max_side", 256, "Held-out photos are centre-cropped to this size for per-epoch metrics.")


def _range(values, cast=float):
    """Flag list -> None (empty) or a (low, high) tuple."""
    values = [cast(v) for v in values if v != ""]
    return None if not values else (values[0], values[-1])


def _names(values):
    """Flag list -> None (flag not given) or a tuple of the non-empty names."""
    return None if values is None else tuple(v for v in values if v)


def _floats(values):
    return None if values is None else tuple(float(v) for v in values if v != "")


def main(argv):
    del argv
    if not FLAGS.data or not FLAGS.outdir:
        print("error: --data and --outdir are required", file=sys.stderr)
        sys.exit(2)
    degradation = {"resample": FLAGS.resample, "jpeg_quality": _range(FLAGS.jpeg_quality, int),
                   "jpeg_prob": FLAGS.jpeg_prob, "blur_sigma": _range(FLAGS.blur_sigma),
                   "blur_prob": FLAGS.blur_prob, "noise_sigma": _range(FLAGS.noise_sigma),
                   "noise_prob": FLAGS.noise_prob}
    try:
        result = run_training(
            FLAGS.data, FLAGS.outdir, scale=FLAGS.scale, arch=FLAGS.arch, width=FLAGS.width,
            depth=FLAGS.depth, convs=FLAGS.convs, blocks=FLAGS.blocks, output=FLAGS.output,
            crops=[int(c) for c in FLAGS.crops], photo_scales=[float(f) for f in FLAGS.photo_scales],
            stage_epochs=[int(e) for e in FLAGS.stage_epochs], steps_per_epoch=FLAGS.steps_per_epoch,
            batch_size=FLAGS.batch_size, max_lr=FLAGS.lr, schedule=FLAGS.schedule,
            weight_decay=FLAGS.weight_decay, holdout=FLAGS.holdout, seed=FLAGS.seed,
            backbone=FLAGS.backbone, backbone_weights=FLAGS.backbone_weights,
            loss_layers=_names(FLAGS.loss_layers), loss_weights=_floats(FLAGS.loss_weights),
            gram_weights=_floats(FLAGS.gram_weights), pixel_weight=FLAGS.pixel_weight,
            degradation=degradation, mixed_precision=FLAGS.mixed_precision,
            strategy=FLAGS.strategy, resume=FLAGS.resume, val_max_side=FLAGS.val_max_side)
    except (SuperResError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
