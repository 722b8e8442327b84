"""Benchmark super-resolution inference on this machine.

  nice -n 10 python bench/bench_superres.py [--model=M.keras] [--size_4k=3840x2160]

Measures, in one run:
  * the machine's convolution throughput: GFLOP/s of a large 3x3 conv (NHWC, float32);
  * the model's FLOPs per output pixel (conv layers counted analytically: 2 k^2 Cin Cout per
    output position of each conv; everything else is negligible);
  * enhance speed for a 512x512 input (tiles of 256, overlap 32): output megapixels per second and
    the fraction of the measured conv throughput the model reaches, counting only useful work
    (the 3x3 tiles that cover 512 px with overlap recompute 2.25x the pixels), and the same for the
    bare network on one 256x256 tile;
  * peak resident memory (VmHWM) of a fresh process enhancing a 3840x2160 uint8 image, next to the
    peak RSS of the same process after only loading TensorFlow and the model.
Prints a Markdown table.
"""

import os
import subprocess
import sys
import time

import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from superres_tf import conventions  # noqa: E402


def conv_gflops(repeats=10):
    """GFLOP/s of a [1, 256, 256, 64] x 3x3x64x64 'same' conv (float32, NHWC), best of `repeats`."""
    import tensorflow as tf
    x = tf.random.stateless_uniform((1, 256, 256, 64), seed=(0, 0))
    w = tf.random.stateless_uniform((3, 3, 64, 64), seed=(0, 1))
    conv = tf.function(lambda a, b: tf.nn.conv2d(a, b, 1, "SAME"))
    conv(x, w).numpy()
    best = min(_timed(lambda: conv(x, w).numpy()) for _ in range(repeats))
    return 2 * 256 * 256 * 64 * 64 * 9 / best / 1e9


def _timed(fn):
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_output_pixel(model, side=64):
    """Analytic conv FLOPs per output pixel of an NHWC model (probe input side x side)."""
    import keras
    from superres_tf.unet import all_layers
    convs = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.Conv2D)]
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    outputs = probe([np.zeros((1, side, side, 3), np.float32)])
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    total = 0
    for layer, out in zip(convs, outputs):
        kh, kw, cin, cout = layer.kernel.shape
        total += 2 * kh * kw * cin * cout * out.shape[1] * out.shape[2]
    out_side = model.compute_output_shape((1, side, side, 3))[1]
    return total / out_side ** 2


def enhance_speed(model, side=512, repeats=3):
    """(output megapixels per second, seconds per image) of enhance_image on a side x side input."""
    from superres_tf.enhance import enhance_image, model_scale
    image = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
    enhance_image(model, image)
    best = min(_timed(lambda: enhance_image(model, image)) for _ in range(repeats))
    return (side * model_scale(model)) ** 2 / best / 1e6, best


def network_gflops(model, per_pixel, side=256, repeats=3):
    """GFLOP/s of the bare network on one side x side tile (no tiling, blending or conversion)."""
    tile = np.random.default_rng(0).random((1, side, side, 3)).astype(np.float32)
    model(tile)
    best = min(_timed(lambda: np.asarray(model(tile))) for _ in range(repeats))
    out_side = model.compute_output_shape((1, side, side, 3))[1]
    return out_side ** 2 * per_pixel / best / 1e9


def child_peak_rss(model_path, width, height, enhance):
    """Peak RSS (MiB) and seconds of a fresh process that loads the model and maybe enhances.

    Reads VmHWM of /proc/self/status: unlike ru_maxrss it is not inherited from the forking parent.
    """
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "\n".join([
        "import sys, time, numpy as np",
        f"sys.path.insert(0, {repo!r})",
        "from superres_tf.unet import load_model",
        "from superres_tf.enhance import enhance_image",
        f"model = load_model({model_path!r})",
        "start = time.perf_counter()",
        f"out = enhance_image(model, np.full(({height}, {width}, 3), 128, np.uint8)) if {enhance} else None",
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]",
        "print(int(peak) / 1024, time.perf_counter() - start)"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, seconds = result.stdout.split()[-2:]
    return float(rss), float(seconds)


FLAGS = flags.FLAGS


def define_flags():
    """Flags of the benchmark script."""
    from superres_tf.enhance import DEFAULT_MODEL
    flags.DEFINE_string("model", DEFAULT_MODEL, "Model to benchmark (.keras).")
    flags.DEFINE_string("size_4k", "3840x2160", "Input size (WxH) of the memory measurement.")
    flags.DEFINE_bool("skip_4k", False, "Skip the (long) large-image memory measurement.")


def main():
    from superres_tf.enhance import model_scale
    from superres_tf.unet import load_model
    model = load_model(FLAGS.model)
    scale = model_scale(model)
    gflops = conv_gflops()
    per_pixel = flops_per_output_pixel(model)
    mpix, seconds = enhance_speed(model)
    achieved = mpix * 1e6 * per_pixel / 1e9
    bare = network_gflops(model, per_pixel)
    rows = [("model", f"{os.path.basename(FLAGS.model)} (x{scale}, {model.count_params():,} parameters)"),
            ("conv throughput (3x3, 64->64, 256x256)", f"{gflops:.1f} GFLOP/s"),
            ("model FLOPs per output pixel", f"{per_pixel / 1e3:.1f} kFLOP"),
            ("enhance 512x512 -> x%d (tile 256, overlap 32)" % scale,
             f"{seconds:.2f} s, {mpix:.2f} output MP/s"),
            ("useful model FLOP/s in that enhance (output pixels x FLOPs per pixel)",
             f"{achieved:.1f} GFLOP/s = {achieved / gflops:.0%} of the conv"),
            ("bare network on one 256x256 tile", f"{bare:.1f} GFLOP/s = {bare / gflops:.0%} of the conv"),
            ]
    if not FLAGS.skip_4k:
        width, height = (int(v) for v in FLAGS.size_4k.split("x"))
        base_rss, _ = child_peak_rss(FLAGS.model, width, height, enhance=False)
        peak_rss, big_seconds = child_peak_rss(FLAGS.model, width, height, enhance=True)
        out_mib = width * height * scale * scale * 3 / 2 ** 20
        rows.append((f"peak RSS, {width}x{height} uint8 -> x{scale}",
                     f"{peak_rss:.0f} MiB (TF + model alone: {base_rss:.0f} MiB; the uint8 output "
                     f"itself: {out_mib:.0f} MiB), {big_seconds:.0f} s"))
    yield "| measurement | value |\n|---|---|"
    for name, value in rows:
        yield f"| {name} | {value} |"


if __name__ == "__main__":
    define_flags()
    conventions.run(main)
