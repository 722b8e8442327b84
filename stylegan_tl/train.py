"""Fine-tune (or train from scratch) StyleGAN / StyleGAN2 / StyleGAN2-ADA on an image folder.

By default a run follows NVIDIA's StyleGAN2-ADA (TF) ``train.py --cfg=auto`` recipe for the
network's resolution and the replica count (StyleGAN v1 pickles: NVIDIA's StyleGAN ``train.py``
schedule); explicit options win. :mod:`stylegan_tl.recipe` holds the options and the recipes; the
resolved values are written to ``<outdir>/training_options.json``.

NVIDIA's training: non-saturating logistic G loss, logistic D loss, R1 on reals (gamma), the
path-length regulariser for StyleGAN2/ADA, lazy regularisation (G every 4, D every 16 minibatches,
Adam lr*c, beta^c with c = I/(I+1); v1 adds R1 to every D step, unadjusted), Adam(beta1 0,
beta2 0.99, eps 1e-8; a step with non-finite gradients is skipped), Gs = EMA of G with a
half-life of ``ema_kimg`` (non-trainables copied), style mixing through G's ``is_training=True``.
Limited-data aids: ADA (``aug='ada'``) and Freeze-D (``freezed=N``). Mixed precision: the
``num_fp16_res`` highest resolutions of G and D in float16 with ``conv_clamp`` and dynamic loss
scaling. Runs under ``tf.distribute`` (:mod:`stylegan_tl.distribute`), global batch split over the
replicas.

Command line::

    python -m stylegan_tl.train --data=photos/ --resume=stylegan2-church-config-f --outdir=runs/church \\
        --kimg=200 --gamma=100 --mirror --freezed=4 --snap=10

The run directory receives ``training_options.json``, ``network-snapshot-<kimg>.pkl`` (NVIDIA
format) every ``snap`` ticks (a tick is ``tick_kimg`` = 4 kimg, checked every 4 minibatches, as
ADA), ``fakes<kimg>.png``, a training-state file beside the newest snapshot and TensorBoard logs
(``logs/``). Running the same command again continues from the newest snapshot (same kimg
counter, tick, optimizer and ADA state).
"""

import collections
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
from absl import logging
from superres_tf import conventions, files
from superres_tf.conventions import StatusLine

from . import recipe as recipes
from . import snapshot as snap_files
from .errors import DatasetError, StyleGANTLError
from .recipe import MINIBATCH_REPEATS, Options


class TrainingError(StyleGANTLError):
    """Training cannot start (bad options, data or network)."""


class TrainingDiverged(TrainingError):
    """A loss or a weight became NaN/Inf; the run stopped, earlier snapshots are intact."""

    exit_code = 1  # a run that failed, not bad input


def _ema_beta(batch, ema_kimg, nimg, rampup):
    ema_nimg = ema_kimg * 1000
    if rampup:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


class Trainer:
    """The networks, optimizers and compiled training phases of one run.

    Build inside ``strategy.scope()``, after :func:`apply_recipe`. Images are NCHW float32 in
    [-1, 1]; every phase takes the per-replica (images, labels) batch of the distributed dataset,
    the step number and the ADA p.

    Args:
        G, D, Gs: Networks. strategy: the tf.distribute strategy.
        recipe: the run's :class:`stylegan_tl.recipe.Recipe` (batch, gamma, Adam settings, ...).
        seed: seed of the latents, noise images and augmentations.
        randomize_noise: G's noise inputs (False: the stored ones, for reproducible tests).
    """

    def __init__(self, G, D, Gs, strategy, recipe, seed=0, randomize_noise=True):
        import tensorflow as tf

        from .distribute import Adam

        self.tf, self.G, self.D, self.Gs, self.strategy, self.recipe = tf, G, D, Gs, strategy, recipe
        self.seed = seed
        self.lazy = recipe.lazy_regularization  # v1 adds R1 to every D step and has no path-length reg
        self.use_pl = self.lazy and recipe.pl_weight > 0
        self.batch = recipe.batch
        self.latent_size = int(G.input_shape[1])
        frozen = recipes.frozen_variables(D, recipe.frozen_layers)
        d_vars = collections.OrderedDict((k, v) for k, v in D.trainables.items() if k not in frozen)
        g_vars = collections.OrderedDict(G.trainables)
        scaling = recipe.precision["loss_scaling"]
        self.G_opt = Adam(g_vars, **recipe.G_opt, epsilon=recipe.epsilon, loss_scaling=scaling, name="G_opt")
        self.D_opt = Adam(d_vars, **recipe.D_opt, epsilon=recipe.epsilon, loss_scaling=scaling, name="D_opt")
        self.pl_mean = tf.Variable(0.0, trainable=False, name="pl_mean")
        self.g_kwargs = dict(is_training=True, style_mixing_prob=recipe.style_mixing_prob,
                             randomize_noise=randomize_noise, dlatent_avg_beta=None, return_dlatents=True)
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
        return self.tf.stack([self.tf.cast(step, self.tf.int64), self.tf.constant(self.seed * 1000 + salt, self.tf.int64)])

    def _latents(self, step, salt, global_n):
        """This replica's slice of the global batch of latents (same on any number of replicas)."""
        _, rid, nrep = self._replica()
        per = global_n // nrep
        z = self.tf.random.stateless_normal([global_n, self.latent_size], self._seed(step, salt))
        return z[rid * per:(rid + 1) * per]

    def _augment_fn(self, step, salt, p):
        """ADA of one set of images (each set of a phase has its own ``salt``: reals and fakes get
        independent draws), or the identity without ADA."""
        if self.recipe.aug != "ada":
            return lambda images: images
        from .augment import augment

        _, rid, _ = self._replica()
        seed = self.tf.random.experimental.stateless_fold_in(self._seed(step, salt), rid)
        return lambda images: augment(images, p, seed, self.recipe.augpipe)

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
            aug_fakes, aug_reals = self._augment_fn(step, 0, p), self._augment_fn(step, 5, p)
            lab = self._labels(labels)
            with tf.GradientTape() as tape:
                fake_scores = self.D.get_output_for(aug_fakes(fakes), lab)
                if self.lazy:
                    real_scores, r1 = self.D.get_output_for(aug_reals(reals), lab), tf.zeros([tf.shape(reals)[0]])
                else:
                    r1, real_scores = r1_penalty(self.D, reals, lab, self.recipe.gamma, aug_reals)
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
                r1, _ = r1_penalty(self.D, reals, self._labels(labels), self.recipe.gamma, aug)
                loss = tf.reduce_sum(r1) * self.recipe.D_reg_interval / B
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
                penalty, new_mean = path_length_penalty(lengths, self.pl_mean, batch_mean, weight=self.recipe.pl_weight)
                loss = tf.reduce_sum(penalty) * self.recipe.G_reg_interval / pl_batch
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
        if self.lazy and step % self.recipe.D_reg_interval == 0:
            stats.update(self.d_reg(reals, labels, step_t, p_t))
        stats.update(self.g_main(labels, step_t, p_t))
        if self.use_pl and step % self.recipe.G_reg_interval == 0:
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
    """The training status (kimg, sec/kimg, losses, ADA p, ETA): on the progress line
    (:class:`superres_tf.conventions.StatusLine`, a terminal only) and logged every ``log_every`` s."""

    def __init__(self, total_nimg, start_nimg, log_every=30.0):
        self.total, self.start_nimg, self.start = total_nimg, start_nimg, time.time()
        self.log_every, self.last_log = log_every, 0.0
        self.line = StatusLine(interval=0.0) if sys.stderr.isatty() else None  # log files get the log lines
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
        if self.line is not None:
            self.line.show(line, final)
        now = time.time()
        if final or now - self.last_log >= self.log_every:
            self.last_log = now
            logging.info(line)


def _is_chief():
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return task.get("type", "worker") in ("worker", "chief") and int(task.get("index", 0)) == 0


class _Ticks:
    """NVIDIA's ticks: every ``MINIBATCH_REPEATS`` minibatches a tick ends if ``tick_kimg`` have
    passed since the last one (ADA: the very first check ends tick 0); a snapshot is due at the end
    of every ``snap``-th tick, of the run's first tick and of the run."""

    def __init__(self, recipe, nimg, meta=None):
        self.recipe = recipe
        if meta and "tick" in meta:
            self.tick, self.start_nimg = int(meta["tick"]), int(meta["tick_start_nimg"])
        elif meta:  # a state written before ticks were saved: the tick its image count reaches
            self.tick, self.start_nimg = int(nimg // (recipe.tick_kimg * 1000)), nimg
        else:
            self.tick, self.start_nimg = recipe.first_tick - 1, nimg

    def snapshot_due(self, nimg, step, done) -> bool:
        """Call after every minibatch (``step``: minibatches so far); True when a snapshot is due."""
        if not done and step % MINIBATCH_REPEATS:
            return False
        first = self.tick < self.recipe.first_tick
        if not (done or first or nimg >= self.start_nimg + self.recipe.tick_kimg * 1000):
            return False
        self.tick, self.start_nimg = self.tick + 1, nimg
        return done or self.tick % self.recipe.snap == 0 or self.tick == self.recipe.first_tick

    def state_dict(self):
        return dict(tick=self.tick, tick_start_nimg=self.start_nimg)


def _check_lod(G, D, Gs, where, reset):
    """StyleGAN v1 pickles saved mid-growth (lod > 0) are refused, or set to lod 0 if ``reset``."""
    lods = {f"{net.name}/{name}": float(var.numpy()) for net in (G, D, Gs) for name, var in net.vars.items()
            if name.rsplit("/", 1)[-1] == "lod"}
    grown = {k: v for k, v in lods.items() if v != 0}
    if not grown:
        return
    if not reset:
        lod = max(grown.values())
        raise TrainingError(
            f"{where}: StyleGAN v1 network saved mid-growth (lod {lod:g}: it was training at "
            f"{int(G.output_shape[2]) >> int(math.floor(lod))} px of {G.output_shape[2]}); fine-tuning runs at "
            f"full resolution only: pass --reset_lod to train it at lod 0, or finish its growing with NVIDIA's code")
    logging.warning("%s: lod %s set to 0 (--reset_lod): training at full resolution", where, grown)
    for net in (G, D, Gs):
        for name, var in net.vars.items():
            if name.rsplit("/", 1)[-1] == "lod":
                var.assign(0.0)


def _unfrozen(D):
    """D with every layer trainable: an ADA D pickled with ``freeze_layers`` is rebuilt with 0 (the
    run's own --freezed decides what is frozen, as NVIDIA's training builds a new D)."""
    from .network import Network

    if not D.module.kwargs.get("freeze_layers"):
        return D
    state = D.to_state()
    state.static_kwargs["freeze_layers"] = 0
    return Network.from_state(state)


def _build_networks(opts: Options, start_pkl, resolution, replicas):
    """(G, D, Gs): from a pickle (architecture kept) or from scratch (the recipe's architecture)."""
    from .network import create_networks, load_network_pkl

    if start_pkl:
        G, D, Gs = load_network_pkl(start_pkl)
        if G is None or D is None or Gs is None:
            raise TrainingError(f"{start_pkl}: needs G, D and Gs to train (a pickle of a single network cannot be fine-tuned)")
        if G.family == "stylegan":
            _check_lod(G, D, Gs, start_pkl, opts.reset_lod)
        return G, _unfrozen(D), Gs
    G_kwargs, D_kwargs = recipes.scratch_kwargs(opts, opts.family, resolution, replicas)
    return create_networks(opts.family, resolution, seed=opts.seed, G_kwargs=G_kwargs, D_kwargs=D_kwargs)


def apply_recipe(G, D, recipe):
    """Give the networks the recipe's settings that live in them: D's minibatch-stddev group and
    Freeze-D count (also in D's pickled static kwargs, as NVIDIA's D records them) and the float16
    resolutions and conv clamp of G and D (compute only)."""
    k = D.module.kwargs
    if recipe.mbstd_group is not None and recipe.mbstd_group != k["mbstd_group_size"]:
        k["mbstd_group_size"] = recipe.mbstd_group
        if D.family == "stylegan2-ada" or (recipe.mbstd_group or 0) > 1:  # v2 reads a group <= 1 as "no layer"
            D.static_kwargs["mbstd_group_size"] = recipe.mbstd_group
    if "freeze_layers" in k and (recipe.freezed or "freeze_layers" in D.static_kwargs):
        D.static_kwargs["freeze_layers"] = recipe.freezed
    if recipe.precision["loss_scaling"]:
        G.components.synthesis.module.set_precision(**recipe.precision["G"])
        D.module.set_precision(**recipe.precision["D"])


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
        files.write_image("fakes", grid, summary_step)


def _all_finite(networks):
    import tensorflow as tf

    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for net in networks for v in net.vars.values())


def run_training(data=None, outdir=None, **options) -> dict:
    """Train G/D on ``data`` and write snapshots to ``outdir``; resumable.

    Args:
        data: image folder (recursive) or NVIDIA TFRecords directory.
        outdir: run directory. If it already holds a snapshot with its training state, training
            continues from the newest one (same kimg counter, tick, optimizer and ADA state).
        options: further :class:`stylegan_tl.recipe.Options` fields (each documented there), e.g.
            resume (pickle path, URL or official name; None: from scratch), config ('auto' =
            NVIDIA's ADA ``--cfg=auto``; 'stylegan2', 'paper256', 'paper512', 'paper1024';
            'stylegan' = StyleGAN v1's schedule), kimg, batch, gamma, lr, aug, freezed, snap
            (ticks), fp16, ... Unset options take the recipe's values.
    Returns:
        dict with 'snapshot' (newest snapshot pkl), 'kimg' (image counter / 1000), 'outdir',
        'log_dir' (TensorBoard), 'state' (training-state file), 'options' (training_options.json)
        and 'stats' (the latest losses: g_loss, d_loss, r1, pl_penalty, pl_length, ...); with
        ``dry_run=True`` nothing is trained or written and 'recipe' holds the resolved values.
    """
    names = {f.name for f in dataclasses.fields(Options)}
    unknown = set(options) - names
    if unknown:
        raise TypeError(f"run_training: unknown option(s) {sorted(unknown)}")
    opts = Options(data=data, outdir=outdir, **options)
    recipes.check_options(opts)
    if not opts.data or not os.path.isdir(opts.data):
        raise DatasetError(f"{opts.data}: dataset directory not found")
    from .distribute import make_strategy

    strategy = make_strategy(opts.cpu_devices)  # first: logical devices must precede TF's start-up
    return _Run(opts, strategy).train()


class _Run:
    """One invocation of :func:`run_training`: sets up, loops, snapshots."""

    def __init__(self, opts: Options, strategy):
        self.opts, self.strategy = opts, strategy
        if not opts.dry_run:
            try:
                os.makedirs(opts.outdir, exist_ok=True)
            except OSError as e:
                raise TrainingError(f"{opts.outdir}: cannot create the output folder ({e.strerror})") from None
        self.log_dir = os.path.join(opts.outdir, "logs")
        self.chief = _is_chief()
        self.options_path = None

    def _starting_point(self):
        """(pkl to load, training state or None, the run's original starting pickle or None)."""
        from .pretrained import resolve_network_pkl

        found = snap_files.latest_state(self.opts.outdir) if os.path.isdir(self.opts.outdir) else None
        if found:
            logging.info("continuing %s from %s (kimg %.3f)", self.opts.outdir, found[1], found[2]["nimg"] / 1000)
            return found[1], found, found[2].get("resume", self.opts.resume)
        if not self.opts.resume:
            return None, None, None
        path = resolve_network_pkl(self.opts.resume)
        state = snap_files.state_for_pickle(path)
        return path, state, state[2].get("resume", self.opts.resume) if state else self.opts.resume

    def _setup(self):
        """Networks and the resolved recipe (applied to the networks, written to the run folder)."""
        import tensorflow as tf

        from .dataset import probe_resolution

        opts, strategy = self.opts, self.strategy
        tf.random.set_seed(opts.seed)
        start_pkl, state, resume = self._starting_point()
        replicas = strategy.num_replicas_in_sync
        resolution = None if start_pkl else opts.resolution or probe_resolution(opts.data)
        with strategy.scope():
            G, D, Gs = _build_networks(opts, start_pkl, resolution, replicas)
        legacy = state is not None and "tick" not in state[2]
        if legacy:
            logging.info("%s: a training state from before recipes: ADA tune_kimg 100 and no EMA ramp-up "
                         "continue as they were", state[0])
        recipe = recipes.resolve(opts, G, D, replicas, resume, continuing=state is not None, legacy_state=legacy)
        apply_recipe(G, D, recipe)
        if self.chief and not opts.dry_run:
            self.options_path = recipes.write_options_file(opts.outdir, recipe)
        if recipe.precision["loss_scaling"] and not tf.config.list_physical_devices("GPU"):
            logging.warning("float16 layers on a CPU: slower than float32 here (see BENCHMARKS.md); "
                            "--nofp16 computes everything in float32")
        return G, D, Gs, recipe, state

    def train(self) -> dict:
        import tensorflow as tf

        from .augment import AdaController
        from .dataset import load_dataset, make_tf_dataset

        opts, strategy = self.opts, self.strategy
        G, D, Gs, recipe, state = self._setup()
        if opts.dry_run:
            print(recipe.to_json())
            return dict(snapshot=None, kimg=0.0, outdir=opts.outdir, log_dir=None, state=None, options=None,
                        stats={}, recipe=dataclasses.asdict(recipe))
        _, num_channels, resolution, _ = G.output_shape
        label_size = int(G.input_shapes[1][1])
        array = load_dataset(opts.data, resolution, opts.letterbox, num_channels, opts.min_images,
                             cache_dir=os.path.join(opts.outdir, "cache"))
        if label_size and array.label_size != label_size:
            raise TrainingError(f"{opts.data}: the network needs {label_size} labels per image, the dataset has {array.label_size}")
        if not label_size:
            array.labels = np.zeros((len(array), 0), np.float32)
        with strategy.scope():
            trainer = Trainer(G, D, Gs, strategy, recipe, opts.seed, opts.randomize_noise)
        ada = AdaController(recipe.target or 0.6, recipe.ada_interval, recipe.tune_kimg or 500.0)
        nimg, step, meta = 0, 0, None
        if state:
            arrays, meta = snap_files.load_state(state[0])
            trainer.load_state_dict(arrays)
            ada.load_state_dict(meta["ada"])
            nimg, step = int(meta["nimg"]), int(meta["step"])
            if meta.get("batch") != recipe.batch:
                logging.warning("batch changed from %s to %d on resume", meta.get("batch"), recipe.batch)
        ticks = _Ticks(recipe, nimg, meta)
        B = recipe.batch
        logging.info("%s %dpx, recipe %s: batch %d over %d replica(s), gamma %g, lr %g, ema %g kimg, aug %s, "
                     "freezed %d, fp16 resolutions G %d D %d; options in %s", G.family, resolution, recipe.recipe, B,
                     recipe.replicas, recipe.gamma, recipe.lr, recipe.ema_kimg, recipe.aug, recipe.freezed,
                     recipe.precision["G"]["num_fp16_res"], recipe.precision["D"]["num_fp16_res"], self.options_path)

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
        total_nimg = int(round(recipe.kimg * 1000))
        progress = _Progress(total_nimg, nimg)
        stats = {}
        steps_this_run = 0
        while nimg < total_nimg and (opts.max_steps is None or steps_this_run < opts.max_steps):
            reals, labels = next(batches)
            ema_beta = _ema_beta(B, recipe.ema_kimg, nimg, recipe.ema_rampup)
            stats.update(trainer.minibatch(reals, labels, step, ada.p, ema_beta))
            nimg, step, steps_this_run = nimg + B, step + 1, steps_this_run + 1
            bad = {k: v for k, v in stats.items() if k in ("g_loss", "d_loss", "r1", "pl_penalty") and not math.isfinite(v)}
            if bad:
                raise TrainingDiverged(f"{opts.outdir}: {', '.join(f'{k}={v}' for k, v in bad.items())} at kimg "
                                       f"{nimg / 1000:.3f} (step {step}); training stopped, last good snapshot: "
                                       f"{last_snapshot or 'none written yet'}")
            if recipe.aug == "ada":
                ada.accumulate(stats["real_sign"], stats["real_count"])
                ada.step(B)
            progress.show(nimg, stats, ada.p)
            with writer.as_default():
                self._scalars(stats, ada, progress, nimg)
            done = nimg >= total_nimg or (opts.max_steps is not None and steps_this_run >= opts.max_steps)
            if ticks.snapshot_due(nimg, step, done):
                last_snapshot = self._snapshot(G, D, Gs, trainer, dict(ada=ada.state_dict(), nimg=nimg, step=step,
                                                                       batch=B, resume=recipe.resume,
                                                                       **ticks.state_dict()),
                                               writer, (grid_z, grid_labels, grid_cols))
        if stats:
            progress.show(nimg, stats, ada.p, final=True)
        writer.flush()
        if last_snapshot is None:  # nothing left to train: the run was already complete
            logging.info("%s already reached kimg %.3f", opts.outdir, nimg / 1000)
        return dict(snapshot=last_snapshot, kimg=nimg / 1000, outdir=opts.outdir, log_dir=self.log_dir,
                    state=self.state_path, options=self.options_path, stats=stats)

    def _scalars(self, stats, ada, progress, nimg):
        """TensorBoard scalars; the step axis counts real images shown."""
        for key, tag in (("g_loss", "Loss/G"), ("d_loss", "Loss/D"), ("r1", "Loss/R1"),
                         ("pl_penalty", "Loss/path_length_penalty"), ("pl_length", "Loss/path_length")):
            if key in stats:
                files.write_scalar(tag, stats[key], nimg)
        spk = progress.sec_per_kimg(nimg)
        files.write_scalar("ADA/p", ada.p, nimg)
        files.write_scalar("ADA/rt", ada.rt, nimg)
        files.write_scalar("Timing/sec_per_kimg", spk, nimg)
        files.write_scalar("Timing/kimg_per_sec", 1.0 / max(spk, 1e-9), nimg)

    def _snapshot(self, G, D, Gs, trainer, counters, writer, grid):
        """Write pkl, training state (``counters`` + run info in its meta) and fakes grid (chief
        only); returns the pkl path."""
        from .network import save_network_pkl

        outdir, nimg = self.opts.outdir, counters["nimg"]
        pkl = os.path.join(outdir, snap_files.snapshot_name(nimg))
        if not _all_finite((G, D, Gs)):
            raise TrainingDiverged(f"{outdir}: non-finite weights at kimg {nimg / 1000:.3f}; not writing {pkl}; "
                                   f"training stopped")
        arrays = trainer.state_dict()  # every worker takes part (reads of mirrored variables)
        if not self.chief:
            return pkl
        save_network_pkl(pkl, G, D, Gs)
        state_path = os.path.join(outdir, snap_files.STATE_FMT.format(nimg // 1000))
        meta = dict(counters, snapshot=os.path.basename(pkl), seed=self.opts.seed, data=self.opts.data)
        snap_files.save_state(state_path, arrays, meta)
        snap_files.remove_older_states(outdir, keep=state_path)
        self.state_path = state_path
        with writer.as_default():
            _write_fakes(os.path.join(outdir, snap_files.GRID_FMT.format(nimg // 1000)), Gs, *grid, summary_step=nimg)
            if self.opts.metrics:
                from .metrics import snapshot_metrics

                snapshot_metrics(self.opts, Gs, pkl, nimg)
        logging.info("snapshot %s", pkl)
        return pkl


# --------------------------------------------------------------------------------------------------
# Command line.


def run_from_flags():
    """Train as the flags say; returns the line to print."""
    result = run_training(**conventions.options_from_flags(Options))
    return [f"snapshot: {result['snapshot']}  kimg: {result['kimg']:.3f}  logs: {result['log_dir']}"]


if __name__ == "__main__":
    conventions.define_flags(Options)
    conventions.run(run_from_flags)
