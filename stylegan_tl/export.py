"""A generator as a TF SavedModel: served by TF Serving, TF.js or TFLite without this package.

Command line (see docs/export.md)::

    python -m stylegan_tl.export --network=PKL_OR_NAME --outdir=DIR

Signatures (batch size free; ``Z`` = latent size, ``L`` = label size, 0 for unconditional networks,
``K`` = number of W+ entries, ``Dw`` = W size, ``C, R`` = channels and resolution)::

    generate(z [N, Z], labels [N, L], truncation_psi [], noise_mode [] string)
        -> images [N, C, R, R] float32 in [-1, 1] (NCHW, as Gs.run), images_uint8 [N, R, R, C]
    mapping(z [N, Z], labels [N, L]) -> w [N, K, Dw]           (no truncation, as components.mapping)
    synthesis(w [N, K, Dw]) -> images, images_uint8             (stored noise, as components.synthesis)

``truncation_psi`` truncates the layers the network's own ``truncation_cutoff`` names (v1: the
first 8; v2/ADA: all), 1 = off; ``noise_mode`` is ``const`` (the stored noise inputs), ``random``
(fresh noise per call) or ``none`` (no noise), as ``stylegan_tl.generate``. The graph is traced on
the pure-TF reference ops (``STYLEGAN_TL_OPS=ref``), so it holds no op of our compiled library;
:func:`custom_ops_in` checks a saved model for them.

Python API::

    export_generator(Gs, 'exported/')          # Gs: a stylegan_tl Network
"""

import contextlib
import os

from absl import flags, logging
from superres_tf import files

from .errors import StyleGANTLError
from .generate import NOISE_MODES, _NOISE_STRENGTH

CUSTOM_OP_PREFIX = "StyleganTl"  # op types registered by stylegan_tl/ops/kernels


@contextlib.contextmanager
def _reference_ops():
    """Trace with the pure-TF ops whatever ``STYLEGAN_TL_OPS`` says (restored afterwards)."""
    from .ops.impl import ENV_MODE

    old = os.environ.get(ENV_MODE)
    os.environ[ENV_MODE] = "ref"
    try:
        yield
    finally:
        if old is None:
            del os.environ[ENV_MODE]
        else:
            os.environ[ENV_MODE] = old


def _references(obj, targets, seen=None):
    """(container, key, variable) of every reference to a variable of ``targets`` ({id: variable})
    below tf.Module ``obj``: module attributes, dict entries and list items, searched recursively."""
    import tensorflow as tf

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, tf.Module):
        items = list(vars(obj).items())
    elif isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, (list, tuple)):
        items = list(enumerate(obj))
    else:
        return []
    found = []
    for key, value in items:
        if id(value) in targets and not isinstance(obj, tuple):
            found.append((obj, key, value))
        elif isinstance(value, (tf.Module, dict, list, tuple)):
            found += _references(value, targets, seen)
    return found


def _put(container, key, value):
    import tensorflow as tf

    if isinstance(container, tf.Module):
        setattr(container, key, value)
    else:
        container[key] = value


@contextlib.contextmanager
def _without_noise(Gs):
    """While tracing, every noise weight of ``Gs`` reads as a constant 0 (noise_mode 'none').

    Variables are not assigned (a served model may run requests concurrently): the architecture's
    references to them are swapped for zero constants during the trace, then put back.
    """
    import tensorflow as tf

    weights = {id(v): v for name, v in Gs.vars.items() if _NOISE_STRENGTH.search(name)}
    refs = _references(Gs.module, weights)
    if {id(var) for _, _, var in refs} != set(weights):
        raise StyleGANTLError(f"export: cannot find where {Gs.name} reads its noise weights; noise_mode 'none' "
                              "cannot be traced")
    try:
        for container, key, var in refs:
            _put(container, key, tf.zeros(var.shape, var.dtype))
        yield
    finally:
        for container, key, var in refs:
            _put(container, key, var)


def _to_uint8_nhwc(images):
    """NCHW [-1, 1] -> NHWC uint8 exactly as ``convert_images_to_uint8`` (round half up, saturate)."""
    import tensorflow as tf

    x = tf.transpose(images, [0, 2, 3, 1]) * 127.5 + 128.0
    return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)


def _signatures(Gs):
    """The generate / mapping / synthesis concrete functions of ``Gs`` (traced on the reference ops)."""
    import tensorflow as tf

    z_dim, label_size = Gs.input_shapes[0][1], Gs.input_shapes[1][1]
    _, num_ws, w_dim = Gs.components.synthesis.input_shape
    z = tf.TensorSpec([None, z_dim], tf.float32, name="z")
    labels = tf.TensorSpec([None, label_size], tf.float32, name="labels")
    psi = tf.TensorSpec([], tf.float32, name="truncation_psi")
    w = tf.TensorSpec([None, num_ws, w_dim], tf.float32, name="w")

    def images_out(images):
        return {"images": images, "images_uint8": _to_uint8_nhwc(images)}

    def generate_with(noise_mode):
        def generate(z, labels, truncation_psi):
            return images_out(Gs.module(z, labels, truncation_psi=truncation_psi,
                                        randomize_noise=noise_mode == "random"))
        return tf.function(generate, autograph=False)

    def generate(z, labels, truncation_psi, noise_mode):
        hits = tf.cast(tf.equal(tf.constant(list(NOISE_MODES)), noise_mode), tf.int32)
        check = tf.debugging.assert_equal(tf.reduce_sum(hits), 1,
                                          message=f"noise_mode must be one of {', '.join(NOISE_MODES)}")
        with tf.control_dependencies([check]):
            index = tf.argmax(hits, output_type=tf.int32)
        return tf.switch_case(index, [lambda f=f: f(z, labels, truncation_psi) for f in by_mode])

    with _reference_ops():
        by_mode = []
        for mode in NOISE_MODES:
            with _without_noise(Gs) if mode == "none" else contextlib.nullcontext():
                by_mode.append(generate_with(mode).get_concrete_function(z, labels, psi))
        return {
            "generate": tf.function(generate, autograph=False).get_concrete_function(
                z, labels, psi, tf.TensorSpec([], tf.string, name="noise_mode")),
            "mapping": tf.function(lambda z, labels: {"w": Gs.components.mapping.module(z, labels)},
                                   autograph=False).get_concrete_function(z, labels),
            "synthesis": tf.function(lambda w: images_out(Gs.components.synthesis.module(w, randomize_noise=False)),
                                     autograph=False).get_concrete_function(w),
        }


def custom_ops_in(saved_model_dir):
    """Op types of our compiled library found anywhere in a SavedModel's graphs (empty = none)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    found = set()
    for graph in proto.meta_graphs:
        nodes = list(graph.graph_def.node)
        for function in graph.graph_def.library.function:
            nodes += list(function.node_def)
        found.update(n.op for n in nodes if n.op.startswith(CUSTOM_OP_PREFIX))
    return found


def export_generator(Gs, outdir):
    """Write ``Gs`` (a generator ``Network``, any family) as a SavedModel in the new folder ``outdir``.

    The folder is written under a temporary name and renamed when complete; an existing non-empty
    ``outdir`` is refused. Returns ``outdir``.
    """
    import tensorflow as tf

    files.check_new_folder(outdir, StyleGANTLError)
    signatures = _signatures(Gs)
    root = tf.Module()
    root.generator_variables = list(Gs.vars.values())  # what the signatures capture
    with files.new_folder(outdir, StyleGANTLError) as tmp:
        with _reference_ops():
            tf.saved_model.save(root, tmp, signatures=signatures)
        found = custom_ops_in(tmp)
        if found:
            raise StyleGANTLError(f"{outdir}: the traced graph uses compiled ops {sorted(found)}; not written")
    logging.info("wrote SavedModel %s (signatures %s)", outdir, ", ".join(signatures))
    return outdir


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags():
    """Define the command-line flags (only when run as a program)."""
    flags.DEFINE_string("network", None, "Generator pickle: path, URL or official name.")
    flags.DEFINE_string("outdir", None, "New folder for the SavedModel.")


def run_from_flags():
    """Export the generator the flags name; returns the lines to print."""
    from .generate import _load_generator

    if not FLAGS.network:
        raise StyleGANTLError("--network is required (pickle path, URL or official name)")
    if not FLAGS.outdir:
        raise StyleGANTLError("--outdir is required (a new folder for the SavedModel)")
    files.check_new_folder(FLAGS.outdir, StyleGANTLError)  # a used folder is refused before the network is loaded
    export_generator(_load_generator(FLAGS.network), FLAGS.outdir)
    return [f"wrote SavedModel {FLAGS.outdir} (signatures: generate, mapping, synthesis)"]


if __name__ == "__main__":
    from superres_tf import conventions

    define_flags()
    conventions.run(run_from_flags)
