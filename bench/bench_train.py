"""Fine-tuning throughput: training images per second and sec/kimg on this machine.

Usage: ``nice -n 10 python bench/bench_train.py [--steps=3] [--impls=ref,custom] [--quick] [--precisions=fp32,fp16]``

Configurations: fixture C (StyleGAN2 16 px, fmap_base 128) at batch 8, the demo's starting network
(``data/models/``, StyleGAN2 32 px) at batch 16 and a StyleGAN2 config-f layout at 256 px (``create_networks('stylegan2', 256)``, NVIDIA's defaults: fmap_base 16384, 8 mapping
layers) at batch 4, both on random images. Each ops implementation runs in its own subprocess with
``STYLEGAN_TL_OPS=<impl>``. The training phases of :class:`stylegan_tl.train.Trainer` are traced
once, then timed over ``--steps`` calls each: D step, G step, G EMA, the R1 step (run every 16
minibatches) and the path-length step (every 4). One minibatch costs
``D + G + EMA + R1/16 + PL/4`` (NVIDIA's lazy regularisation), from which images/s and sec/kimg
follow. ``fp16`` computes the 4 highest resolutions of G and D in float16 (ADA's mixed precision,
conv clamp 256, loss scaling). This measures, it does not train. Prints one markdown table.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
from absl import flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from superres_tf import conventions  # noqa: E402

FLAGS = flags.FLAGS
CONFIGS = {
    "fixture C (v2 16 px, fmap 128)": dict(pkl=str(ROOT / "tests/fixtures/C_v2_orig_orig_r16/network.pkl"), batch=8),
    "demo start (v2 32 px, fmap 128)": dict(pkl=str(ROOT / "data/models/landscapes32-stylegan2.pkl"), batch=16),
    "stylegan2 config-f 256 px": dict(family="stylegan2", resolution=256, batch=4),
}


def _median_seconds(fn, steps):
    fn()  # trace / warm up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def worker(label, steps, precision):
    """Time one configuration with the ops implementation chosen by the environment; returns the
    line ``RESULT<json>``."""
    import tensorflow as tf

    from stylegan_tl.dataset import ImageArray, make_tf_dataset
    from stylegan_tl.network import create_networks, load_network_pkl
    from stylegan_tl.recipe import Options, resolve
    from stylegan_tl.train import Trainer, apply_recipe

    cfg = CONFIGS[label]
    strategy = tf.distribute.get_strategy()
    if "pkl" in cfg:
        G, D, Gs = load_network_pkl(cfg["pkl"])
    else:
        G, D, Gs = create_networks(cfg["family"], cfg["resolution"])
    res, batch = int(G.static_kwargs["resolution"]), cfg["batch"]
    opts = Options(data="-", outdir="-", batch=batch, gamma=10.0, aug="noaug", fp16=precision == "fp16",
                   mbstd_group=min(batch, 4))
    recipe = resolve(opts, G, D, 1, cfg.get("pkl"), False)
    apply_recipe(G, D, recipe)
    trainer = Trainer(G, D, Gs, strategy, recipe)
    images = np.random.default_rng(0).integers(0, 256, (batch, 3, res, res), dtype=np.uint8)
    reals, labels = next(iter(make_tf_dataset(ImageArray(images, np.zeros((batch, 0), np.float32), "random"), batch)))
    step, p = tf.constant(0, tf.int64), tf.constant(0.0)
    t = dict(d=_median_seconds(lambda: trainer.d_main(reals, labels, step, p)["d_loss"].numpy(), steps),
             g=_median_seconds(lambda: trainer.g_main(labels, step, p)["g_loss"].numpy(), steps),
             ema=_median_seconds(lambda: trainer.ema(tf.constant(0.999)), steps),
             r1=_median_seconds(lambda: trainer.d_reg(reals, labels, step, p)["r1"].numpy(), steps),
             pl=_median_seconds(lambda: trainer.g_reg(labels, step)["pl_penalty"].numpy(), steps))
    per_batch = t["d"] + t["g"] + t["ema"] + t["r1"] / 16 + t["pl"] / 4
    return "RESULT" + json.dumps(dict(t, batch=batch, per_batch=per_batch))


def define_flags():
    """Flags of the benchmark script."""
    flags.DEFINE_integer("steps", 3, "Timed calls per phase (after one warm-up).")
    flags.DEFINE_list("impls", ["ref", "custom"], "Ops implementations to compare.")
    flags.DEFINE_bool("quick", False, "Tiny configuration only.")
    flags.DEFINE_string("only", "", "Configurations whose label contains this text.")
    flags.DEFINE_list("precisions", ["fp32"], "fp32, fp16 or both.")
    flags.DEFINE_string("worker", None, "(internal) time this configuration in this process.")


def main():
    """The table's lines (each configuration x impl x precision timed in a subprocess)."""
    if FLAGS.worker:
        yield worker(FLAGS.worker, FLAGS.steps, FLAGS.precisions[0])
        return
    labels = [label for label in (list(CONFIGS)[:1] if FLAGS.quick else CONFIGS) if FLAGS.only in label]
    yield "| configuration | ops | precision | batch | D s | G s | R1 s | PL s | s/minibatch | images/s | sec/kimg |"
    yield "|---|---|---|---|---|---|---|---|---|---|---|"
    for label in labels:
        for impl in FLAGS.impls:
            for precision in FLAGS.precisions:
                env = dict(os.environ, STYLEGAN_TL_OPS=impl, TF_CPP_MIN_LOG_LEVEL="2")
                out = subprocess.run([sys.executable, __file__, f"--worker={label}", f"--steps={FLAGS.steps}",
                                      f"--precisions={precision}"], env=env, capture_output=True, text=True)
                if out.returncode != 0 or "RESULT" not in out.stdout:
                    yield f"| {label} | {impl} | {precision} | failed: {out.stderr.strip().splitlines()[-1:]} |||||||"
                    continue
                r = json.loads(out.stdout.split("RESULT", 1)[1])
                yield (f"| {label} | {impl} | {precision} | {r['batch']} | {r['d']:.3f} | {r['g']:.3f} | {r['r1']:.3f} "
                       f"| {r['pl']:.3f} | {r['per_batch']:.3f} | {r['batch'] / r['per_batch']:.2f} "
                       f"| {1000 * r['per_batch'] / r['batch']:.0f} |")


if __name__ == "__main__":
    define_flags()
    conventions.run(main)
