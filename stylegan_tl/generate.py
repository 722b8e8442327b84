"""Seeds -> images with any StyleGAN / StyleGAN2 / ADA generator: PNGs, a grid, a style-mixing figure and
an interpolation GIF.

Command line (see docs/generate.md)::

    python -m stylegan_tl.generate --network=PKL_OR_NAME --seeds=0-7 --truncation_psi=0.7 --outdir=DIR
        [--grid] [--noise_mode=const|random|none] [--interpolate=FRAMES] [--mixing] [--class=K]

Conventions (NVIDIA's ``run_generator.py``): the latent of seed s is
``np.random.RandomState(s).randn(1, z_dim)``; with ``noise_mode='random'`` the noise inputs are then
drawn from the same RandomState, in creation order, so every output is a pure function of its seed.
Images are written as uint8 RGB (or grayscale) PNGs via NVIDIA's ``convert_images_to_uint8``.

Python API::

    paths = generate_images(Gs, seeds=[0, 1, 2], truncation_psi=0.7, outdir='out', grid=True)
"""

import contextlib
import os
import re

import numpy as np
from absl import flags, logging
from superres_tf.conventions import StatusLine
from superres_tf.images import image_grid

from .atomic import atomic_write, write_image
from .errors import StyleGANTLError

NOISE_MODES = ("const", "random", "none")
_NOISE_BUFFER = re.compile(r"(^|/)noise\d+$")             # v1, v2, ADA noise inputs
_NOISE_STRENGTH = re.compile(r"(/Noise/weight|noise_strength)$")  # v1 per-channel, v2/ADA scalar


# ---------------------------------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------------------------------

def parse_int_list(spec, what="--seeds"):
    """Parse ``'0-7'``, ``'1,5,9'`` or ``'0-3,10'`` into a list of non-negative ints (order kept).

    The one parser of seed lists (``generate``, ``run_pipeline.py --seeds``); a malformed item or
    an empty range (``'5-1'``) is a StyleGANTLError ``<what>=<spec>: ...``.
    """
    values = []
    for part in str(spec).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise StyleGANTLError(f"{what}={spec}: expected e.g. 0-7 or 1,5,9 (cannot parse {part!r})")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise StyleGANTLError(f"{what}={spec}: empty range {part!r}")
        values.extend(range(lo, hi + 1))
    return values


def parse_seeds(spec):
    """Seeds from a spec like ``'0-7'``; each must fit NumPy's RandomState (0 <= seed < 2**32)."""
    seeds = parse_int_list(spec, "--seeds")
    if max(seeds) >= 2 ** 32:
        raise StyleGANTLError(f"--seeds={spec}: {max(seeds)} is too large (seeds must be < 2**32)")
    return seeds


def slerp(a, b, t):
    """Spherical interpolation between latent vectors a and b ([..., D]) at fraction t."""
    an, bn = a / np.linalg.norm(a, axis=-1, keepdims=True), b / np.linalg.norm(b, axis=-1, keepdims=True)
    omega = np.arccos(np.clip(np.sum(an * bn, axis=-1, keepdims=True), -1.0, 1.0))
    so = np.sin(omega)
    if np.all(so < 1e-6):
        return a + (b - a) * t
    return (np.sin((1.0 - t) * omega) / so) * a + (np.sin(t * omega) / so) * b


def _pil(image):
    """uint8 HWC (C = 1 or 3) -> PIL image."""
    from PIL import Image

    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def save_gif(frames, path, frame_ms=40):
    """Write uint8 HWC frames as a looping GIF atomically."""
    first, *rest = [_pil(f) for f in frames]
    with atomic_write(path) as f:
        first.save(f, format="GIF", save_all=True, append_images=rest, duration=frame_ms, loop=0)
    return path


# ---------------------------------------------------------------------------------------------------
# Network helpers (work with any Network family)
# ---------------------------------------------------------------------------------------------------

def _to_uint8(images):
    from .network import convert_images_to_uint8

    return convert_images_to_uint8(images, nchw_to_nhwc=True)


def _labels(Gs, class_idx, n=1):
    """One-hot labels [n, label_size] for conditional nets, None for unconditional ones."""
    label_size = Gs.input_shapes[1][1]
    if label_size == 0:
        if class_idx is not None:
            raise StyleGANTLError(f"--class={class_idx} given but network {Gs.name!r} is unconditional")
        return None
    if class_idx is None:
        raise StyleGANTLError(f"network {Gs.name!r} is conditional ({label_size} classes): pass --class")
    if not 0 <= class_idx < label_size:
        raise StyleGANTLError(f"--class={class_idx} out of range 0..{label_size - 1}")
    labels = np.zeros([n, label_size], np.float32)
    labels[:, class_idx] = 1
    return labels


def seed_inputs(Gs, seed, noise_mode="const"):
    """NVIDIA's per-seed inputs: ``(z [1, z_dim], noise overrides {var name: array})``.

    ``rnd = RandomState(seed)``; ``z = rnd.randn(1, z_dim)``; for noise_mode 'random' every noise
    input is then drawn from the same ``rnd`` in creation order (NVIDIA ``run_generator.py``).
    """
    rnd = np.random.RandomState(seed)
    z = rnd.randn(1, Gs.input_shape[1]).astype(np.float32)
    overrides = {}
    if noise_mode == "random":
        overrides = {name: rnd.randn(*var.shape).astype(np.float32)
                     for name, var in Gs.vars.items() if _NOISE_BUFFER.search(name)}
    elif noise_mode == "none":
        overrides = {name: np.zeros(var.shape, np.float32)
                     for name, var in Gs.vars.items() if _NOISE_STRENGTH.search(name)}
    elif noise_mode != "const":
        raise StyleGANTLError(f"--noise_mode={noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    return z, overrides


@contextlib.contextmanager
def temporarily_set(Gs, values):
    """Assign ``values`` ({full var name: array}) to Gs's variables, restoring the old ones on exit."""
    saved = {name: Gs.vars[name].numpy() for name in values}
    try:
        for name, value in values.items():
            Gs.vars[name].assign(value)
        yield
    finally:
        for name, value in saved.items():
            Gs.vars[name].assign(value)


def _trunc_kwargs(truncation_psi, truncation_cutoff):
    """Dynamic kwargs for ``Gs.run``: None leaves the network's own default in place."""
    kwargs = dict(randomize_noise=False)
    if truncation_psi is not None:
        kwargs["truncation_psi"] = truncation_psi
    if truncation_cutoff is not None:
        kwargs["truncation_cutoff"] = truncation_cutoff
    return kwargs


# ---------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------

def generate_images(Gs, seeds, truncation_psi=None, noise_mode="const", outdir=".", grid=False,
                    class_idx=None, truncation_cutoff=None):
    """One PNG per seed (``seed%04d.png``) and optionally ``grid.png``.

    Args:
        Gs: generator ``Network`` (any family).
        seeds: iterable of ints; z = RandomState(seed).randn(1, z_dim).
        truncation_psi, truncation_cutoff: passed to ``Gs.run``; None = the network's default
            (v1: psi 0.7 on the first 8 layers; v2/ADA: psi 0.5 on all layers).
        noise_mode: 'const' (stored noise), 'random' (noise drawn from the seed) or 'none' (no noise).
        outdir: output directory (created). grid: also write all images tiled into ``grid.png``.
        class_idx: class of a conditional network.
    Returns:
        List of written paths (the PNGs, then the grid).
    """
    seeds = list(seeds)
    if not seeds:
        raise StyleGANTLError("no seeds given")
    os.makedirs(outdir, exist_ok=True)
    labels = _labels(Gs, class_idx)
    kwargs = _trunc_kwargs(truncation_psi, truncation_cutoff)
    paths, images = [], []
    progress = StatusLine()
    for i, seed in enumerate(seeds):
        z, overrides = seed_inputs(Gs, seed, noise_mode)
        with temporarily_set(Gs, overrides):
            image = _to_uint8(Gs.run(z, labels, **kwargs))[0]
        images.append(image)
        paths.append(write_image(os.path.join(outdir, f"seed{seed:04d}.png"), image))
        progress.count(i + 1, len(seeds), "images")
    if grid:
        paths.append(write_image(os.path.join(outdir, "grid.png"), image_grid(np.stack(images))))
    logging.info("wrote %d file(s) to %s", len(paths), outdir)
    return paths


def _dlatents(Gs, seeds, labels, kwargs):
    """Truncated W+ [len(seeds), num_layers, w_dim] as the synthesis network receives them."""
    z = np.concatenate([seed_inputs(Gs, s)[0] for s in seeds])
    lab = None if labels is None else np.repeat(labels, len(seeds), axis=0)
    return Gs.run(z, lab, return_dlatents=True, **kwargs)[1]


def style_mixing_figure(Gs, row_seeds, col_seeds, col_styles, truncation_psi=None, noise_mode="const",
                        outdir=".", class_idx=None, truncation_cutoff=None):
    """NVIDIA's style-mixing figure, written as ``stylemix.png``.

    The top row shows the column seeds, the left column the row seeds; cell (r, c) is row seed r's
    W+ with the layers in ``col_styles`` (default coarse: 0-3) taken from column seed c.
    Noise ('random' mode) is drawn from the first row seed.
    """
    labels = _labels(Gs, class_idx)
    kwargs = _trunc_kwargs(truncation_psi, truncation_cutoff)
    w_rows, w_cols = _dlatents(Gs, row_seeds, labels, kwargs), _dlatents(Gs, col_seeds, labels, kwargs)
    num_layers = w_rows.shape[1]
    bad = [s for s in col_styles if not 0 <= s < num_layers]
    if bad:
        raise StyleGANTLError(f"--mixing_styles: layers {bad} out of range 0..{num_layers - 1}")
    mixed = np.repeat(w_rows, len(col_seeds), axis=0)  # row-major: (r, c)
    mixed[:, col_styles] = np.tile(w_cols, [len(row_seeds), 1, 1])[:, col_styles]
    _, overrides = seed_inputs(Gs, row_seeds[0], noise_mode)
    synthesis = Gs.components.synthesis
    with temporarily_set(Gs, overrides):
        render = lambda w: _to_uint8(synthesis.run(w, randomize_noise=False, minibatch_size=4))
        rows, cols, cells = render(w_rows), render(w_cols), render(mixed)
    _, h, w, c = rows.shape
    canvas = np.zeros([(len(row_seeds) + 1) * h, (len(col_seeds) + 1) * w, c], np.uint8)
    canvas[:h, w:] = image_grid(cols, cols=len(col_seeds))
    canvas[h:, :w] = image_grid(rows, cols=1)
    canvas[h:, w:] = image_grid(cells, cols=len(col_seeds))
    path = write_image(os.path.join(outdir, "stylemix.png"), canvas)
    logging.info("wrote %s", path)
    return path


def interpolation_gif(Gs, seeds, frames, space="z", truncation_psi=None, noise_mode="const", outdir=".",
                      class_idx=None, truncation_cutoff=None, frame_ms=40):
    """A looping GIF ``interpolation.gif`` through the seeds (back to the first), ``frames`` per step.

    space 'z': spherical interpolation of the latents, each frame through ``Gs.run`` (with truncation);
    space 'w': linear interpolation of the truncated W+, each frame through the synthesis network.
    Noise ('random' mode) is drawn from the first seed.
    """
    if len(seeds) < 2 or frames < 1:
        raise StyleGANTLError("--interpolate needs at least 2 seeds and FRAMES >= 1")
    if space not in ("z", "w"):
        raise StyleGANTLError(f"--interp_space={space!r}: expected 'z' or 'w'")
    labels = _labels(Gs, class_idx)
    kwargs = _trunc_kwargs(truncation_psi, truncation_cutoff)
    keys = (np.concatenate([seed_inputs(Gs, s)[0] for s in seeds]) if space == "z"
            else _dlatents(Gs, seeds, labels, kwargs))
    _, overrides = seed_inputs(Gs, seeds[0], noise_mode)
    out = []
    total, progress = len(seeds) * frames, StatusLine()
    with temporarily_set(Gs, overrides):
        for i in range(len(seeds)):
            a, b = keys[i:i + 1], keys[(i + 1) % len(seeds)][np.newaxis]
            for k in range(frames):
                t = k / frames
                if space == "z":
                    images = Gs.run(slerp(a, b, t).astype(np.float32), labels, **kwargs)
                else:
                    images = Gs.components.synthesis.run(a + (b - a) * t, randomize_noise=False)
                out.append(_to_uint8(images)[0])
                progress.count(len(out), total, "frames")
    path = save_gif(out, os.path.join(outdir, "interpolation.gif"), frame_ms)
    logging.info("wrote %s", path)
    return path


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags():
    """Define the command-line flags (only when run as a program, so importing this module is free)."""
    flags.DEFINE_string("network", None, "Generator pickle: path, URL or official name "
                        "(e.g. stylegan2-church-config-f).")
    flags.DEFINE_string("seeds", "0-7", "Seeds, e.g. '0-7' or '1,5,9'.")
    flags.DEFINE_float("truncation_psi", None, "Truncation psi (default: the network's own default).")
    flags.DEFINE_integer("truncation_cutoff", None, "Truncate only the first N layers (default: the network's).")
    flags.DEFINE_string("outdir", "generated", "Output directory.")
    flags.DEFINE_bool("grid", False, "Also write grid.png with all images.")
    flags.DEFINE_string("noise_mode", "const", "const: stored noise; random: noise drawn from each seed; "
                        "none: no noise.")
    flags.DEFINE_integer("interpolate", None, "Write interpolation.gif with FRAMES frames between seeds.")
    flags.DEFINE_string("interp_space", "z", "Interpolate latents z (slerp) or W+ (w, lerp).")
    flags.DEFINE_integer("frame_ms", 40, "GIF frame duration in milliseconds.")
    flags.DEFINE_bool("mixing", False, "Write stylemix.png (rows x cols seeds).")
    flags.DEFINE_string("mixing_rows", None, "Row seeds of the style-mixing figure (default: --seeds).")
    flags.DEFINE_string("mixing_cols", None, "Column seeds, which give the mixed styles (default: --seeds).")
    flags.DEFINE_string("mixing_styles", "0-3", "Layers taken from the column seeds (default coarse: 0-3).")
    flags.DEFINE_integer("class", None, "Class index for conditional networks.")


def _load_generator(spec):
    from .network import load_network_pkl

    G, _, Gs = load_network_pkl(spec)
    if Gs is None and G is None:
        raise StyleGANTLError(f"{spec}: the pickle holds no generator")
    return Gs if Gs is not None else G


def run_from_flags():
    """Everything the command line asks for; returns the line to print."""
    if not FLAGS.network:
        raise StyleGANTLError("--network is required (pickle path, URL or official name)")
    seeds = parse_seeds(FLAGS.seeds)
    if FLAGS.noise_mode not in NOISE_MODES:
        raise StyleGANTLError(f"--noise_mode={FLAGS.noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    if FLAGS.interp_space not in ("z", "w"):
        raise StyleGANTLError(f"--interp_space={FLAGS.interp_space!r}: expected 'z' or 'w'")
    Gs = _load_generator(FLAGS.network)
    common = dict(truncation_psi=FLAGS.truncation_psi, truncation_cutoff=FLAGS.truncation_cutoff,
                  noise_mode=FLAGS.noise_mode, outdir=FLAGS.outdir, class_idx=FLAGS["class"].value)
    paths = generate_images(Gs, seeds, grid=FLAGS.grid, **common)
    if FLAGS.mixing:
        rows = parse_seeds(FLAGS.mixing_rows) if FLAGS.mixing_rows else seeds
        cols = parse_seeds(FLAGS.mixing_cols) if FLAGS.mixing_cols else seeds
        styles = parse_int_list(FLAGS.mixing_styles, "--mixing_styles")
        paths.append(style_mixing_figure(Gs, rows, cols, styles, **common))
    if FLAGS.interpolate is not None:
        paths.append(interpolation_gif(Gs, seeds, FLAGS.interpolate, FLAGS.interp_space,
                                       frame_ms=FLAGS.frame_ms, **common))
    return [f"wrote {len(paths)} file(s) to {FLAGS.outdir}"]


if __name__ == "__main__":
    from superres_tf import conventions

    define_flags()
    conventions.run(run_from_flags)
