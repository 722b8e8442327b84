"""A super-resolution model as a TF SavedModel with a dynamic-size ``enhance`` signature.

Command line (see docs/export.md)::

    python -m superres_tf.export --model=M.keras --outdir=DIR     # default model: the embedded x4

Signature::

    enhance(images [N, H, W, 3] float32 RGB in [0, 1], any H, W >= 4)
        -> images [N, s*H, s*W, 3] float32 in [0, 1]

Inside: symmetric padding of the bottom/right edges to the model's multiple, the model, a crop
back to ``s*H x s*W`` and a clip to [0, 1] -- what :func:`superres_tf.enhance.enhance_image` does
for an image that fits in one tile. The whole image goes through the network at once (no tiling),
so memory grows with the image: tile large images on the client side. Loading needs TensorFlow
only (``tf.saved_model.load``), not this package or Keras' custom layers.

Python API::

    export_sr_model(model, 'exported_sr/')
"""

from absl import flags

from superres_tf import files
from superres_tf.errors import ConfigError


def enhance_function(model):
    """The ``enhance`` tf.function of ``model`` (NHWC [0, 1] -> s times larger, clipped)."""
    import tensorflow as tf

    from superres_tf.unet import model_multiple

    multiple = model_multiple(model)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def enhance(images):
        batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
        pad_h, pad_w = -height % multiple, -width % multiple
        padded = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC")
        # The reshape keeps the 3 channels known to converters (TFLite's built-in conv needs them).
        padded = tf.reshape(padded, [batch, height + pad_h, width + pad_w, 3])
        out = model(padded, training=False)
        scale = tf.shape(out)[1] // tf.shape(padded)[1]
        return {"images": tf.clip_by_value(out[:, :height * scale, :width * scale], 0.0, 1.0)}

    return enhance


def export_sr_model(model, outdir):
    """Write ``model`` (a Keras image-to-image model) as a SavedModel in the new folder ``outdir``.

    Written under a temporary name and renamed when complete; an existing non-empty ``outdir``
    is refused (ConfigError). Returns ``outdir``.
    """
    import tensorflow as tf

    root = tf.Module()
    root.model = model
    enhance = enhance_function(model)
    with files.new_folder(outdir, ConfigError) as tmp:
        tf.saved_model.save(root, tmp, signatures={"enhance": enhance.get_concrete_function()})
    return outdir


FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags (defined only when run as a script, so importing adds none)."""
    flags.DEFINE_string("model", None, "Model (.keras); default: the embedded x4 model.")
    flags.DEFINE_string("outdir", None, "New folder for the SavedModel.")


def run_from_flags():
    """Export the model the flags name; returns the lines to print."""
    if not FLAGS.outdir:
        raise ConfigError("--outdir is required (a new folder for the SavedModel)")
    files.check_new_folder(FLAGS.outdir, ConfigError)  # a used folder is refused before TensorFlow starts
    from superres_tf.enhance import DEFAULT_MODEL
    from superres_tf.unet import load_model

    export_sr_model(load_model(FLAGS.model or DEFAULT_MODEL), FLAGS.outdir)
    return [f"wrote SavedModel {FLAGS.outdir} (signature: enhance)"]


if __name__ == "__main__":
    from superres_tf import conventions

    define_flags()
    conventions.run(run_from_flags)
