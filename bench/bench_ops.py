"""Benchmark the custom CPU ops against the pure-TF reference on 256 px StyleGAN2 shapes.

Usage: ``nice -n 10 python bench/bench_ops.py [--repeats=7] [--quick]``

Prints one table (best ms per call of interleaved runs, forward and forward+backward, and the
ref / custom ratio), all measured in one run. Results are recorded in BENCHMARKS.md.
"""

import os
import sys
import time

import numpy as np
import tensorflow as tf
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from stylegan_tl import ops  # noqa: E402
from stylegan_tl.ops import build  # noqa: E402
from superres_tf import conventions  # noqa: E402

FLAGS = flags.FLAGS

K = [1, 3, 3, 1]

# (name, input shape, function of (x, impl)).
CASES = [
    ("upsample_2d NHWC", [4, 64, 64, 512],
     lambda x, impl: ops.upsample_2d(x, K, data_format="NHWC", impl=impl)),
    ("upsample_2d NCHW", [4, 512, 64, 64],
     lambda x, impl: ops.upsample_2d(x, K, impl=impl)),
    ("upsample_2d NHWC", [4, 128, 128, 128],
     lambda x, impl: ops.upsample_2d(x, K, data_format="NHWC", impl=impl)),
    ("downsample_2d NHWC", [4, 256, 256, 128],
     lambda x, impl: ops.downsample_2d(x, K, data_format="NHWC", impl=impl)),
    ("downsample_2d NCHW", [4, 128, 256, 256],
     lambda x, impl: ops.downsample_2d(x, K, impl=impl)),
    ("FIR pad 2,2 (conv_downsample_2d) NHWC", [4, 128, 128, 256],
     lambda x, impl: ops.upfirdn_2d(x, np.outer(K, K) / 64, padx0=2, padx1=2, pady0=2, pady1=2,
                                    impl=impl)),
    ("FIR pad 1,1 (upsample_conv_2d) NHWC", [4, 129, 129, 256],
     lambda x, impl: ops.upfirdn_2d(x, np.outer(K, K) / 16, padx0=1, padx1=1, pady0=1, pady1=1,
                                    impl=impl)),
    ("fused_bias_act lrelu NCHW", [4, 512, 32, 32],
     lambda x, impl: ops.fused_bias_act(x, tf.ones([512]), act="lrelu", impl=impl)),
    ("fused_bias_act lrelu NHWC", [4, 128, 128, 256],
     lambda x, impl: ops.fused_bias_act(x, tf.ones([256]), axis=-1, act="lrelu", impl=impl)),
]


def _functions(shape, func, impl):
    """(forward, forward+backward) callables on a fixed random input, traced and warmed up."""
    x = tf.constant(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))

    @tf.function
    def forward(x):
        return tf.reduce_sum(func(x, impl))

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(func(x, impl) ** 2)
        return tape.gradient(y, x)

    fns = (lambda: forward(x).numpy(), lambda: forward_backward(x).numpy())
    for fn in fns:
        fn()
    return fns


def _bench_case(shape, func, repeats):
    """Best-of-``repeats`` ms of [ref fwd, custom fwd, ref f+b, custom f+b], run interleaved so
    that load from other processes hits both implementations alike."""
    ref, custom = _functions(shape, func, "ref"), _functions(shape, func, "custom")
    fns = [ref[0], custom[0], ref[1], custom[1]]
    best = [float("inf")] * 4
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], 1000 * (time.perf_counter() - start))
    return best


def define_flags():
    """Flags of the benchmark script."""
    flags.DEFINE_integer("repeats", 7, "Interleaved runs of each case (the best counts).")
    flags.DEFINE_bool("quick", False, "First case only.")


def main():
    """The table's lines."""
    ops.fused_bias_act(tf.zeros([1, 1]), impl="custom")  # build / load before timing
    yield (f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, library "
           f"{build.loaded_build().path.name}, best of {FLAGS.repeats} (ms, interleaved)")
    header = (f"| {'case':36s} | {'input':18s} | ref fwd | custom fwd | ratio | ref f+b | "
              f"custom f+b | ratio |")
    yield header
    yield "|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|"
    for name, shape, func in CASES[:1] if FLAGS.quick else CASES:
        rf, cf, rb, cb = _bench_case(shape, func, FLAGS.repeats)
        yield (f"| {name:36s} | {str(shape):18s} | {rf:7.1f} | {cf:10.1f} | {rf / cf:5.2f} | "
               f"{rb:7.1f} | {cb:10.1f} | {rb / cb:5.2f} |")


if __name__ == "__main__":
    define_flags()
    conventions.run(main)
