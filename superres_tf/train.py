"""Train a super-resolution network (EDSR-like or U-Net) with the perceptual loss.

`python -m superres_tf.train --data=DIR --scale=4 --outdir=DIR [--resume] ...` or
`run_training(data, outdir, scale=4, ...)` from Python; every option is a field of
:class:`superres_tf.options.Options` (flags, keywords and config.json come from there). Progressive resizing: stage k trains on
crops of `crops[k]` pixels for `stage_epochs[k]` epochs; every photo is also used at the
fractions of its size in `photo_scales` (scale augmentation). AdamW with a one-cycle or cosine learning
rate over all steps. After every epoch: a checkpoint (model weights, optimizer state, epoch) in
`outdir/checkpoint/`, the current model in `outdir/model.keras` (float32, no optimizer), PSNR-Y /
SSIM-Y on the held-out photos (by file) and before/after images in TensorBoard
(`outdir/tensorboard/`). `outdir/config.json` records every setting, the split and the feature
backbone of the perceptual loss with where its weights came from; random feature weights also
leave `outdir/WARNING_RANDOM_FEATURES.txt`.
"""

import dataclasses
import json
import math
import os
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from superres_tf import conventions, dataset, files, images, metrics
from superres_tf.enhance import enhance_image
from superres_tf.errors import ConfigError, SuperResError, WeightsError
from superres_tf.features import dtype_policy, float32_policy
from superres_tf.images import from_unit_float
from superres_tf.models import build_model, make_arch
from superres_tf.options import PRECISIONS, STRATEGIES, Degradation, Options
from superres_tf.perceptual import NO_BACKBONE, PerceptualLoss

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


class LossLogger(keras.callbacks.Callback):
    """Training loss and learning rate to TensorBoard every `every` optimizer steps."""

    def __init__(self, writer, every=20):
        super().__init__()
        self.writer, self.every = writer, every

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if logs and step % self.every == 0:
            with self.writer.as_default(step=step):
                files.write_scalar("train/loss", logs["loss"], step)
                files.write_scalar("train/learning_rate", self.model.optimizer.learning_rate, step)


def save_model_atomic(model, path):
    """model.save to a hidden temp .keras name beside `path`, then rename (superres_tf.files)."""
    with files.atomic_path(path, SuperResError, suffix=".keras") as tmp:
        model.save(tmp)


def write_json(path, data):
    """Atomically write `data` as indented JSON."""
    files.write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode(), SuperResError)


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
    """Atomically save a list of arrays as an .npz (keys a00000, a00001, ... keep the order)."""
    files.save_arrays(path, {f"a{i:05d}": a for i, a in enumerate(arrays)}, SuperResError)


def _load_arrays(path):
    """The list of arrays saved by _save_arrays."""
    arrays, _ = files.load_arrays(path)
    return [arrays[k] for k in sorted(arrays)]


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
                    files.write_scalar(f"heldout/{key}", value, epoch + 1)
                for index, panel in enumerate(panels):
                    files.write_image(f"heldout/bicubic_model_truth_{index}", from_unit_float(panel), epoch + 1)
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


def make_options(data, outdir, **options) -> Options:
    """:class:`Options` from run_training's arguments: ``degradation`` may also be a dict of
    :class:`Degradation` fields (missing ones take its defaults) or None (the defaults)."""
    names = {f.name for f in dataclasses.fields(Options)}
    unknown = set(options) - names
    if unknown:
        raise TypeError(f"run_training: unknown option(s) {sorted(unknown)}")
    degradation = options.get("degradation")
    if degradation is None or isinstance(degradation, dict):
        try:
            options["degradation"] = Degradation(**(degradation or {}))
        except TypeError:
            known = [f.name for f in dataclasses.fields(Degradation)]
            raise ConfigError(f"degradation={degradation!r}: expected keys among {', '.join(known)}") from None
    return Options(data=data, outdir=outdir, **options)


def _check(opts):
    if len(opts.crops) != len(opts.stage_epochs):
        raise ConfigError(f"{len(opts.crops)} crop sizes but {len(opts.stage_epochs)} stage epoch counts")
    for name in ("schedule", "mixed_precision", "strategy"):
        choices = next(f.metadata["choices"] for f in dataclasses.fields(Options) if f.name == name)
        if getattr(opts, name) not in choices:
            raise ConfigError(f"{name}={getattr(opts, name)!r}: expected one of {', '.join(choices)}")


def run_training(data, outdir, **options):
    """Train (or resume) a network on the photos in `data`; write everything into `outdir`.

    `options` are :class:`superres_tf.options.Options` fields (each documented there), e.g. scale,
    arch ('edsr' uses width, blocks, output; 'unet' uses width, depth, convs; see
    superres_tf.models), crops, stage_epochs, max_lr, holdout, degradation, resume. `backbone`
    ('auto', 'vgg16', 'efficientnet_lite0', 'random') and `backbone_weights` (a file) choose the
    perceptual loss's features (superres_tf.features); `loss_layers`/`loss_weights`/`gram_weights`
    default to the backbone's taps and weights, and an empty `loss_layers` is a pixel-only L1
    loss (no backbone is loaded).

    Returns a dict: 'model' (path of outdir/model.keras), 'config' (path of config.json),
    'weights_source' (where the feature weights came from), 'heldout' (file names), 'metrics' (last held-out
    PSNR-Y/SSIM-Y of model and bicubic) and 'epochs_done'.
    """
    opts = make_options(data, outdir, **options)
    _check(opts)
    degradation = dataclasses.asdict(opts.degradation)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{outdir}: cannot create the output folder ({error.strerror})") from None
    config_path, model_path = os.path.join(outdir, "config.json"), os.path.join(outdir, "model.keras")
    checkpointer = Checkpointer(os.path.join(outdir, "checkpoint"))
    if os.path.exists(checkpointer.state) and not opts.resume:
        raise ConfigError(f"{outdir}: holds a checkpoint; pass --resume to continue it or use a new --outdir")

    train_images, held_images = dataset.load_folder(data, min(opts.crops), holdout=opts.holdout, seed=opts.seed)
    heldout = dataset.heldout_pairs(held_images, opts.scale, opts.seed, degradation, max_side=opts.val_max_side)
    with dtype_policy(PRECISIONS[opts.mixed_precision]):
        keras.utils.set_random_seed(opts.seed)
        arch = make_arch(opts.arch, opts.scale, width=opts.width, depth=opts.depth, convs=opts.convs,
                         blocks=opts.blocks, output=opts.output)
        total_steps = sum(opts.stage_epochs) * opts.steps_per_epoch
        with get_strategy(opts.strategy).scope():
            model = build_model(arch)
            loss = _loss(opts)
            rate = OneCycle(opts.max_lr, total_steps, pct_start=0.25 if opts.schedule == "onecycle" else 0.0)
            optimizer = keras.optimizers.AdamW(rate, weight_decay=opts.weight_decay)
            model.compile(optimizer=optimizer, loss=loss)
            done = checkpointer.restore(model, optimizer) if opts.resume else 0

        config = {**dataclasses.asdict(opts), "data": os.path.abspath(data), "arch": arch,
                  "loss": loss.get_config(), "features": loss.backbone_info,
                  "features_source": loss.weights_source,
                  "train_files": [images.image_name(p, data) for p, _ in train_images],
                  "heldout_files": [images.image_name(p, data) for p, _ in held_images],
                  "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}
        write_json(config_path, config)
        if loss.weights_source.startswith("RANDOM"):
            files.write_bytes(os.path.join(outdir, WARNING_FILE),
                              f"WARNING: the perceptual loss of this run used a {loss.weights_source}.\n"
                              "Its features are not ImageNet features: not a perceptual loss.\n".encode(),
                              SuperResError)

        writer = tf.summary.create_file_writer(os.path.join(outdir, "tensorboard", "heldout"))
        epoch_end = EpochEnd(heldout, opts.scale, loss, checkpointer, _export_fn(arch, model_path), writer,
                             tile=max(16, opts.val_max_side // opts.scale))
        board = LossLogger(tf.summary.create_file_writer(os.path.join(outdir, "tensorboard", "train")))
        fit_verbose = (1 if sys.stdout.isatty() else 2) if opts.verbose == "auto" else opts.verbose
        start = 0
        for stage, (crop, epochs) in enumerate(zip(opts.crops, opts.stage_epochs)):
            end, first = start + epochs, max(start, done)
            if first < end:
                logging.info("stage %d: crops of %d px, epochs %d..%d", stage, crop, first + 1, end)
                stream = dataset.pair_dataset(train_images, opts.scale, crop, opts.batch_size,
                                              (opts.seed, stage, first), degradation, opts.photo_scales, opts.flips)
                model.fit(stream, epochs=end, initial_epoch=first, steps_per_epoch=opts.steps_per_epoch,
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


def _loss(opts):
    """The run's PerceptualLoss; an empty ``loss_layers`` is pixel L1 only, with no backbone."""
    if opts.loss_layers is not None and not len(opts.loss_layers):
        return PerceptualLoss(backbone=NO_BACKBONE, layers=(), weights=(), gram_weights=(),
                              pixel_weight=opts.pixel_weight, seed=opts.seed)
    return PerceptualLoss(backbone=opts.backbone, backbone_weights=opts.backbone_weights, layers=opts.loss_layers,
                          weights=opts.loss_weights, gram_weights=opts.gram_weights,
                          pixel_weight=opts.pixel_weight, seed=opts.seed)


def run_from_flags():
    """Train as the flags say; returns the result as JSON lines."""
    return [json.dumps(run_training(**conventions.options_from_flags(Options)), indent=2)]


if __name__ == "__main__":
    conventions.define_flags(Options)
    conventions.run(run_from_flags)
