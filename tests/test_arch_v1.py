"""StyleGAN v1 architecture (stylegan_tl.arch_v1): NVIDIA's variables, kwargs, truncation, training mode.

The networks are built directly from the fixtures' pickled states (no ``Network`` facade), so these
tests specify the modules themselves; ``test_fidelity.py`` checks every reference array through the
public API.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from stylegan_tl import arch_v1
from stylegan_tl.errors import StyleGANTLError
from stylegan_tl.pickle_io import read_network_pkl

V1_FIXTURES = ["A_v1_r32", "F_v1_r32_fused"]
TINY = dict(resolution=16, latent_size=8, dlatent_size=8, mapping_fmaps=8, mapping_layers=2,
            fmap_base=32, fmap_max=8)
TINY_D = dict(resolution=16, num_channels=3, fmap_base=32, fmap_max=8)


def _from_state(state, cls, **components):
    """Build ``cls`` from a pickled NetworkState and assign its variables."""
    module = cls(state.static_kwargs, name=state.name, **components)
    for name, value in state.variables.items():
        module.own_vars[name].assign(value)
    return module


def _generator(state):
    return _from_state(state, arch_v1.G_style,
                       mapping=_from_state(state.components["mapping"], arch_v1.G_mapping),
                       synthesis=_from_state(state.components["synthesis"], arch_v1.G_synthesis))


def _close(ours, ref):
    """The fidelity tolerance: max|ours - ref| <= 1e-4 * max(1, max|ref|)."""
    return np.max(np.abs(np.asarray(ours) - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))


def _tiny_g(**kw):
    return arch_v1.G_style(dict(TINY, **kw), name="G", seed=1)


@pytest.mark.parametrize("config", V1_FIXTURES)
def test_variables_follow_nvidia_creation_order_names_and_shapes(config):
    with open(FIXTURES / config / "reference.json") as f:
        networks = json.load(f)["networks"]
    G, D, Gs = read_network_pkl(str(FIXTURES / config / "network.pkl"))
    built = {
        "Gs": arch_v1.G_style(Gs.static_kwargs, name="Gs"),
        "G_synthesis": arch_v1.G_synthesis(Gs.components["synthesis"].static_kwargs),
        "G_mapping": arch_v1.G_mapping(Gs.components["mapping"].static_kwargs),
        "D": arch_v1.D_basic(D.static_kwargs, name="D"),
    }
    expected = {"Gs": networks["Gs"], "D": networks["D"],
                "G_synthesis": networks["Gs"]["components"]["synthesis"],
                "G_mapping": networks["Gs"]["components"]["mapping"]}
    for key, module in built.items():
        want = [(name, list(shape), trainable) for name, shape, trainable, *_ in expected[key]["own_vars"]]
        got = [(name, list(v.shape), v.trainable) for name, v in module.own_vars.items()]
        assert got == want, key


def test_initialisation_is_nvidias_and_seeded():
    g = arch_v1.G_synthesis(dict(TINY), seed=3)
    assert np.all(g.own_vars["4x4/Const/const"].numpy() == 1)
    assert np.all(g.own_vars["4x4/Conv/bias"].numpy() == 0)
    assert np.all(g.own_vars["8x8/Conv1/Noise/weight"].numpy() == 0)
    m = arch_v1.G_mapping(dict(TINY))
    assert abs(np.std(m.own_vars["Dense0/weight"].numpy()) - 100) < 30  # N(0, 1/lrmul), lrmul 0.01
    again = arch_v1.G_synthesis(dict(TINY), seed=3)
    assert np.array_equal(g.own_vars["noise3"].numpy(), again.own_vars["noise3"].numpy())


@pytest.mark.parametrize("config", V1_FIXTURES)
def test_outputs_match_nvidia_reference(config):
    G, D, Gs = read_network_pkl(str(FIXTURES / config / "network.pkl"))
    with np.load(FIXTURES / config / "reference.npz") as npz:
        ref = {k: npz[k] for k in npz.files}
    gs, d = _generator(Gs), _from_state(D, arch_v1.D_basic)
    images, dlatents = gs(ref["z"], None, randomize_noise=False, return_dlatents=True)
    assert _close(images, ref["gs_images_default"])
    assert _close(dlatents, ref["gs_dlatents_default"])
    assert _close(d(ref["d_images8"]), ref["d_scores_fixed8"])


def test_fused_upconv_is_nearest_upscale_then_flipped_kernel_conv():
    x = tf.random.stateless_normal([2, 5, 5, 3], seed=[1, 2])
    w = tf.random.stateless_normal([3, 3, 3, 4], seed=[3, 4])
    fused = arch_v1.upscale2d_conv2d(x, w, fused=True)
    flipped = arch_v1.upscale2d_conv2d(x, w[::-1, ::-1], fused=False)
    unflipped = arch_v1.upscale2d_conv2d(x, w, fused=False)
    np.testing.assert_allclose(fused, flipped, atol=1e-5)
    assert np.max(np.abs(fused - unflipped)) > 1e-2


def test_fused_downconv_is_conv_then_2x2_average():
    x = tf.random.stateless_normal([2, 8, 8, 3], seed=[5, 6])
    w = tf.random.stateless_normal([3, 3, 3, 4], seed=[7, 8])
    np.testing.assert_allclose(arch_v1.conv2d_downscale2d(x, w, fused=True),
                               arch_v1.conv2d_downscale2d(x, w, fused=False), atol=1e-5)


def test_fused_scale_auto_switches_to_the_transposed_conv_at_128px():
    kw = dict(TINY, resolution=128, fmap_base=512, fmap_max=4)
    dl = tf.random.stateless_normal([1, 12, 8], seed=[1, 1])
    auto = arch_v1.G_synthesis(dict(kw, fused_scale="auto"), seed=0)
    never = arch_v1.G_synthesis(dict(kw, fused_scale=False), seed=0)
    out_auto = auto(dl, randomize_noise=False)
    assert np.max(np.abs(out_auto - never(dl, randomize_noise=False))) > 1e-3
    w = never.own_vars["128x128/Conv0_up/weight"]
    w.assign(w[::-1, ::-1])  # fused at 128 px only = flipped kernel there, plain up-conv below
    np.testing.assert_allclose(out_auto, never(dl, randomize_noise=False), atol=1e-4)


def test_truncation_needs_both_psi_and_cutoff():
    g = _tiny_g()
    g.own_vars["dlatent_avg"].assign(tf.ones([8]))
    z = np.random.RandomState(0).randn(2, 8).astype(np.float32)
    run = lambda **kw: g(z, None, randomize_noise=False, return_dlatents=True, **kw)[1].numpy()
    w = g.mapping(z).numpy()
    np.testing.assert_array_equal(run(truncation_psi=0.5, truncation_cutoff=None), w)
    np.testing.assert_array_equal(run(truncation_psi=None), w)
    cut = run(truncation_psi=0.5, truncation_cutoff=2)
    np.testing.assert_allclose(cut[:, :2], 1 + (w[:, :2] - 1) * 0.5, rtol=1e-6)
    np.testing.assert_allclose(cut[:, 2:], w[:, 2:], atol=1e-6)  # coefficient 1 (up to rounding)
    default = run()  # static defaults: psi 0.7 on the first 8 layers (= all 6 here)
    np.testing.assert_allclose(default, 1 + (w - 1) * 0.7, rtol=1e-6)
    np.testing.assert_array_equal(run(is_validation=True), w)  # *_val defaults: no truncation


def test_training_mode_updates_dlatent_avg_and_mixes_styles():
    g = _tiny_g()
    z = np.random.RandomState(0).randn(4, 8).astype(np.float32)
    plain = g(z, None, truncation_psi=1.0, randomize_noise=False).numpy()
    no_mix = g(z, None, is_training=True, style_mixing_prob=None, randomize_noise=False).numpy()
    np.testing.assert_allclose(no_mix, plain, atol=1e-6)  # training: no truncation
    w0 = g.mapping(z).numpy()[:, 0]
    np.testing.assert_allclose(g.own_vars["dlatent_avg"].numpy(), 0.005 * w0.mean(axis=0), rtol=1e-5, atol=1e-7)
    tf.random.set_seed(0)
    mixed, w = g(z, None, is_training=True, style_mixing_prob=1.0, randomize_noise=False,
                 return_dlatents=True)
    assert np.max(np.abs(mixed.numpy() - plain)) > 1e-3
    assert np.array_equal(w[:, 0], g.mapping(z)[:, 0]) and not np.array_equal(w[:, -1], g.mapping(z)[:, -1])
    with pytest.raises(StyleGANTLError, match="is_training and is_validation"):
        g(z, None, is_training=True, is_validation=True)


def test_labels_condition_mapping_and_discriminator():
    g = _tiny_g(label_size=3)
    d = arch_v1.D_basic(dict(TINY_D, label_size=3))
    assert list(g.mapping.own_vars["LabelConcat/weight"].shape) == [3, 8]
    assert list(g.mapping.own_vars["Dense0/weight"].shape) == [16, 8]
    assert list(d.own_vars["4x4/Dense1/weight"].shape) == [8, 3]
    z = np.random.RandomState(0).randn(2, 8).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[[0, 2]]
    images = g(z, labels, randomize_noise=False)
    assert images.shape == (2, 3, 16, 16)
    assert not np.allclose(images, g(z, labels[::-1], randomize_noise=False))
    scores = d(images, labels)
    assert scores.shape == (2, 1)
    zeros = np.zeros_like(labels)  # NVIDIA feeds zeros for a None labels input
    np.testing.assert_allclose(g(z, None, randomize_noise=False), g(z, zeros, randomize_noise=False))
    np.testing.assert_allclose(d(images, None), d(images, zeros))


def test_structures_agree_and_lod_blends():
    g = arch_v1.G_synthesis(dict(TINY), seed=0)
    d = arch_v1.D_basic(TINY_D, seed=0)
    dl = tf.random.stateless_normal([2, 6, 8], seed=[0, 1])
    img = tf.random.stateless_normal([4, 3, 16, 16], seed=[0, 2])
    for lod in (0.0, 0.5, 1.0):
        outs = [g(dl, randomize_noise=False, structure=s, lod=lod) for s in ("recursive", "linear")]
        np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
        scores = [d(img, structure=s, lod=lod) for s in ("recursive", "linear")]
        np.testing.assert_allclose(scores[0], scores[1], atol=1e-5)
    np.testing.assert_allclose(g(dl, randomize_noise=False, structure="fixed"),
                               g(dl, randomize_noise=False), atol=1e-6)
    blocky = g(dl, randomize_noise=False, lod=1.0).numpy()
    np.testing.assert_array_equal(blocky[..., ::2, ::2], blocky[..., 1::2, 1::2])
    fixed = arch_v1.G_synthesis(dict(TINY, structure="fixed"))
    assert [n for n in fixed.own_vars if n.startswith("ToRGB")] == ["ToRGB_lod0/weight", "ToRGB_lod0/bias"]


def test_options_change_the_variable_set():
    g = arch_v1.G_synthesis(dict(TINY, use_noise=False, use_styles=False, const_input_layer=False))
    names = list(g.own_vars)
    assert not any("noise" in n or "Noise" in n or "StyleMod" in n for n in names)
    assert names[1] == "4x4/Dense/weight" and list(g.own_vars["4x4/Dense/weight"].shape) == [8, 8 * 16]
    out = g(tf.random.stateless_normal([2, 1, 8], seed=[0, 3]))
    assert out.shape == (2, 3, 16, 16)
    g2 = arch_v1.G_synthesis(dict(TINY, use_pixel_norm=True, use_instance_norm=False, blur_filter=None,
                                  nonlinearity="relu"))
    assert np.all(np.isfinite(g2(tf.random.stateless_normal([2, 6, 8], seed=[0, 4]), randomize_noise=False)))


def test_unknown_kwargs_are_clear_errors():
    with pytest.raises(StyleGANTLError, match="unknown static kwargs.*fmap_bse"):
        arch_v1.G_style(dict(TINY, fmap_bse=1))
    with pytest.raises(StyleGANTLError, match="unknown static kwargs.*latent_size"):
        arch_v1.D_basic(dict(latent_size=8))
    g = _tiny_g()
    with pytest.raises(StyleGANTLError, match="unknown call kwargs.*truncaton_psi"):
        g(tf.zeros([1, 8]), None, truncaton_psi=0.5)
    with pytest.raises(StyleGANTLError, match="resolution=32 cannot change"):
        g(tf.zeros([1, 8]), None, resolution=32)


def test_random_noise_is_fresh_each_call():
    g = _tiny_g()
    g.synthesis.own_vars["8x8/Conv1/Noise/weight"].assign(tf.ones([8]))
    z = tf.zeros([1, 8])
    assert not np.allclose(g(z, None), g(z, None))
    np.testing.assert_array_equal(g(z, None, randomize_noise=False), g(z, None, randomize_noise=False))


def test_second_order_gradients_and_tf_function():
    g = _tiny_g()
    d = arch_v1.D_basic(TINY_D)
    z = tf.random.stateless_normal([4, 8], seed=[1, 1])

    @tf.function
    def r1_grads():
        images = g(z, None, is_training=True)
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(images)
                score_sum = tf.reduce_sum(d(images, None))
            penalty = tf.reduce_sum(tf.square(inner.gradient(score_sum, images)))
        return outer.gradient(penalty, trainables)

    trainables = [v for v in d.own_vars.values() if v.trainable]
    grads = dict(zip([n for n, v in d.own_vars.items() if v.trainable], r1_grads()))
    # d(scores)/d(images) does not depend on the last bias; every weight on the lod-0 path gets a gradient
    # (FromRGB_lod1.. sit in the untaken lod branches and get zeros).
    assert [n for n, gr in grads.items() if gr is None] == ["4x4/Dense1/bias"]
    assert all(np.all(np.isfinite(gr)) for gr in grads.values() if gr is not None)
    active = [n for n in grads if n.endswith("weight") and not n.startswith("FromRGB_lod") or n == "FromRGB_lod0/weight"]
    assert all(np.any(grads[n] != 0) for n in active), active
    eager = g(z, None, randomize_noise=False)
    np.testing.assert_allclose(tf.function(lambda: g(z, None, randomize_noise=False))(), eager, atol=1e-5)


def test_generator_second_order_gradient_through_synthesis():
    """Path-length-style regulariser: d/dtheta |d(images . y)/dW|^2 exists for every synthesis weight."""
    g = _tiny_g()
    syn = g.synthesis
    for name, var in syn.own_vars.items():  # non-zero noise strengths so the noise path is live
        if name.endswith("Noise/weight"):
            var.assign(tf.fill(var.shape, 0.3))
    w = tf.random.stateless_normal([2, 6, 8], seed=[2, 2])
    y = tf.random.stateless_normal([2, 3, 16, 16], seed=[2, 3])
    trainables = [v for v in syn.own_vars.values() if v.trainable]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(w)
            proj = tf.reduce_sum(syn(w, randomize_noise=False) * y)
        penalty = tf.reduce_sum(tf.square(inner.gradient(proj, w)))
    grads = outer.gradient(penalty, trainables)
    names = [n for n, v in syn.own_vars.items() if v.trainable]
    missing = [n for n, gr in zip(names, grads) if gr is None or not np.any(gr.numpy() != 0)]
    # Only the lower-resolution ToRGB layers (unused at lod 0) and the output bias (d images/dW does
    # not depend on it) get no gradient.
    assert missing == ["ToRGB_lod2/weight", "ToRGB_lod2/bias", "ToRGB_lod1/weight", "ToRGB_lod1/bias",
                       "ToRGB_lod0/bias"]
    assert all(np.all(np.isfinite(gr)) for gr in grads if gr is not None)


@pytest.mark.slow
def test_default_1024_networks_have_nvidias_parameter_counts():
    """NVIDIA's README numbers for the official FFHQ networks: G/Gs 26,219,627 and D 23,087,249."""
    g = arch_v1.G_style({"resolution": 1024})
    d = arch_v1.D_basic({"resolution": 1024, "num_channels": 3})
    count = lambda *modules: sum(int(np.prod(v.shape)) for m in modules for v in m.own_vars.values() if v.trainable)
    assert count(g, g.mapping, g.synthesis) == 26_219_627
    assert count(d) == 23_087_249
