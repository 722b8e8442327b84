"""Project a photo into a generator's W space (NVIDIA's StyleGAN2-ADA projector, clean-room TF2).

Command line (see docs/projector.md)::

    python -m stylegan_tl.project --network=PKL --target=photo.jpg --outdir=out
        [--steps=1000] [--seed=303] [--save_video] [--distance=auto|lpips|features|pixels]

Writes ``target.png`` (the photo as the network sees it), ``proj.png`` (the projection),
``projected_w.npz`` (key ``w``: [1, num_ws, w_dim], W repeated over the layers, as NVIDIA's),
``projection.json`` (the distance used, start and final distance, settings) and with
``--save_video`` ``proj.gif`` or ``proj.mp4`` (target | projection, side by side, over the steps).

The method (NVIDIA's ``projector.py``, same constants):

* W statistics from 10,000 mapped latents ``RandomState(123).randn``: the start ``w_avg`` (one W,
  [1, 1, w_dim], repeated over the layers) and ``w_std`` = sqrt(mean squared distance to it).
* The noise inputs (``noise0``, ``noise1``, ...) are optimised too: drawn N(0, 1) from the seed,
  renormalised to zero mean and unit variance after every step, and regularised by the squared
  mean autocorrelation at one-pixel shifts (x and y) over a 2x2 pyramid down to 8 px
  (weight 1e5).
* Step t of T (t' = t / T): learning rate 0.1 x ramp, ramp = min(1, t' / 0.05) x
  (0.5 - 0.5 cos(pi min(1, (1 - t') / 0.25))); W noise of std w_std x 0.05 x max(0, 1 - t' / 0.75)^2
  added to W for the step only; Adam (beta 0.9, 0.999, eps 1e-8) on W and the noise inputs.
* The target is centre-cropped and Lanczos-resized to the network's resolution; images above
  256 px are averaged down by an integer factor to at most 256 px before the distance
  (:mod:`stylegan_tl.distance`: LPIPS-VGG16, else pretrained features, else pixels).

The generator's noise buffers are restored afterwards; the optimised ones are in the result.

Python API::

    result = project(Gs, target_chw_uint8, steps=300, seed=303)
    result.w, result.image, result.final_distance
"""

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
from absl import flags

from superres_tf import files

from .errors import StyleGANTLError
from .generate import _NOISE_BUFFER, save_gif, temporarily_set

DISTANCE_MAX_SIDE = 256


@dataclasses.dataclass
class Schedule:
    """NVIDIA's projector hyper-parameters (``projector.py`` defaults)."""

    w_avg_samples: int = 10000          # mapped latents for the W mean / std
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05  # W noise std at step 0, in units of w_std
    lr_rampdown_length: float = 0.25    # fraction of the steps
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5

    def learning_rate(self, t):
        """Learning rate at progress ``t`` = step / steps in [0, 1)."""
        ramp = min(1.0, (1.0 - t) / self.lr_rampdown_length)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        return self.initial_learning_rate * ramp * min(1.0, t / self.lr_rampup_length)

    def w_noise_scale(self, t, w_std):
        """Std of the noise added to W at progress ``t``."""
        return w_std * self.initial_noise_factor * max(0.0, 1.0 - t / self.noise_ramp_length) ** 2


@dataclasses.dataclass
class Projection:
    """What :func:`project` found.

    Attributes:
        w: [1, num_ws, w_dim] float32, the projected W repeated over the layers.
        image, target: uint8 [R, R, C] (HWC) of the projection and of the target.
        noise: {noise variable name: optimised [1, 1, r, r] array}.
        start_distance: distance of the mean-W start (initial noise); final_distance: of ``image``.
        distances: the distance at each step (with that step's W noise).
        distance_name, distance_source: which distance was used and where its weights came from.
        w_std: the W standard deviation that scales the W noise.
        frames: uint8 [R, 2R, C] images (target | projection) of the recorded steps.
    """

    w: np.ndarray
    image: np.ndarray
    target: np.ndarray
    noise: dict
    start_distance: float
    final_distance: float
    distances: list
    distance_name: str
    distance_source: str
    w_std: float
    frames: list


def w_statistics(Gs, num_samples=10000):
    """(w_avg [1, 1, w_dim], w_std) of W for ``num_samples`` latents ``RandomState(123).randn``."""
    z = np.random.RandomState(123).randn(num_samples, Gs.input_shape[1]).astype(np.float32)
    w = Gs.components.mapping.run(z, None, minibatch_size=1000)[:, :1, :].astype(np.float32)
    w_avg = w.mean(axis=0, keepdims=True)
    return w_avg, float(np.sqrt(np.sum((w - w_avg) ** 2) / num_samples))


def noise_regularization(noise_maps):
    """Sum over maps [1, 1, H, W] and their 2x2-averaged pyramid (down to 8 px) of the squared mean
    products with the map shifted by one pixel in x and in y (wrapping)."""
    import tensorflow as tf

    total = 0.0
    for v in noise_maps:
        while True:
            total += tf.reduce_mean(v * tf.roll(v, 1, axis=3)) ** 2 + tf.reduce_mean(v * tf.roll(v, 1, axis=2)) ** 2
            if v.shape[2] <= 8:
                break
            v = tf.nn.avg_pool2d(v, 2, 2, "VALID", data_format="NCHW")
    return total


def images_for_distance(images, channels):
    """Network images NCHW [-1, 1] -> NHWC [0, 1], 3 channels, averaged down to <= 256 px."""
    import tensorflow as tf

    x = (tf.transpose(images, [0, 2, 3, 1]) + 1.0) / 2.0
    if channels == 1:
        x = tf.tile(x, [1, 1, 1, 3])
    side = x.shape[1]
    if side > DISTANCE_MAX_SIDE:
        factor = side // DISTANCE_MAX_SIDE
        x = tf.nn.avg_pool2d(x, factor, factor, "VALID")
    return x


def _uint8(images):
    from .network import convert_images_to_uint8

    return convert_images_to_uint8(images, nchw_to_nhwc=True)[0]


class _Optimizer:
    """Adam (beta 0.9, 0.999, eps 1e-8; PyTorch's form) over W and the noise inputs, one compiled step."""

    def __init__(self, Gs, noise_vars, w_avg, w_std, distance, schedule, seed):
        import tensorflow as tf

        self.tf, self.noise_vars, self.distance, self.schedule = tf, noise_vars, distance, schedule
        self.synthesis, self.w_std, self.seed = Gs.components.synthesis, w_std, seed
        self.num_ws = Gs.components.synthesis.input_shape[1]
        self.channels = Gs.output_shape[1]
        self.w = tf.Variable(w_avg, name="projected_w")
        self.params = [self.w] + list(noise_vars)
        self.m = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.v = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.step_fn = tf.function(self._step, autograph=False)

    def render(self, w):
        """NCHW images of W [1, 1, w_dim] with the current noise inputs."""
        return self.synthesis.get_output_for(self.tf.tile(w, [1, self.num_ws, 1]), randomize_noise=False)

    def measure(self):
        """Distance of the current W (no W noise)."""
        return float(self.distance(images_for_distance(self.render(self.w), self.channels))[0])

    def _step(self, step, lr, w_noise):
        tf = self.tf
        with tf.GradientTape() as tape:
            tape.watch(self.noise_vars)
            noise = tf.random.stateless_normal(self.w.shape, tf.stack([tf.constant(self.seed, tf.int64), step]))
            images = self.render(self.w + noise * w_noise)
            dist = self.distance(images_for_distance(images, self.channels))[0]
            loss = dist + noise_regularization(self.noise_vars) * self.schedule.regularize_noise_weight
        grads = tape.gradient(loss, self.params)
        t = tf.cast(step, tf.float32) + 1.0
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.assign(0.9 * m + 0.1 * g)
            v.assign(0.999 * v + 0.001 * tf.square(g))
            m_hat, v_hat = m / (1.0 - 0.9 ** t), v / (1.0 - 0.999 ** t)
            p.assign_sub(lr * m_hat / (tf.sqrt(v_hat) + 1e-8))
        for buf in self.noise_vars:
            centred = buf - tf.reduce_mean(buf)
            buf.assign(centred * tf.math.rsqrt(tf.reduce_mean(tf.square(centred))))
        return dist, loss

    def step(self, step, steps):
        t = step / steps
        dist, loss = self.step_fn(self.tf.constant(step, self.tf.int64),
                                  self.tf.constant(self.schedule.learning_rate(t), self.tf.float32),
                                  self.tf.constant(self.schedule.w_noise_scale(t, self.w_std), self.tf.float32))
        return float(dist), float(loss)


def project(Gs, target, steps=1000, seed=303, distance="auto", lpips_weights=None, schedule=None,
            record_every=0, on_step=None):
    """Fit W (and the noise inputs) of generator ``Gs`` to ``target``.

    Args:
        Gs: generator ``Network`` (v1, v2 or ADA).
        target: uint8 [C, R, R] at the network's resolution (e.g. ``dataset.load_image``).
        steps: optimisation steps. seed: seed of the initial noise inputs and of the W noise.
        distance: 'auto', 'lpips', 'features', 'pixels' (see :mod:`stylegan_tl.distance`), or a
            ready distance object (``FeatureDistance``).
        lpips_weights: path of LPIPS' ``vgg.pth`` (default: the ``lpips`` package's, if installed).
        schedule: :class:`Schedule` (NVIDIA's defaults).
        record_every: keep a (target | projection) frame every N steps (0: none).
        on_step: f(step, steps, distance, loss) after every step (progress display).
    Returns:
        :class:`Projection`.
    """
    import tensorflow as tf

    from .distance import make_distance

    schedule = schedule or Schedule()
    channels, resolution = Gs.output_shape[1], Gs.output_shape[2]
    target = np.asarray(target)
    if target.dtype != np.uint8 or target.shape != (channels, resolution, resolution):
        raise StyleGANTLError(f"target: expected uint8 [{channels}, {resolution}, {resolution}], got "
                              f"{target.dtype} {list(target.shape)}")
    if steps < 1:
        raise StyleGANTLError(f"--steps={steps}: need at least 1")
    if Gs.input_shapes[1][1]:
        raise StyleGANTLError(f"network {Gs.name!r} is conditional: projection supports unconditional networks "
                              "only (as NVIDIA's projector)")
    target_float = target[np.newaxis].astype(np.float32) * (2 / 255) - 1
    if not isinstance(distance, str):
        dist = distance
    else:
        dist = make_distance(images_for_distance(tf.constant(target_float), channels), distance, lpips_weights)
    w_avg, w_std = w_statistics(Gs, schedule.w_avg_samples)
    noise_names = [name for name in Gs.vars if _NOISE_BUFFER.search(name)]
    rnd = np.random.RandomState(seed)
    start_noise = {name: rnd.randn(*Gs.vars[name].shape).astype(np.float32) for name in noise_names}
    with temporarily_set(Gs, start_noise):
        opt = _Optimizer(Gs, [Gs.vars[n] for n in noise_names], w_avg, w_std, dist, schedule, seed)
        target_hwc = _uint8(target_float)
        frames, distances = [], []
        start_distance = opt.measure()
        for step in range(steps):
            if record_every and step % record_every == 0:
                frames.append(np.concatenate([target_hwc, _uint8(opt.render(opt.w))], axis=1))
            dist_value, loss = opt.step(step, steps)
            distances.append(dist_value)
            if on_step is not None:
                on_step(step + 1, steps, dist_value, loss)
        final_w = opt.w.numpy()
        image = _uint8(opt.render(opt.w))
        if record_every:
            frames.append(np.concatenate([target_hwc, image], axis=1))
        final_distance = opt.measure()
        noise = {name: Gs.vars[name].numpy() for name in noise_names}
    return Projection(w=np.tile(final_w, [1, opt.num_ws, 1]), image=image, target=target_hwc, noise=noise,
                      start_distance=start_distance, final_distance=final_distance, distances=distances,
                      distance_name=dist.name, distance_source=dist.source, w_std=w_std, frames=frames)


# ---------------------------------------------------------------------------------------------------
# Outputs and command line
# ---------------------------------------------------------------------------------------------------

VIDEO_FORMATS = ("gif", "mp4")
VIDEO_FRAMES = 200      # at most this many frames (every ceil(steps / 200)-th step)
GIF_MAX_HEIGHT = 256    # GIF frames above this are averaged down by an integer factor


def _write_video(frames, path):
    """proj.gif (Pillow) or proj.mp4 (needs ``imageio`` with its ffmpeg plugin), atomically."""
    if path.endswith(".gif"):
        factor = max(1, frames[0].shape[0] // GIF_MAX_HEIGHT)
        if factor > 1:
            frames = [f.reshape(f.shape[0] // factor, factor, f.shape[1] // factor, factor, -1).mean(axis=(1, 3))
                      .astype(np.uint8) for f in frames]
        return save_gif(frames, path, frame_ms=40)
    try:
        import imageio
    except ImportError:
        raise StyleGANTLError("--video_format=mp4 needs imageio with ffmpeg (pip install imageio[ffmpeg]); "
                              "--video_format=gif needs nothing") from None
    with files.atomic_path(path, StyleGANTLError, suffix=".mp4") as tmp:
        try:
            with imageio.get_writer(tmp, mode="I", fps=30, codec="libx264") as writer:
                for frame in frames:
                    writer.append_data(frame)
        except Exception as e:  # imageio reports a missing ffmpeg in several ways
            raise StyleGANTLError(f"{path}: cannot write the video ({str(e).splitlines()[0]})") from None
    return path


def write_outputs(result, outdir, video_format=None, record=None):
    """Write target.png, proj.png, projected_w.npz, projection.json (+ proj.<video_format>).

    ``record``: extra entries for projection.json (network, target, settings). Returns the paths.
    """
    from .atomic import atomic_write, write_image

    os.makedirs(outdir, exist_ok=True)
    paths = [write_image(os.path.join(outdir, "target.png"), result.target),
             write_image(os.path.join(outdir, "proj.png"), result.image)]
    npz = os.path.join(outdir, "projected_w.npz")
    files.save_arrays(npz, {"w": result.w.astype(np.float32)}, StyleGANTLError)
    info = dict(record or {}, distance=result.distance_name, distance_source=result.distance_source,
                start_distance=result.start_distance, final_distance=result.final_distance,
                w_std=result.w_std, w_shape=list(result.w.shape))
    path = os.path.join(outdir, "projection.json")
    with atomic_write(path) as f:
        f.write((json.dumps(info, indent=2) + "\n").encode())
    paths += [npz, path]
    if video_format:
        paths.append(_write_video(result.frames, os.path.join(outdir, f"proj.{video_format}")))
    return paths


FLAGS = flags.FLAGS


def define_flags():
    """Define the command-line flags (only when run as a program)."""
    from .distance import KINDS

    flags.DEFINE_string("network", None, "Generator pickle: path, URL or official name.")
    flags.DEFINE_string("target", None, "Photo to project (centre-cropped, resized to the network's resolution).")
    flags.DEFINE_string("outdir", None, "Output folder.")
    flags.DEFINE_integer("steps", 1000, "Optimisation steps.")
    flags.DEFINE_integer("seed", 303, "Seed of the initial noise inputs and of the W noise (NVIDIA's default 303).")
    flags.DEFINE_bool("save_video", False, "Also write the optimisation as proj.gif / proj.mp4.")
    flags.DEFINE_enum("video_format", "gif", VIDEO_FORMATS, "gif (Pillow) or mp4 (needs imageio[ffmpeg]).")
    flags.DEFINE_enum("distance", "auto", KINDS, "auto: LPIPS-VGG16, else pretrained features, else pixels.")
    flags.DEFINE_string("lpips_weights", None, "LPIPS linear layers (vgg.pth); default: the lpips package's.")
    flags.DEFINE_integer("w_avg_samples", Schedule.w_avg_samples, "Mapped latents for the W mean and std.")


def _progress_printer(every):
    start = time.time()

    def show(step, steps, dist, loss):
        if step % every == 0 or step == steps:
            print(f"step {step:>5d}/{steps}: dist {dist:.4f} loss {loss:.4f} ({time.time() - start:.0f} s)",
                  file=sys.stderr, flush=True)
    return show


def run_from_flags():
    """Load, project, write; returns the lines to print."""
    from superres_tf.images import open_image

    from .dataset import load_image
    from .generate import _load_generator

    for name, what in (("network", "pickle path, URL or official name"), ("target", "a photo"),
                       ("outdir", "output folder")):
        if not FLAGS[name].value:
            raise StyleGANTLError(f"--{name} is required ({what})")
    if not os.path.isfile(FLAGS.target):
        raise StyleGANTLError(f"{FLAGS.target}: no such file")
    open_image(FLAGS.target)[0].close()  # an unreadable photo is refused before the network is loaded
    Gs = _load_generator(FLAGS.network)
    channels, resolution = Gs.output_shape[1], Gs.output_shape[2]
    target = load_image(FLAGS.target, resolution, num_channels=channels)
    record_every = max(1, math.ceil(FLAGS.steps / VIDEO_FRAMES)) if FLAGS.save_video else 0
    started = time.time()
    result = project(Gs, target, steps=FLAGS.steps, seed=FLAGS.seed, distance=FLAGS.distance,
                     lpips_weights=FLAGS.lpips_weights, schedule=Schedule(w_avg_samples=FLAGS.w_avg_samples),
                     record_every=record_every, on_step=_progress_printer(max(1, FLAGS.steps // 20)))
    record = dict(network=FLAGS.network, target=FLAGS.target, steps=FLAGS.steps, seed=FLAGS.seed,
                  seconds=round(time.time() - started, 1))
    paths = write_outputs(result, FLAGS.outdir, FLAGS.video_format if FLAGS.save_video else None, record)
    return [f"distance: {result.distance_name} ({result.distance_source})",
            f"distance {result.start_distance:.4f} at the mean W -> {result.final_distance:.4f}; "
            f"wrote {len(paths)} files to {FLAGS.outdir}"]


if __name__ == "__main__":
    from superres_tf import conventions

    define_flags()
    conventions.run(run_from_flags)
