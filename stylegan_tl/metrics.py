"""FID and KID of a generator against real images, in bounded memory; also at training snapshots.

Command line (see docs/metrics.md)::

    python -m stylegan_tl.metrics --network=PKL --data=DIR --metrics=fid50k_full,kid50k_full
        [--num_fakes=N] [--features=auto|inception|offline] [--noise_mode=const|random]

Metrics (NVIDIA's names): ``fid<K>k_full`` and ``kid<K>k_full`` compare ``K`` thousand generated
images with every real image of ``--data``; ``--num_fakes`` changes the count, and the recorded
name follows it (``--num_fakes=1000`` records ``fid1k_full``). Fakes: latents
``RandomState(seed).randn``, no truncation (``is_validation``), the stored noise inputs
(``noise_mode='const'``, so that a number can be reproduced; NVIDIA draws fresh noise,
``noise_mode='random'``). Reals: the dataset's images exactly as training decodes them
(centre-crop or letterbox, Lanczos to the network's resolution), not mirrored.

Features: Keras InceptionV3 with its ImageNet weights (2048-d average pool, images resized
bilinearly to 299 px), downloaded once into the Keras cache. NVIDIA's FID uses a different
Inception graph (the TF1 ``pool_3`` of 2015), so the values are comparable with each other, not
with papers. Offline (no Inception weights), the pretrained backbone of the super-resolution work
(``superres_tf.features``: VGG16 or EfficientNet-Lite0, images at 224 px) replaces it under other
names -- ``fd_<backbone>_<K>k_full`` (Fréchet distance) and ``kd_<backbone>_<K>k_full`` -- never
"FID". ``superres_tf`` is imported lazily, only for that fallback.

Memory: feature means and covariances are summed as the batches stream (``feature_stats``), real
image folders are decoded one batch at a time, and KID draws its subsets from a uniform sample of
at most 10,000 feature vectors per side: 50,000 fakes need the same memory as 1,000.

Results: one JSON line per evaluation in ``metric-<name>.jsonl`` of the run folder (NVIDIA's
fields ``results``, ``metric``, ``total_time``, ``total_time_str``, ``num_gpus``, ``snapshot_pkl``,
``timestamp``, plus ``features``, ``num_fakes``, ``num_reals``, ``noise_mode``) and, during training,
a TensorBoard scalar ``Metrics/<name>``.

Python API::

    evaluator = Evaluator(parse_metrics('fid50k_full'), data='photos/', resolution=256)
    results = evaluator.evaluate(Gs)        # {'fid50k_full': 12.3}
"""

import dataclasses
import functools
import json
import os
import re
import socket
import time
import urllib.parse

import numpy as np
from absl import flags, logging

from . import feature_stats
from .errors import StyleGANTLError

FEATURE_KINDS = ("auto", "inception", "offline")
NOISE_MODES = ("const", "random")
INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Where keras.applications.InceptionV3(weights='imagenet', include_top=False) downloads from, and its md5.
INCEPTION_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + INCEPTION_FILE
INCEPTION_HASH = "bcbd6486424b2319ff4ef7d526e38f63"
INCEPTION_SIZE = 299
BACKBONE_SIZE = 224
DOWNLOAD_PROBE_SECONDS = 5.0
KID_SAMPLE = 10000            # feature vectors kept per side for KID
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
_METRIC = re.compile(r"(fid|kid)(\d+)k_full")


# ---------------------------------------------------------------------------------------------------
# Metric names
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Metric:
    """One requested metric: ``kind`` 'fid' or 'kid', ``num_fakes`` generated images."""

    kind: str
    num_fakes: int

    def name(self, features):
        """The recorded name: ``fid50k_full``, or ``fd_<backbone>_50k_full`` on other features."""
        count = f"{self.num_fakes // 1000}k" if self.num_fakes % 1000 == 0 else str(self.num_fakes)
        if features.is_inception:
            return f"{self.kind}{count}_full"
        return f"{'fd' if self.kind == 'fid' else 'kd'}_{features.name}_{count}_full"


def parse_metrics(spec, num_fakes=None):
    """``'fid50k_full,kid50k_full'`` -> [Metric]; ``num_fakes`` overrides every count."""
    names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not names:
        raise StyleGANTLError("--metrics: no metric named (e.g. fid50k_full,kid50k_full)")
    if num_fakes is not None and num_fakes < 2:
        raise StyleGANTLError(f"--num_fakes={num_fakes}: need at least 2")
    metrics = []
    for name in names:
        match = _METRIC.fullmatch(name)
        if not match:
            raise StyleGANTLError(f"--metrics: unknown metric {name!r} (known: fid<K>k_full, kid<K>k_full, "
                                  "e.g. fid50k_full)")
        count = num_fakes or int(match.group(2)) * 1000
        if count < 2:
            raise StyleGANTLError(f"--metrics: {name} needs at least 2 generated images")
        metrics.append(Metric(match.group(1), count))
    return list(dict.fromkeys(metrics))


# ---------------------------------------------------------------------------------------------------
# Feature extractors
# ---------------------------------------------------------------------------------------------------

class Features:
    """uint8 NHWC RGB images -> [N, D] float64 feature vectors.

    Args:
        name: 'inceptionv3' or the backbone's name. source: where the weights came from.
        embed: f(float32 NHWC images in [0, 1] at ``size`` px) -> [N, D] tensor.
        size: input side the images are resized to (bilinear). is_inception: FID/KID proper.
    """

    def __init__(self, name, source, embed, size, is_inception):
        import tensorflow as tf

        self.name, self.source, self.size, self.is_inception = name, source, size, is_inception

        def run(images):
            x = tf.image.resize(tf.cast(images, tf.float32) / 255.0, [size, size], method="bilinear")
            return embed(x)
        self._run = tf.function(run, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)],
                                autograph=False)

    def __call__(self, images):
        return np.asarray(self._run(np.asarray(images, np.uint8)), np.float64)


def inception_weights():
    """Path of Keras' ImageNet InceptionV3 (no top) weights: the cache, else a download attempt
    (a 5-second connection probe first, so that an offline machine fails fast)."""
    import keras

    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    path = os.path.join(home, "models", INCEPTION_FILE)
    if os.path.isfile(path):
        return path
    try:
        socket.create_connection((urllib.parse.urlparse(INCEPTION_URL).hostname, 443),
                                 timeout=DOWNLOAD_PROBE_SECONDS).close()
        return keras.utils.get_file(INCEPTION_FILE, INCEPTION_URL, cache_subdir="models", file_hash=INCEPTION_HASH)
    except Exception as e:  # any failure to fetch means: no Inception weights here
        raise StyleGANTLError(f"InceptionV3 ImageNet weights not in {path} and could not be downloaded "
                              f"({type(e).__name__})") from None


def inception_features():
    """Keras InceptionV3 (ImageNet), 2048-d average pool of 299 px images scaled to [-1, 1]."""
    import keras

    path = inception_weights()
    model = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                           input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
    model.load_weights(path)
    return Features("inceptionv3", f"Keras ImageNet weights {path}", lambda x: model(x * 2.0 - 1.0, training=False),
                    INCEPTION_SIZE, True)


def backbone_features(backbone=None):
    """The super-resolution work's pretrained backbone, globally pooled, at 224 px."""
    if backbone is None:
        try:
            from superres_tf.features import load_backbone
        except ImportError as e:
            raise StyleGANTLError(f"offline features need the superres_tf package ({e})") from None
        backbone = load_backbone("auto")
    if not backbone.pretrained:
        raise StyleGANTLError(f"no pretrained offline features ({backbone.source}); metrics are not computed "
                              "on random features")
    return Features(backbone.name, backbone.source, backbone.embed, BACKBONE_SIZE, False)


def load_features(kind="auto"):
    """'inception', 'offline', or 'auto' (Inception, else the offline backbone, saying why)."""
    if kind not in FEATURE_KINDS:
        raise StyleGANTLError(f"--features={kind!r}: expected one of {', '.join(FEATURE_KINDS)}")
    if kind == "offline":
        return backbone_features()
    try:
        return inception_features()
    except StyleGANTLError as e:
        if kind == "inception":
            raise
        logging.warning("%s; using the offline backbone instead (metric names fd_/kd_, not FID/KID)", e)
        return backbone_features()


# ---------------------------------------------------------------------------------------------------
# Images and their statistics
# ---------------------------------------------------------------------------------------------------

def real_images(data, resolution, num_channels=3, letterbox=False, batch_size=32):
    """uint8 NCHW batches of the dataset's images as training decodes them (folders: one batch of
    files decoded at a time; unreadable files skipped as training skips them; TFRecords: as read)."""
    from .dataset import list_image_files, load_dataset, load_image, tfrecord_files
    from .errors import DatasetError

    if not os.path.isdir(data):
        raise StyleGANTLError(f"{data}: dataset directory not found")
    if tfrecord_files(data):
        images = load_dataset(data, resolution, num_channels=num_channels).images
        for start in range(0, len(images), batch_size):
            yield np.asarray(images[start:start + batch_size])
        return
    batch = []
    for path in list_image_files(data):
        try:
            batch.append(load_image(path, resolution, letterbox, num_channels))
        except (DatasetError, OSError, ValueError, SyntaxError) as e:
            logging.warning("skipping unreadable image %s: %s", path, e)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def fake_images(Gs, count, batch_size=32, seed=0, noise_mode="const"):
    """uint8 NCHW batches of ``count`` generated images: z = RandomState(seed).randn, no truncation."""
    from .network import convert_images_to_uint8

    if noise_mode not in NOISE_MODES:
        raise StyleGANTLError(f"--noise_mode={noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    if Gs.input_shapes[1][1]:
        raise StyleGANTLError(f"network {Gs.name!r} is conditional: metrics support unconditional networks only")
    rnd = np.random.RandomState(seed)
    for start in range(0, count, batch_size):
        z = rnd.randn(min(batch_size, count - start), Gs.input_shape[1]).astype(np.float32)
        images = Gs.run(z, None, is_validation=True, randomize_noise=noise_mode == "random")
        yield convert_images_to_uint8(images)


def statistics(batches, features, seed=0):
    """:class:`feature_stats.FeatureStats` of uint8 NCHW ``batches`` (grey images as RGB)."""
    stats = None
    for batch in batches:
        nhwc = np.transpose(batch, [0, 2, 3, 1])
        if nhwc.shape[-1] == 1:
            nhwc = np.repeat(nhwc, 3, axis=-1)
        vectors = features(nhwc)
        if stats is None:
            stats = feature_stats.FeatureStats(vectors.shape[1], capacity=KID_SAMPLE, seed=seed)
        stats.append(vectors)
    return stats


def metric_value(kind, fake, real, seed=0):
    """FID-type (Fréchet) or KID-type (kernel) distance of two FeatureStats."""
    if kind == "fid":
        return feature_stats.frechet_distance_of(fake, real)
    return feature_stats.kernel_distance(fake.sample, real.sample, KID_SUBSETS, KID_SUBSET_SIZE, seed)


class Evaluator:
    """Metrics of generators against one real dataset (real statistics computed once, on first use).

    Args:
        metrics: [Metric] (see :func:`parse_metrics`).
        data: image folder or TFRecords directory. resolution, num_channels: the network's.
        features: a :class:`Features` (default: ``load_features('auto')`` on first use).
        letterbox: decode reals as training with ``--letterbox`` did.
        batch_size: images per generator / feature-network call. seed: fakes' latents and KID subsets.
        noise_mode: 'const' (stored noise inputs, reproducible) or 'random' (NVIDIA's).
    """

    def __init__(self, metrics, data, resolution, num_channels=3, features=None, letterbox=False, batch_size=32,
                 seed=0, noise_mode="const"):
        self.metrics, self.data, self.resolution, self.num_channels = list(metrics), data, resolution, num_channels
        self.letterbox, self.batch_size, self.seed, self.noise_mode = letterbox, batch_size, seed, noise_mode
        self._features, self._real = features, None

    @property
    def features(self):
        if self._features is None:
            self._features = load_features("auto")
        return self._features

    def real_stats(self):
        if self._real is None:
            self._real = statistics(real_images(self.data, self.resolution, self.num_channels, self.letterbox,
                                                self.batch_size), self.features, self.seed)
            if self._real is None or self._real.count < 2:
                raise StyleGANTLError(f"{self.data}: fewer than 2 readable images; no metric")
        return self._real

    def evaluate(self, Gs):
        """{recorded name: value} for every metric, and {recorded name: details} (features, counts, and
        the seconds of its pass over the fakes -- shared by the metrics of one count -- plus its own)."""
        real = self.real_stats()
        values, details = {}, {}
        fakes, fake_seconds = {}, {}   # per count: one pass over the fakes serves every metric of that count
        for metric in self.metrics:
            count = metric.num_fakes
            if count not in fakes:
                started = time.time()
                fakes[count] = statistics(fake_images(Gs, count, self.batch_size, self.seed, self.noise_mode),
                                          self.features, self.seed)
                fake_seconds[count] = time.time() - started
            started = time.time()
            name = metric.name(self.features)
            values[name] = metric_value(metric.kind, fakes[count], real, self.seed)
            details[name] = dict(features=f"{self.features.name}: {self.features.source}", num_fakes=count,
                                 num_reals=real.count, noise_mode=self.noise_mode,
                                 total_time=fake_seconds[count] + time.time() - started)
        return values, details


# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------

def _time_str(seconds):
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def append_results(run_dir, values, details, snapshot_pkl):
    """Append one JSON line per metric to ``run_dir/metric-<name>.jsonl`` (rewritten atomically)."""
    from .atomic import atomic_write

    paths = []
    for name, value in values.items():
        info = details[name]
        line = dict(results={name: value}, metric=name, total_time=info["total_time"],
                    total_time_str=_time_str(info["total_time"]), num_gpus=1,
                    snapshot_pkl=os.path.basename(snapshot_pkl), timestamp=time.time(),
                    **{k: v for k, v in info.items() if k != "total_time"})
        path = os.path.join(run_dir, f"metric-{name}.jsonl")
        old = open(path, "rb").read() if os.path.exists(path) else b""
        with atomic_write(path) as f:
            f.write(old + (json.dumps(line) + "\n").encode())
        paths.append(path)
    return paths


def read_results(run_dir):
    """{metric name: last JSON line's record} of the ``metric-*.jsonl`` files in ``run_dir``."""
    found = {}
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        if name.startswith("metric-") and name.endswith(".jsonl"):
            with open(os.path.join(run_dir, name)) as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
            if lines:
                record = json.loads(lines[-1])
                found[record["metric"]] = record
    return found


@functools.lru_cache(maxsize=2)
def _training_evaluator(metrics, data, data_mtime_ns, resolution, num_channels, letterbox):
    del data_mtime_ns  # part of the cache key only: files added or removed since give new statistics
    return Evaluator(metrics, data, resolution, num_channels, letterbox=letterbox)


def snapshot_metrics(opts, Gs, pkl, nimg):
    """At a training snapshot: compute ``opts.metrics`` (names, a list or comma-separated) for ``Gs``,
    append the JSON lines beside ``pkl`` and write ``Metrics/<name>`` scalars (on the default summary
    writer) at step ``nimg``. Returns {name: value}.

    The real statistics are computed once per run (cached with the evaluator). An unknown metric
    name raises; a metric that cannot be computed (no feature network available, ...) is logged as
    an error and skipped: training goes on.
    """
    from superres_tf.files import write_scalar

    _, channels, resolution, _ = Gs.output_shape
    spec = ",".join(opts.metrics) if isinstance(opts.metrics, (list, tuple)) else opts.metrics
    requested = tuple(parse_metrics(spec))
    try:
        evaluator = _training_evaluator(requested, opts.data, os.stat(opts.data).st_mtime_ns, resolution, channels,
                                        opts.letterbox)
        values, details = evaluator.evaluate(Gs)
    except StyleGANTLError as e:
        logging.error("metrics %s skipped at %s: %s", spec, os.path.basename(pkl), e)
        return {}
    append_results(os.path.dirname(os.path.abspath(pkl)), values, details, pkl)
    for name, value in values.items():
        write_scalar(f"Metrics/{name}", value, nimg)
        logging.info("%s %s: %.4f", os.path.basename(pkl), name, value)
    return values


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags():
    """Define the command-line flags (only when run as a program)."""
    flags.DEFINE_string("network", None, "Generator pickle: path, URL or official name.")
    flags.DEFINE_string("data", None, "Real images: image folder (recursive) or TFRecords directory.")
    flags.DEFINE_string("metrics", "fid50k_full", "Comma-separated: fid<K>k_full, kid<K>k_full.")
    flags.DEFINE_integer("num_fakes", None, "Generated images per metric (default: the K of the name).")
    flags.DEFINE_enum("features", "auto", FEATURE_KINDS, "auto: InceptionV3 if its weights are available, "
                      "else the offline backbone (recorded under fd_/kd_ names).")
    flags.DEFINE_enum("noise_mode", "const", NOISE_MODES, "const: stored noise (reproducible); random: NVIDIA's.")
    flags.DEFINE_bool("letterbox", False, "Decode the reals letterboxed, as training with --letterbox.")
    flags.DEFINE_integer("batch", 32, "Images per network call.")
    flags.DEFINE_integer("seed", 0, "Seed of the generated latents and of KID's subsets.")
    flags.DEFINE_string("run_dir", None, "Append metric-<name>.jsonl here (default: the pickle's folder when it "
                        "is a training run, i.e. holds logs/; else nothing is written).")


def _default_run_dir(network):
    folder = os.path.dirname(os.path.abspath(network))
    return folder if os.path.isfile(network) and os.path.isdir(os.path.join(folder, "logs")) else None


def run_from_flags():
    """Compute the metrics the flags ask for; returns the lines to print."""
    from .generate import _load_generator

    for name, what in (("network", "pickle path, URL or official name"), ("data", "folder of real images")):
        if not FLAGS[name].value:
            raise StyleGANTLError(f"--{name} is required ({what})")
    if FLAGS.batch < 1:
        raise StyleGANTLError(f"--batch={FLAGS.batch}: need at least 1")
    metrics = parse_metrics(FLAGS.metrics, FLAGS.num_fakes)
    if not os.path.isdir(FLAGS.data):
        raise StyleGANTLError(f"{FLAGS.data}: dataset directory not found")
    Gs = _load_generator(FLAGS.network)
    _, channels, resolution, _ = Gs.output_shape
    features = load_features(FLAGS.features)
    evaluator = Evaluator(metrics, FLAGS.data, resolution, channels, features, FLAGS.letterbox, FLAGS.batch,
                          FLAGS.seed, FLAGS.noise_mode)
    values, details = evaluator.evaluate(Gs)
    lines = [f"features: {features.name} ({features.source})"]
    lines += [f"{name}: {value:.6g}  ({details[name]['num_fakes']} fakes, {details[name]['num_reals']} reals, "
              f"{_time_str(details[name]['total_time'])})" for name, value in values.items()]
    run_dir = FLAGS.run_dir or _default_run_dir(FLAGS.network)
    if run_dir:
        lines += [f"appended to {p}" for p in append_results(run_dir, values, details, FLAGS.network)]
    return lines


if __name__ == "__main__":
    from superres_tf import conventions

    define_flags()
    conventions.run(run_from_flags)
