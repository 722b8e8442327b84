"""Fine-tune (or train from scratch) StyleGAN / StyleGAN2 / StyleGAN2-ADA on an image folder.

NVIDIA's recipe: non-saturating logistic G loss, logistic D loss, R1 on reals (gamma), the
path-length regulariser for StyleGAN2/ADA, lazy regularisation (G every 4, D every 16 minibatches,
Adam lr*c, beta^c with c = I/(I+1); v1 adds R1 to every D step, unadjusted), Adam(beta1 0,
beta2 0.99, eps 1e-8), Gs = EMA of G with a half-life of ``ema_kimg`` (non-trainables copied),
style mixing through G's ``is_training=True``. Limited-data aids: ADA (``aug='ada'``) and Freeze-D
(``freezed=N``). Runs under ``tf.distribute`` (:mod:`stylegan_tl.distribute`), global batch split
over the replicas.

Command line::

    python -m stylegan_tl.train --data=photos/ --resume=stylegan2-church-config-f --outdir=runs/church \\
        --kimg=200 --gamma=100 --mirror --aug=ada --freezed=4 --snap=10

The run directory receives ``network-snapshot-<kimg>.pkl`` (NVIDIA format), ``fakes<kimg>.png``,
a training-state file beside the newest snapshot and TensorBoard logs (``logs/``). Running the same
command again continues from the newest snapshot (same kimg counter, optimizer and ADA state).
"""

import collections
import dataclasses
import math
import os
import re
import sys
import time

import numpy as np
from absl import logging

from . import snapshot as snap_files
from .errors import DatasetError, StyleGANTLError

# ADA-TF cfgs (spec section 5.2): minibatch, R1 gamma, lr, ema half-life in kimg.
CONFIGS = {
    "stylegan2": dict(batch=32, gamma=10.0, lr=0.002, ema_kimg=10.0),
    "paper256": dict(batch=64, gamma=1.0, lr=0.0025, ema_kimg=20.0),
    "paper512": dict(batch=64, gamma=0.5, lr=0.0025, ema_kimg=20.0),
    "paper1024": dict(batch=32, gamma=2.0, lr=0.002, ema_kimg=10.0),
}
G_REG_INTERVAL, D_REG_INTERVAL = 4, 16


class TrainingError(StyleGANTLError):
    """Training cannot start (bad options, data or network)."""


class TrainingDiverged(TrainingError):
    """A loss or a weight became NaN/Inf; the run stopped, earlier snapshots are intact."""


@dataclasses.dataclass
class Options:
    """Every training option (see :func:`run_training` for the meaning)."""

    data: str
    outdir: str
    resume: str = None
    kimg: float = 100.0
    batch: int = None
    gamma: float = None
    mirror: bool = False
    aug: str = "noaug"
    freezed: int = 0
    snap: float = 10.0
    seed: int = 0
    resolution: int = None
    family: str = "stylegan2"
    config: str = None
    lr: float = None
    ema_kimg: float = None
    ema_rampup: float = None
    letterbox: bool = False
    fp16: bool = False
    cpu_devices: int = 0
    G_kwargs: dict = None
    D_kwargs: dict = None
    target: float = 0.6
    tune_kimg: float = None
    pl_weight: float = 2.0
    style_mixing_prob: float = 0.9
    randomize_noise: bool = True
    min_images: int = 4
    max_steps: int = None


def default_batch(resolution: int, replicas: int) -> int:
    """ADA's per-resolution minibatch: min(4096/res, 32) per replica, at most 64 in all."""
    return max(min(replicas * min(4096 // resolution, 32), 64), replicas)


def resolve_hyperparams(opts: Options, resolution: int, replicas: int) -> dict:
    """batch, gamma, lr, ema_kimg: explicit options > ``config`` preset > per-resolution defaults."""
    if opts.config and opts.config not in CONFIGS:
        raise TrainingError(f"unknown --config {opts.config!r} (known: {', '.join(CONFIGS)})")
    preset = CONFIGS.get(opts.config, dict(batch=default_batch(resolution, replicas), gamma=10.0,
                                           lr=0.002, ema_kimg=10.0))
    hp = {k: getattr(opts, k) if getattr(opts, k) is not None else v for k, v in preset.items()}
    if hp["batch"] % replicas:
        raise TrainingError(f"--batch={hp['batch']} does not split over {replicas} replicas")
    return hp


def frozen_layer_names(D, count: int) -> set:
    """Variable names of D's first ``count`` layers counted from the highest resolution (Freeze-D).

    Layers are taken in NVIDIA creation order (FromRGB, then Conv0, Conv1_down, Skip of each block
    from the top, ..., 4x4/Conv, 4x4/Dense0). The last layer (``Output``; v1: ``4x4/Dense1``) is
    never frozen, nor are v1's lower-resolution ``FromRGB_lodN`` (unused at full resolution).
    """
    layers = []
    for name in D.trainables:
        layer = name.rsplit("/", 1)[0]
        if layer not in layers:
            layers.append(layer)
    layers = [l for l in layers[:-1] if not re.fullmatch(r"FromRGB_lod[1-9]\d*", l)]
    if count > len(layers):
        raise TrainingError(f"--freezed={count}: the discriminator has only {len(layers)} freezable layers")
    frozen = set(layers[:count])
    return {name for name in D.trainables if name.rsplit("/", 1)[0] in frozen}


def _ema_beta(batch, ema_kimg, nimg, rampup):
    ema_nimg = ema_kimg * 1000
    if rampup:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


class Trainer:
    """The networks, optimizers and compiled training phases of one run.

    Build inside ``strategy.scope()``. Images are NCHW float32 in [-1, 1]; every phase takes the
    per-replica (images, labels) batch of the distributed dataset, the step number and the ADA p.
    """

    def __init__(self, G, D, Gs, strategy, hp, opts: Options, family: str):
        import tensorflow as tf

        from .distribute import Adam
        from .loss import lazy_adam_params

        self.tf, self.G, self.D, self.Gs, self.strategy, self.hp, self.opts = tf, G, D, Gs, strategy, hp, opts
        self.lazy = family != "stylegan"  # v1 adds R1 to every D step and has no path-length reg
        self.use_pl = self.lazy and opts.pl_weight > 0
        self.batch = hp["batch"]
        self.latent_size = int(G.input_shape[1])
        frozen = frozen_layer_names(D, opts.freezed) if opts.freezed else set()
        d_vars = collections.OrderedDict((k, v) for k, v in D.trainables.items() if k not in frozen)
        g_vars = collections.OrderedDict(G.trainables)
        g_args = lazy_adam_params(hp["lr"], 0.0, 0.99, G_REG_INTERVAL if self.use_pl else None)
        d_args = lazy_adam_params(hp["lr"], 0.0, 0.99, D_REG_INTERVAL if self.lazy else None)
        self.G_opt = Adam(g_vars, *g_args, loss_scaling=opts.fp16, name="G_opt")
        self.D_opt = Adam(d_vars, *d_args, loss_scaling=opts.fp16, name="D_opt")
        self.pl_mean = tf.Variable(0.0, trainable=False, name="pl_mean")
        self.g_kwargs = dict(is_training=True, style_mixing_prob=opts.style_mixing_prob,
                             randomize_noise=opts.randomize_noise, dlatent_avg_beta=None, return_dlatents=True)
        # autograph=False: the phases and networks use Python control flow on static values only,
        # and tracing without autograph's conversion is several times faster.
        self.d_main, self.d_reg, self.g_main, self.g_reg, self.ema = (
            tf.function(f, autograph=False) for f in (self._d_main, self._d_reg, self._g_main, self._g_reg, self._ema))
        logging.info("optimising %d G and %d D variables (%d D variables frozen)", len(g_vars), len(d_vars), len(frozen))

    # ---- helpers (replica context) -------------------------------------------------------------
    def _replica(self):
        ctx = self.tf.distribute.get_replica_context()
        return ctx, ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync

    def _seed(self, step, salt):
        return self.tf.stack([self.tf.cast(step, self.tf.int64), self.tf.constant(self.opts.seed * 1000 + salt, self.tf.int64)])

    def _latents(self, step, salt, global_n):
        """This replica's slice of the global batch of latents (same on any number of replicas)."""
        _, rid, nrep = self._replica()
        per = global_n // nrep
        z = self.tf.random.stateless_normal([global_n, self.latent_size], self._seed(step, salt))
        return z[rid * per:(rid + 1) * per]

    def _augment_fn(self, step, salt, p):
        if self.opts.aug != "ada":
            return lambda images: images
        from .augment import augment

        _, rid, _ = self._replica()
        seed = self.tf.random.experimental.stateless_fold_in(self._seed(step, salt), rid)
        return lambda images: augment(images, p, seed)

    def _labels(self, labels):
        return labels if labels.shape[-1] else None

    def _generate(self, z, labels):
        images, dlatents = self.G.get_output_for(z, self._labels(labels), **self.g_kwargs)
        ctx, _, _ = self._replica()
        w_batch = self.tf.reduce_mean(self.tf.stop_gradient(dlatents[:, 0]), axis=0)
        w_avg = ctx.all_reduce(self.tf.distribute.ReduceOp.MEAN, w_batch)
        return images, w_avg

    def _grads(self, tape, loss, opt):
        tf = self.tf
        grads = tape.gradient(loss, opt.variables_)
        return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, opt.variables_)]

    def _reduce(self, per_replica):
        return {k: self.strategy.reduce(self.tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    def _first(self, value):
        return self.strategy.experimental_local_results(value)[0]

    def _update_w_avg(self, w_avg):
        """dlatent_avg <- lerp(batch mean of w, dlatent_avg, 0.995), done here (cross-replica)."""
        var = self.G.vars["dlatent_avg"]
        beta = float(self.G.static_kwargs.get("dlatent_avg_beta", 0.995) or 0.995)
        var.assign(self._first(w_avg) + (var - self._first(w_avg)) * beta)

    # ---- phases ----------------------------------------------------------------------------------
    def _d_main(self, reals, labels, step, p):
        from .loss import d_logistic, r1_penalty

        tf, B = self.tf, self.batch

        def replica(reals, labels):
            fakes, w_avg = self._generate(self._latents(step, 0, B), labels)
            aug = self._augment_fn(step, 0, p)
            lab = self._labels(labels)
            with tf.GradientTape() as tape:
                fake_scores = self.D.get_output_for(aug(fakes), lab)
                if self.lazy:
                    real_scores, r1 = self.D.get_output_for(aug(reals), lab), tf.zeros([tf.shape(reals)[0]])
                else:
                    r1, real_scores = r1_penalty(self.D, reals, lab, self.hp["gamma"], aug)
                d_loss = d_logistic(real_scores, fake_scores)
                loss = tf.reduce_sum(d_loss + r1) / B
                scaled = loss * self.D_opt.loss_scale
            stats = dict(d_loss=tf.reduce_sum(d_loss) / B, real_sign=tf.reduce_sum(tf.sign(real_scores)),
                         real_count=tf.cast(tf.shape(real_scores)[0], tf.float32))
            if not self.lazy:
                stats["r1"] = tf.reduce_sum(r1) / B
            return self._grads(tape, scaled, self.D_opt), stats, w_avg

        grads, stats, w_avg = self.strategy.run(replica, args=(reals, labels))
        self.D_opt.apply(grads)
        self._update_w_avg(w_avg)
        return self._reduce(stats)

    def _d_reg(self, reals, labels, step, p):
        from .loss import r1_penalty

        tf, B = self.tf, self.batch

        def replica(reals, labels):
            aug = self._augment_fn(step, 1, p)
            with tf.GradientTape() as tape:
                r1, _ = r1_penalty(self.D, reals, self._labels(labels), self.hp["gamma"], aug)
                loss = tf.reduce_sum(r1) * D_REG_INTERVAL / B
                scaled = loss * self.D_opt.loss_scale
            return self._grads(tape, scaled, self.D_opt), dict(r1=tf.reduce_sum(r1) / B)

        grads, stats = self.strategy.run(replica, args=(reals, labels))
        self.D_opt.apply(grads)
        return self._reduce(stats)

    def _g_main(self, labels, step, p):
        from .loss import g_nonsaturating

        tf, B = self.tf, self.batch

        def replica(labels):
            aug = self._augment_fn(step, 2, p)
            with tf.GradientTape() as tape:
                fakes, w_avg = self._generate(self._latents(step, 2, B), labels)
                g_loss = g_nonsaturating(self.D.get_output_for(aug(fakes), self._labels(labels)))
                loss = tf.reduce_sum(g_loss) / B
                scaled = loss * self.G_opt.loss_scale
            return self._grads(tape, scaled, self.G_opt), dict(g_loss=loss), w_avg

        grads, stats, w_avg = self.strategy.run(replica, args=(labels,))
        self.G_opt.apply(grads)
        self._update_w_avg(w_avg)
        return self._reduce(stats)

    def _g_reg(self, labels, step):
        from .loss import path_length_penalty, path_lengths

        tf, pl_batch = self.tf, self.batch // 2
        kwargs = {k: v for k, v in self.g_kwargs.items() if k != "return_dlatents"}

        def replica(labels):
            ctx, rid, nrep = self._replica()
            z = self._latents(step, 3, pl_batch)
            lab = labels[:pl_batch // nrep]
            with tf.GradientTape() as tape:
                lengths = path_lengths(self.G, z, self._labels(lab), self._seed(step, 4), (rid, nrep), **kwargs)
                batch_mean = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tf.reduce_mean(tf.stop_gradient(lengths)))
                penalty, new_mean = path_length_penalty(lengths, self.pl_mean, batch_mean, weight=self.opts.pl_weight)
                loss = tf.reduce_sum(penalty) * G_REG_INTERVAL / pl_batch
                scaled = loss * self.G_opt.loss_scale
            stats = dict(pl_penalty=tf.reduce_sum(penalty) / pl_batch, pl_length=tf.reduce_sum(lengths) / pl_batch)
            return self._grads(tape, scaled, self.G_opt), stats, new_mean

        grads, stats, new_mean = self.strategy.run(replica, args=(labels,))
        self.G_opt.apply(grads)
        self.pl_mean.assign(self._first(new_mean))
        return self._reduce(stats)

    def _ema(self, beta):
        """Gs <- G + (Gs - G) * beta for G's trainables; every other variable is copied."""
        for name, gs_var in self.Gs.vars.items():
            b = beta if name in self.G.trainables else 0.0
            self.strategy.extended.update(gs_var, lambda s, g, b: s.assign(g + (s - g) * b),
                                          args=(self.G.vars[name], b), group=True)

    def minibatch(self, reals, labels, step, p, ema_beta):
        """One training minibatch: D step, R1 step (every 16), G step, path-length step (every 4),
        G EMA. ``step``: minibatch counter (int); ``p``: ADA probability. Returns float stats."""
        tf = self.tf
        step_t, p_t = tf.constant(step, tf.int64), tf.constant(p, tf.float32)
        stats = dict(self.d_main(reals, labels, step_t, p_t))
        if self.lazy and step % D_REG_INTERVAL == 0:
            stats.update(self.d_reg(reals, labels, step_t, p_t))
        stats.update(self.g_main(labels, step_t, p_t))
        if self.use_pl and step % G_REG_INTERVAL == 0:
            stats.update(self.g_reg(labels, step_t))
        self.ema(tf.constant(ema_beta, tf.float32))
        return {k: float(v) for k, v in stats.items()}

    # ---- state -----------------------------------------------------------------------------------
    def state_dict(self):
        arrays = dict(self.G_opt.state_dict("G_opt"), **self.D_opt.state_dict("D_opt"))
        arrays["pl_mean"] = self.pl_mean.numpy()
        return arrays

    def load_state_dict(self, arrays):
        self.G_opt.load_state_dict(arrays, "G_opt")
        self.D_opt.load_state_dict(arrays, "D_opt")
        self.pl_mean.assign(arrays["pl_mean"])


# --------------------------------------------------------------------------------------------------
# Run bookkeeping.


class _Progress:
    """One-line progress display (rewritten in place on a terminal, logged every ``log_every`` s)."""

    def __init__(self, total_nimg, start_nimg, log_every=30.0):
        self.total, self.start_nimg, self.start = total_nimg, start_nimg, time.time()
        self.log_every, self.last_log = log_every, 0.0
        self.tty = sys.stderr.isatty()
        self.warm = None  # (time, nimg) of the first display: later rates exclude graph tracing

    def sec_per_kimg(self, nimg):
        start, start_nimg = self.warm if self.warm and nimg > self.warm[1] else (self.start, self.start_nimg)
        return (time.time() - start) / max(nimg - start_nimg, 1) * 1000

    def show(self, nimg, stats, p, final=False):
        spk = self.sec_per_kimg(nimg)
        if self.warm is None:
            self.warm, eta_text = (time.time(), nimg), "ETA -"  # first tick: mostly tracing
        else:
            eta = max(self.total - nimg, 0) / 1000 * spk
            eta_text = f"ETA {int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}"
        line = (f"kimg {nimg / 1000:.3f}/{self.total / 1000:g}  sec/kimg {spk:.1f}  "
                f"G {stats.get('g_loss', float('nan')):.3f}  D {stats.get('d_loss', float('nan')):.3f}  "
                f"R1 {stats.get('r1', 0.0):.4f}  PL {stats.get('pl_penalty', 0.0):.4f}  p {p:.3f}  "
                + eta_text)
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
            sys.stderr.flush()
        now = time.time()
        if final or now - self.last_log >= self.log_every:
            self.last_log = now
            logging.info(line)


def _is_chief():
    import json

    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return task.get("type", "worker") in ("worker", "chief") and int(task.get("index", 0)) == 0


def _build_networks(opts: Options, resume_pkl: str, resolution: int):
    """(G, D, Gs, family): from a pickle (architecture kept) or from scratch (``create_networks``)."""
    from .network import create_networks, load_network_pkl

    if resume_pkl:
        G, D, Gs = load_network_pkl(resume_pkl)
        if G is None or D is None or Gs is None:
            raise TrainingError(f"{resume_pkl}: needs G, D and Gs to train (a pickle of a single network cannot be fine-tuned)")
        return G, D, Gs, G.family
    G, D, Gs = create_networks(opts.family, resolution, seed=opts.seed, G_kwargs=dict(opts.G_kwargs or {}),
                               D_kwargs=dict(opts.D_kwargs or {}))
    return G, D, Gs, opts.family


def _grid_inputs(Gs, resolution, seed):
    cols, rows = snap_files.grid_shape(64, resolution)
    latent_size = int(Gs.input_shape[1])
    z = np.random.RandomState(seed + 123).standard_normal([cols * rows, latent_size]).astype(np.float32)
    return z, cols


def _write_fakes(path, Gs, z, labels, cols, summary_step=None):
    from .network import convert_images_to_uint8

    images = Gs.run(z, labels, truncation_psi=1.0, randomize_noise=False, minibatch_size=8)
    grid = snap_files.write_grid(path, convert_images_to_uint8(images), cols)
    if summary_step is not None:
        snap_files.summary_image("fakes", grid, summary_step)


def _all_finite(networks):
    import tensorflow as tf

    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for net in networks for v in net.vars.values())


def run_training(data, outdir, resume=None, kimg=100.0, batch=None, gamma=None, mirror=False, aug="noaug",
                 freezed=0, snap=10.0, seed=0, resolution=None, family="stylegan2", config=None, **kwargs) -> dict:
    """Train G/D on ``data`` and write snapshots to ``outdir``; resumable.

    Args:
        data: image folder (recursive) or NVIDIA TFRecords directory.
        outdir: run directory. If it already holds a snapshot with its training state, training
            continues from the newest one (same kimg counter, optimizer and ADA state).
        resume: network pickle to start from (path, URL or official name such as
            'stylegan2-church-config-f'); its architecture is kept. None: from scratch with
            ``family``/``resolution``/``G_kwargs``/``D_kwargs``. A snapshot with its training state
            beside it continues that run's counters.
        kimg: total thousands of real images to show D (counting from the start of the run).
        batch: global minibatch (default: ``config`` or min(4096/res, 32) per replica, <= 64).
        gamma: R1 weight (default: ``config`` or 10; NVIDIA used 100 for church/horse).
        mirror: random x-flips of the reals.
        aug: 'noaug' or 'ada'.
        freezed: Freeze-D, number of D layers (from the highest resolution) left untrained.
        snap: snapshot interval in kimg.
        seed: seed of everything random (data order, latents, augmentation, init).
        resolution: training resolution for from-scratch runs (default: from the data).
        family: 'stylegan', 'stylegan2' or 'stylegan2-ada' (from-scratch runs).
        config: preset of batch/gamma/lr/ema ('stylegan2', 'paper256', 'paper512', 'paper1024').
        kwargs: further :class:`Options` fields: lr, ema_kimg, ema_rampup, letterbox, fp16,
            cpu_devices, G_kwargs, D_kwargs, target, tune_kimg, pl_weight, style_mixing_prob,
            randomize_noise, min_images, max_steps.
    Returns:
        dict with 'snapshot' (newest snapshot pkl), 'kimg' (image counter / 1000), 'outdir',
        'log_dir' (TensorBoard), 'state' (training-state file) and 'stats' (the latest losses:
        g_loss, d_loss, r1, pl_penalty, pl_length, ...).
    """
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(Options)}
    if unknown:
        raise TypeError(f"run_training: unknown option(s) {sorted(unknown)}")
    opts = Options(data=data, outdir=outdir, resume=resume, kimg=kimg, batch=batch, gamma=gamma, mirror=mirror,
                   aug=aug, freezed=freezed, snap=snap, seed=seed, resolution=resolution, family=family,
                   config=config, **kwargs)
    if not os.path.isdir(opts.data):
        raise DatasetError(f"{opts.data}: dataset directory not found")
    if opts.aug not in ("noaug", "ada"):
        raise TrainingError(f"--aug must be 'noaug' or 'ada', not {opts.aug!r}")
    from .distribute import make_strategy

    strategy = make_strategy(opts.cpu_devices)  # first: logical devices must precede TF's start-up
    import tensorflow as tf

    if opts.fp16:
        if not tf.config.list_physical_devices("GPU"):
            raise TrainingError("--fp16 needs a GPU (mixed precision is slower than float32 on CPU)")
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")
    return _Run(opts, strategy).train()


class _Run:
    """One invocation of :func:`run_training`: sets up, loops, snapshots."""

    def __init__(self, opts: Options, strategy):
        self.opts, self.strategy = opts, strategy
        try:
            os.makedirs(opts.outdir, exist_ok=True)
        except OSError as e:
            raise TrainingError(f"{opts.outdir}: cannot create the output folder ({e.strerror})") from None
        self.log_dir = os.path.join(opts.outdir, "logs")
        self.chief = _is_chief()

    def _starting_point(self):
        """(pkl to load, training state or None, fresh-start tune_kimg default)."""
        from .pretrained import resolve_network_pkl

        found = snap_files.latest_state(self.opts.outdir)
        if found:
            logging.info("continuing %s from %s (kimg %.3f)", self.opts.outdir, found[1], found[2]["nimg"] / 1000)
            return found[1], found, 100.0
        if not self.opts.resume:
            return None, None, 500.0
        path = resolve_network_pkl(self.opts.resume)
        return path, snap_files.state_for_pickle(path), 100.0

    def train(self) -> dict:
        import tensorflow as tf

        from .augment import AdaController
        from .dataset import load_dataset, make_tf_dataset, probe_resolution

        opts, strategy = self.opts, self.strategy
        tf.random.set_seed(opts.seed)
        resume_pkl, state, tune_default = self._starting_point()
        resolution = None if resume_pkl else opts.resolution or probe_resolution(opts.data)
        with strategy.scope():
            G, D, Gs, family = _build_networks(opts, resume_pkl, resolution)
        _, num_channels, resolution, _ = G.output_shape
        label_size = int(G.input_shapes[1][1])
        hp = resolve_hyperparams(opts, resolution, strategy.num_replicas_in_sync)
        array = load_dataset(opts.data, resolution, opts.letterbox, num_channels, opts.min_images,
                             cache_dir=os.path.join(opts.outdir, "cache"))
        if label_size and array.label_size != label_size:
            raise TrainingError(f"{opts.data}: the network needs {label_size} labels per image, the dataset has {array.label_size}")
        if not label_size:
            array.labels = np.zeros((len(array), 0), np.float32)
        with strategy.scope():
            trainer = Trainer(G, D, Gs, strategy, hp, opts, family)
        ada = AdaController(opts.target, 4, opts.tune_kimg or tune_default)
        nimg, step = 0, 0
        if state:
            arrays, meta = snap_files.load_state(state[0])
            trainer.load_state_dict(arrays)
            ada.load_state_dict(meta["ada"])
            nimg, step = int(meta["nimg"]), int(meta["step"])
            if meta.get("batch") != hp["batch"]:
                logging.warning("batch changed from %s to %d on resume", meta.get("batch"), hp["batch"])
        B = hp["batch"]
        logging.info("%s %dpx, batch %d over %d replica(s), gamma %g, lr %g, ema %g kimg, aug %s, freezed %d",
                     family, resolution, B, strategy.num_replicas_in_sync, hp["gamma"], hp["lr"], hp["ema_kimg"],
                     opts.aug, opts.freezed)

        def dataset_fn(ctx):
            local = strategy.num_replicas_in_sync // ctx.num_input_pipelines
            return make_tf_dataset(array, B, opts.seed, opts.mirror, step, strategy.num_replicas_in_sync,
                                   ctx.input_pipeline_id * local, local)

        batches = iter(strategy.distribute_datasets_from_function(dataset_fn))
        writer = tf.summary.create_file_writer(self.log_dir) if self.chief else tf.summary.create_noop_writer()
        grid_z, grid_cols = _grid_inputs(Gs, resolution, opts.seed)
        grid_labels = array.labels[np.arange(len(grid_z)) % len(array)] if label_size else None
        last_snapshot = state[1] if state else None
        self.state_path = state[0] if state else None
        if self.chief and not state:
            with writer.as_default():
                _write_fakes(os.path.join(opts.outdir, "fakes_init.png"), Gs, grid_z, grid_labels, grid_cols, 0)
        total_nimg = int(round(opts.kimg * 1000))
        progress = _Progress(total_nimg, nimg)
        stats = {}
        snap_nimg = max(int(opts.snap * 1000), 1)
        steps_this_run = 0
        while nimg < total_nimg and (opts.max_steps is None or steps_this_run < opts.max_steps):
            reals, labels = next(batches)
            stats.update(trainer.minibatch(reals, labels, step, ada.p, _ema_beta(B, hp["ema_kimg"], nimg, opts.ema_rampup)))
            nimg, step, steps_this_run = nimg + B, step + 1, steps_this_run + 1
            bad = {k: v for k, v in stats.items() if k in ("g_loss", "d_loss", "r1", "pl_penalty") and not math.isfinite(v)}
            if bad:
                raise TrainingDiverged(f"{opts.outdir}: {', '.join(f'{k}={v}' for k, v in bad.items())} at kimg "
                                       f"{nimg / 1000:.3f} (step {step}); training stopped, last good snapshot: "
                                       f"{last_snapshot or 'none written yet'}")
            if opts.aug == "ada":
                ada.accumulate(stats["real_sign"], stats["real_count"])
                ada.step(B)
            progress.show(nimg, stats, ada.p)
            with writer.as_default():
                self._scalars(stats, ada, progress, nimg)
            done = nimg >= total_nimg or (opts.max_steps is not None and steps_this_run >= opts.max_steps)
            if done or nimg // snap_nimg > (nimg - B) // snap_nimg:
                last_snapshot = self._snapshot(G, D, Gs, trainer, ada, nimg, step, B, writer,
                                               (grid_z, grid_labels, grid_cols))
        if stats:
            progress.show(nimg, stats, ada.p, final=True)
        writer.flush()
        if last_snapshot is None:  # nothing left to train: the run was already complete
            logging.info("%s already reached kimg %.3f", opts.outdir, nimg / 1000)
        return dict(snapshot=last_snapshot, kimg=nimg / 1000, outdir=opts.outdir, log_dir=self.log_dir,
                    state=self.state_path, stats=stats)

    def _scalars(self, stats, ada, progress, nimg):
        """TensorBoard scalars; the step axis counts real images shown."""
        for key, tag in (("g_loss", "Loss/G"), ("d_loss", "Loss/D"), ("r1", "Loss/R1"),
                         ("pl_penalty", "Loss/path_length_penalty"), ("pl_length", "Loss/path_length")):
            if key in stats:
                snap_files.summary_scalar(tag, stats[key], nimg)
        spk = progress.sec_per_kimg(nimg)
        snap_files.summary_scalar("ADA/p", ada.p, nimg)
        snap_files.summary_scalar("ADA/rt", ada.rt, nimg)
        snap_files.summary_scalar("Timing/sec_per_kimg", spk, nimg)
        snap_files.summary_scalar("Timing/kimg_per_sec", 1.0 / max(spk, 1e-9), nimg)

    def _snapshot(self, G, D, Gs, trainer, ada, nimg, step, batch, writer, grid):
        """Write pkl, training state and fakes grid (chief only); returns the pkl path."""
        from .network import save_network_pkl

        outdir = self.opts.outdir
        pkl = os.path.join(outdir, snap_files.snapshot_name(nimg))
        if not _all_finite((G, D, Gs)):
            raise TrainingDiverged(f"{outdir}: non-finite weights at kimg {nimg / 1000:.3f}; not writing {pkl}; "
                                f"training stopped")
        arrays = trainer.state_dict()  # every worker takes part (reads of mirrored variables)
        if not self.chief:
            return pkl
        save_network_pkl(pkl, G, D, Gs)
        state_path = os.path.join(outdir, snap_files.STATE_FMT.format(nimg // 1000))
        meta = dict(snapshot=os.path.basename(pkl), nimg=nimg, step=step, batch=batch, seed=self.opts.seed,
                    ada=ada.state_dict(), data=self.opts.data)
        snap_files.save_state(state_path, arrays, meta)
        snap_files.remove_older_states(outdir, keep=state_path)
        self.state_path = state_path
        with writer.as_default():
            _write_fakes(os.path.join(outdir, snap_files.GRID_FMT.format(nimg // 1000)), Gs, *grid, summary_step=nimg)
        logging.info("snapshot %s", pkl)
        return pkl


# --------------------------------------------------------------------------------------------------
# Command line.


def _define_flags():
    from absl import flags

    f = flags
    f.DEFINE_string("data", None, "image folder (recursive) or NVIDIA TFRecords directory", required=True)
    f.DEFINE_string("outdir", None, "run directory (snapshots, state, logs); rerun to continue", required=True)
    f.DEFINE_string("resume", None, "pickle to start from: path, URL or official name; default from scratch")
    f.DEFINE_float("kimg", 100.0, "total thousands of real images to train on")
    f.DEFINE_integer("batch", None, "global minibatch (default per resolution: min(4096/res, 32) per device)")
    f.DEFINE_float("gamma", None, "R1 weight (default 10; NVIDIA used 100 for church/horse)")
    f.DEFINE_bool("mirror", False, "random x-flips of the real images")
    f.DEFINE_enum("aug", "noaug", ["noaug", "ada"], "adaptive discriminator augmentation")
    f.DEFINE_integer("freezed", 0, "Freeze-D: D layers (from the top) left untrained")
    f.DEFINE_float("snap", 10.0, "snapshot interval in kimg")
    f.DEFINE_integer("seed", 0, "random seed")
    f.DEFINE_integer("resolution", None, "from scratch: resolution (default from the data)")
    f.DEFINE_enum("family", "stylegan2", ["stylegan", "stylegan2", "stylegan2-ada"], "from scratch: architecture")
    f.DEFINE_enum("config", None, list(CONFIGS), "preset of batch/gamma/lr/ema_kimg")
    f.DEFINE_integer("fmap_base", None, "from scratch: fmap_base of G and D")
    f.DEFINE_integer("fmap_max", None, "from scratch: fmap_max of G and D")
    f.DEFINE_integer("latent_size", None, "from scratch: size of z, w and the mapping layers")
    f.DEFINE_integer("mapping_layers", None, "from scratch: layers of the mapping network")
    f.DEFINE_float("lr", None, "Adam learning rate (default 0.002)")
    f.DEFINE_float("ema_kimg", None, "half-life of the G EMA in kimg (default 10)")
    f.DEFINE_float("target", 0.6, "ADA target of r_t")
    f.DEFINE_bool("letterbox", False, "letterbox non-square photos on black instead of centre-cropping")
    f.DEFINE_bool("fp16", False, "mixed precision with loss scaling (GPU only)")
    f.DEFINE_integer("cpu_devices", 0, "split the CPU into N logical devices (MirroredStrategy test)")


def _flag_options(FLAGS) -> dict:
    G_kwargs = {k: getattr(FLAGS, k) for k in ("fmap_base", "fmap_max", "mapping_layers") if getattr(FLAGS, k)}
    if FLAGS.latent_size:
        G_kwargs.update(latent_size=FLAGS.latent_size, dlatent_size=FLAGS.latent_size, mapping_fmaps=FLAGS.latent_size)
    D_kwargs = {k: getattr(FLAGS, k) for k in ("fmap_base", "fmap_max") if getattr(FLAGS, k)}
    return dict(data=FLAGS.data, outdir=FLAGS.outdir, resume=FLAGS.resume, kimg=FLAGS.kimg, batch=FLAGS.batch,
                gamma=FLAGS.gamma, mirror=FLAGS.mirror, aug=FLAGS.aug, freezed=FLAGS.freezed, snap=FLAGS.snap,
                seed=FLAGS.seed, resolution=FLAGS.resolution, family=FLAGS.family, config=FLAGS.config,
                lr=FLAGS.lr, ema_kimg=FLAGS.ema_kimg, target=FLAGS.target, letterbox=FLAGS.letterbox,
                fp16=FLAGS.fp16, cpu_devices=FLAGS.cpu_devices, G_kwargs=G_kwargs, D_kwargs=D_kwargs)


def main(argv):
    from absl import flags

    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    try:
        result = run_training(**_flag_options(flags.FLAGS))
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except StyleGANTLError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"snapshot: {result['snapshot']}  kimg: {result['kimg']:.3f}  logs: {result['log_dir']}")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
