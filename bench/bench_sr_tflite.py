"""Does the super-resolution SavedModel convert to TFLite, and how fast is it next to Keras?

  nice -n 10 python bench/bench_sr_tflite.py [--model=M.keras] [--sizes=64,128,256] [--repeats=5]

1. Exports the model with ``superres_tf.export`` (signature ``enhance``) and converts the
   SavedModel with ``tf.lite.TFLiteConverter.from_saved_model``: with TFLite's built-in ops only,
   then with the TensorFlow-op fallback (``SELECT_TF_OPS``, the "Flex" delegate). Reports which
   ops stop the built-in conversion and whether Python's ``tf.lite.Interpreter`` runs the result.
   (Keras 3 variables stay resource variables in ``from_saved_model``'s output, so the weights are
   missing from that file; the conversions below freeze them first.)
2. Speed: the ``enhance`` function with its variables frozen into constants
   (``convert_variables_to_constants_v2``) converted with built-in ops only. The U-Net's global
   residual uses ``tf.image.resize(bicubic)``, which TFLite has no built-in for; for this
   measurement it is traced as ``bilinear`` (a built-in, ``RESIZE_BILINEAR``): the same network
   and the same amount of work, slightly different outputs (their largest difference to Keras is
   printed). Times one image per size (the centre of an embedded photo), best of ``--repeats``
   after one warm-up: the Keras model (``predict_on_batch``, compiled), the SavedModel signature
   and the TFLite interpreter (XNNPACK, ``num_threads`` = CPU count).
Prints the findings and a Markdown table.
"""

import contextlib
import os
import re
import sys
import tempfile
import time

import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from superres_tf import conventions  # noqa: E402

flags.DEFINE_string("model", None, "Model (.keras); default: the embedded x4 model.")
flags.DEFINE_list("sizes", ["64", "128", "256"], "Input sides (px).")
flags.DEFINE_integer("repeats", 5, "Timed runs per cell (best is reported).")
FLAGS = flags.FLAGS


def _best(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _runner(flat):
    """f(images [1, H, W, 3]) -> output of a converted single-input, single-output model."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flat, num_threads=os.cpu_count())
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def run(images):
        if list(interpreter.get_input_details()[0]["shape"]) != list(images.shape):
            interpreter.resize_tensor_input(source, images.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(source, images)
        interpreter.invoke()
        return interpreter.get_tensor(target)
    return run


def _photo(side):
    """[1, side, side, 3] float32 in [0, 1]: the centre of an embedded photo, resized."""
    from PIL import Image

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "samples",
                        "landscapes", "creek.jpg")
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((side, side), Image.LANCZOS)
    return (np.asarray(rgb, np.float32) / 255.0)[np.newaxis]


def _converted(make, ops):
    """(flatbuffer bytes or None, the converter's 'neither a custom op nor a flex op' lines)."""
    converter = make()
    converter.target_spec.supported_ops = ops
    try:
        return converter.convert(), []
    except Exception as error:  # ConverterError and friends
        ops = re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", str(error))
        return None, sorted(set(ops)) or [str(error).strip().splitlines()[-1]]


@contextlib.contextmanager
def _bilinear_residual():
    """Trace BicubicUpsample as bilinear (a TFLite built-in) inside the block."""
    import tensorflow as tf

    from superres_tf import unet

    original = unet.BicubicUpsample.call

    def call(self, inputs):
        return tf.image.resize(inputs, tf.shape(inputs)[1:3] * self.factor, method="bilinear")

    unet.BicubicUpsample.call = call
    try:
        yield
    finally:
        unet.BicubicUpsample.call = original


def main():
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from superres_tf.enhance import DEFAULT_MODEL
    from superres_tf.export import enhance_function, export_sr_model
    from superres_tf.unet import load_model

    model = load_model(FLAGS.model or DEFAULT_MODEL)
    folder = os.path.join(tempfile.mkdtemp(prefix="sr_tflite_"), "saved")
    export_sr_model(model, folder)
    builtins, flex = [tf.lite.OpsSet.TFLITE_BUILTINS], [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    from_saved = lambda: tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["enhance"])  # noqa: E731
    _, why = _converted(from_saved, builtins)
    yield f"SavedModel, built-in ops only: fails on {why}"
    frozen = convert_variables_to_constants_v2(enhance_function(model).get_concrete_function())
    flat, _ = _converted(lambda: tf.lite.TFLiteConverter.from_concrete_functions([frozen]), flex)
    ops = sorted({d["op_name"] for d in tf.lite.Interpreter(model_content=flat)._get_ops_details()})
    yield (f"frozen, built-ins + SELECT_TF_OPS: converts, {len(flat) / 1e6:.2f} MB, "
          f"TF ops kept: {[op for op in ops if op.startswith('Flex')]}")
    try:
        _runner(flat)(np.zeros([1, 16, 16, 3], np.float32))
        yield "  Python's tf.lite.Interpreter runs it"
    except RuntimeError as error:
        yield f"  Python's tf.lite.Interpreter cannot run it: {str(error).splitlines()[0][:160]}"
    with _bilinear_residual():
        bilinear = convert_variables_to_constants_v2(enhance_function(model).get_concrete_function())
    started = time.perf_counter()
    flat, why = _converted(lambda: tf.lite.TFLiteConverter.from_concrete_functions([bilinear]), builtins)
    yield (f"frozen, bilinear residual, built-in ops only: {len(flat) / 1e6:.2f} MB in "
          f"{time.perf_counter() - started:.1f} s")
    runner = _runner(flat)
    saved = tf.saved_model.load(folder).signatures["enhance"]
    yield ("\n| input -> output | Keras `predict_on_batch` | SavedModel `enhance` | TFLite (bilinear residual) "
          "| TFLite / Keras | max abs diff TFLite vs Keras |")
    yield "|---|---|---|---|---|---|"
    for side in (int(s) for s in FLAGS.sizes):
        x = _photo(side)
        keras_out = np.clip(model(x, training=False).numpy(), 0, 1)
        lite_out = runner(x)
        t_keras = _best(lambda: model.predict_on_batch(x), FLAGS.repeats)
        t_saved = _best(lambda: saved(images=tf.constant(x))["images"].numpy(), FLAGS.repeats)
        t_lite = _best(lambda: runner(x), FLAGS.repeats)
        yield (f"| {side} -> {side * 4} px | {t_keras * 1000:.0f} ms | {t_saved * 1000:.0f} ms | "
              f"{t_lite * 1000:.0f} ms | {t_lite / t_keras:.2f} | {np.abs(lite_out - keras_out).max():.3f} |")


if __name__ == "__main__":
    conventions.run(main)
