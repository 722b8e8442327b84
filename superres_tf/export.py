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

import os
import shutil
import sys

from absl import app, flags

from superres_tf.errors import ConfigError, SuperResError


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

    tmp = _temporary_folder(outdir)
    root = tf.Module()
    root.model = model
    enhance = enhance_function(model)
    try:
        tf.saved_model.save(root, tmp, signatures={"enhance": enhance.get_concrete_function()})
        if os.path.isdir(outdir):
            os.rmdir(outdir)  # empty, checked above
        os.replace(tmp, outdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # ours; gone already when renamed
    return outdir


def _temporary_folder(outdir):
    """Refuse an existing non-empty ``outdir`` (ConfigError); the temporary folder to save into."""
    if os.path.exists(outdir) and (not os.path.isdir(outdir) or os.listdir(outdir)):
        raise ConfigError(f"{outdir}: already exists and is not an empty folder (choose a new --outdir)")
    parent = os.path.dirname(os.path.abspath(outdir))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{outdir}: cannot create the output folder ({error.strerror})") from None
    return os.path.join(parent, f".{os.path.basename(os.path.abspath(outdir))}.tmp{os.getpid()}")


FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags (defined only when run as a script, so importing adds none)."""
    flags.DEFINE_string("model", None, "Model (.keras); default: the embedded x4 model.")
    flags.DEFINE_string("outdir", None, "New folder for the SavedModel.")


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    if not FLAGS.outdir:
        print("error: --outdir is required (a new folder for the SavedModel)", file=sys.stderr)
        sys.exit(2)
    try:
        _temporary_folder(FLAGS.outdir)  # a used folder is refused before TensorFlow starts
        from superres_tf.enhance import DEFAULT_MODEL
        from superres_tf.unet import load_model

        export_sr_model(load_model(FLAGS.model or DEFAULT_MODEL), FLAGS.outdir)
    except SuperResError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote SavedModel {FLAGS.outdir} (signature: enhance)")


def _parse_flags(argv):
    """absl flag parsing with the project's error convention (``error: ...``, exit 2)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=_parse_flags)
