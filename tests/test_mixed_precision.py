"""Mixed precision (ADA's scheme): float16 blocks at the highest resolutions, conv clamp, loss scaling.

Tolerances (CPU): fixture G_ada with float16 at all 4 block resolutions of its 32 px networks gives
images within 0.5 % of their peak magnitude and D scores within 0.01 of float32; one training step
of a small 16 px ADA network (every block in float16) gives losses within 2 % of the float32 step
and at least 90 % of the weight updates with the float32 step's sign (Adam's first step moves every
weight by +-lr, so only the signs of the gradients matter).
"""

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from stylegan_tl.dataset import ImageArray, make_tf_dataset
from stylegan_tl.network import create_networks, load_network_pkl
from stylegan_tl.recipe import Options, resolve
from stylegan_tl.train import Trainer, apply_recipe

FIXTURE_ADA = str(FIXTURES / "G_ada_r32" / "network.pkl")


def _conv_dtypes(fn, *args):
    """Counts of (op type, dtype) of the convolutions in the graph of ``fn(*args)``."""
    graph = tf.function(fn, autograph=False).get_concrete_function(*args).graph
    counts = {}
    for op in graph.get_operations():
        if op.type in ("Conv2D", "Conv2DBackpropInput"):
            key = (op.type, op.get_attr("T").name)
            counts[key] = counts.get(key, 0) + 1
    return counts


def _dlatents_and_images():
    G, D, Gs = load_network_pkl(FIXTURE_ADA)
    z = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    w = Gs.components.mapping.run(z, None)
    return G, D, Gs, tf.constant(w)


def test_float16_outputs_stay_close_to_float32():
    G, D, Gs, w = _dlatents_and_images()
    synthesis = Gs.components.synthesis.module
    run = lambda: tf.function(lambda x: synthesis(x, randomize_noise=False), autograph=False)(w).numpy()
    full = run()
    synthesis.set_precision(4, 256)
    half = run()
    assert np.isfinite(half).all() and 0 < np.abs(half - full).max() <= 0.005 * np.abs(full).max()
    scores_full = D.module(tf.constant(full)).numpy()
    D.module.set_precision(4, 256)
    scores_half = tf.function(lambda x: D.module(x), autograph=False)(tf.constant(full)).numpy()
    assert 0 < np.abs(scores_half - scores_full).max() <= 0.01


def test_set_precision_changes_the_compute_dtype_of_the_highest_resolutions_only():
    G, D, Gs, w = _dlatents_and_images()
    images = tf.zeros([4, 3, 32, 32])
    assert set(k[1] for k in _conv_dtypes(lambda x: D.module(x), images)) == {"float32"}
    D.module.set_precision(2, 256)  # blocks 32x32 and 16x16: FromRGB + (Conv0, Conv1_down, Skip) x 2
    counts = _conv_dtypes(lambda x: D.module(x), images)
    assert counts[("Conv2D", "float16")] == 7 and counts[("Conv2D", "float32")] == 4  # 8x8 block + 4x4/Conv
    synthesis = G.components.synthesis.module
    synthesis.set_precision(2, 256)  # blocks 16x16 and 32x32: Conv0_up (transposed), Conv1, ToRGB each
    counts = _conv_dtypes(lambda x: synthesis(x, randomize_noise=False), w)
    assert counts[("Conv2D", "float16")] == 4 and counts[("Conv2DBackpropInput", "float16")] == 2
    assert counts[("Conv2D", "float32")] == 4 and counts[("Conv2DBackpropInput", "float32")] == 1
    assert all(layer.clamp == 256 for layer in synthesis.clamped_layers + D.module.clamped_layers)


def _one_step(fp16):
    G, D, Gs = create_networks("stylegan2-ada", 16, seed=3, D_kwargs=dict(fmap_base=128, fmap_max=32),
                               G_kwargs=dict(fmap_base=128, fmap_max=32, latent_size=32, dlatent_size=32,
                                             mapping_layers=2))
    opts = Options(data="d", outdir="o", batch=4, fp16=fp16, aug="noaug", style_mixing_prob=0.0)
    recipe = resolve(opts, G, D, 1, "pickle", False)
    apply_recipe(G, D, recipe)
    trainer = Trainer(G, D, Gs, tf.distribute.get_strategy(), recipe, seed=0, randomize_noise=False)
    images = np.random.default_rng(1).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    reals, labels = next(iter(make_tf_dataset(ImageArray(images, np.zeros((4, 0), np.float32), "random"), 4)))
    before = {k: v.numpy() for k, v in list(G.trainables.items()) + list(D.trainables.items())}
    stats = trainer.minibatch(reals, labels, 0, 0.0, 0.99)  # step 0: D, R1, G and path-length steps
    after = {k: v.numpy() for k, v in list(G.trainables.items()) + list(D.trainables.items())}
    return recipe, stats, {k: after[k] - before[k] for k in before}, trainer


def test_one_float16_training_step_is_finite_and_close_to_float32():
    recipe16, stats16, delta16, trainer16 = _one_step(True)
    recipe32, stats32, delta32, _ = _one_step(False)
    assert recipe16.precision["G"] == recipe16.precision["D"] == dict(num_fp16_res=4, conv_clamp=256.0)
    assert recipe16.precision["loss_scaling"] and not recipe32.precision["loss_scaling"]
    assert int(trainer16.G_opt.step.numpy()) == 2 and int(trainer16.D_opt.step.numpy()) == 2  # no step skipped
    for key in ("d_loss", "g_loss", "r1", "pl_penalty"):
        assert np.isfinite(stats16[key]) and stats16[key] == pytest.approx(stats32[key], rel=0.02, abs=1e-6), key
    signs = np.concatenate([np.sign(delta16[k]).ravel() == np.sign(delta32[k]).ravel() for k in delta32])
    assert all(np.isfinite(d).all() for d in delta16.values()) and signs.mean() > 0.9
