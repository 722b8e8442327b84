"""Network facade: NVIDIA-like API behaviour on tiny networks built with from_config or loaded from fixtures."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from stylegan_tl import network
from stylegan_tl.errors import StyleGANTLError
from stylegan_tl.network import Network, convert_images_to_uint8, create_networks, load_network_pkl, save_network_pkl

TINY = dict(latent_size=16, dlatent_size=16, mapping_layers=2, mapping_fmaps=16, fmap_base=32, fmap_max=16)
TINY_D = dict(fmap_base=32, fmap_max=16)
FAMILIES = ["stylegan", "stylegan2", "stylegan2-ada"]


def _z(n, seed=0, size=16):
    return np.random.RandomState(seed).randn(n, size).astype(np.float32)


def _g(family="stylegan2", resolution=8, seed=0, **kw):
    return Network.from_config(family, "G", resolution, seed, **dict(TINY, **kw))


def _d(family="stylegan2", resolution=8, seed=0, **kw):
    return Network.from_config(family, "D", resolution, seed, **dict(TINY_D, **kw))


@pytest.fixture(scope="module")
def g2():
    return _g()


# ------------------------------------------------------------------------------------------------
# Defaults and inputs.


@pytest.mark.parametrize("family,psi,cutoff", [("stylegan2", 0.5, None), ("stylegan2-ada", 0.5, None),
                                               ("stylegan", 0.7, 8)])
def test_truncation_defaults_follow_family(family, psi, cutoff):
    G = _g(family, resolution=16)
    z = _z(3)
    default = G.run(z, None, randomize_noise=False)
    explicit = G.run(z, None, truncation_psi=psi, truncation_cutoff=cutoff, randomize_noise=False)
    untruncated = G.run(z, None, truncation_psi=1.0, randomize_noise=False)
    np.testing.assert_allclose(default, explicit, rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(default - untruncated)) > 1e-3


def test_v1_cutoff_none_means_no_truncation():
    G = _g("stylegan", resolution=16)
    z = _z(2)
    np.testing.assert_allclose(G.run(z, None, truncation_psi=0.5, truncation_cutoff=None, randomize_noise=False),
                               G.run(z, None, truncation_psi=1.0, randomize_noise=False), rtol=1e-5, atol=1e-5)


def test_labels_none_is_zeros_and_may_be_omitted(g2):
    z = _z(3)
    ref = g2.run(z, np.zeros([3, 0], np.float32), randomize_noise=False)
    np.testing.assert_array_equal(g2.run(z, None, randomize_noise=False), ref)
    np.testing.assert_array_equal(g2.run(z, randomize_noise=False), ref)


def test_random_noise_differs_per_call_stored_noise_does_not():
    G = _g()
    G.set_var("G_synthesis/8x8/Conv1/noise_strength", 0.5)  # NVIDIA initialises noise_strength to 0
    z = _z(2)
    assert np.max(np.abs(G.run(z, None) - G.run(z, None))) > 0          # randomize_noise default True
    np.testing.assert_array_equal(G.run(z, None, randomize_noise=False), G.run(z, None, randomize_noise=False))


def test_minibatch_split_gives_same_results(g2):
    z = _z(7)
    whole = g2.run(z, None, randomize_noise=False)
    split = g2.run(z, None, randomize_noise=False, minibatch_size=3)
    assert whole.shape == (7, 3, 8, 8)
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6)


def test_run_traces_once_per_kwargs(g2):
    g2.run(_z(4), None, truncation_psi=0.3, randomize_noise=False)
    g2.run(_z(5), None, truncation_psi=0.3, randomize_noise=False, minibatch_size=2)
    fn = g2._run_fn(((16,), (0,)), dict(truncation_psi=0.3, randomize_noise=False))
    assert fn.experimental_get_tracing_count() == 1


def test_output_transform_uint8_nhwc(g2):
    z = _z(2)
    images = g2.run(z, None, randomize_noise=False)
    out = g2.run(z, None, randomize_noise=False,
                 output_transform=dict(func=convert_images_to_uint8, nchw_to_nhwc=True))
    assert out.dtype == np.uint8 and out.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(out, convert_images_to_uint8(images, nchw_to_nhwc=True))


def test_convert_images_to_uint8_nvidia_rounding():
    x = np.array([-2.0, -1.0, -0.997, 0.0, 0.5, 1.0, 3.0], np.float32).reshape(1, 1, 1, 7)
    # x*127.5 + 128 then saturating cast: round half up of x*127.5 + 127.5.
    np.testing.assert_array_equal(convert_images_to_uint8(x).ravel(), [0, 0, 0, 128, 191, 255, 255])
    np.testing.assert_array_equal(convert_images_to_uint8(x * 0 + 0.5, drange=[0, 1]).ravel(), [128] * 7)


def test_return_dlatents_and_components(g2):
    z = _z(3)
    images, dlatents = g2.run(z, None, truncation_psi=0.5, randomize_noise=False, return_dlatents=True)
    assert dlatents.shape == (3, 4, 16)
    w = g2.components.mapping.run(z, None)
    avg = g2.get_var("dlatent_avg")
    np.testing.assert_allclose(dlatents, avg + (w - avg) * 0.5, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g2.components.synthesis.run(dlatents, randomize_noise=False), images,
                               rtol=1e-5, atol=1e-5)


def test_shapes_and_names(g2):
    assert g2.input_shape == [None, 16] and g2.input_shapes[1] == [None, 0]
    assert g2.output_shape == [None, 3, 8, 8]
    assert g2.components.synthesis.input_shapes == [[None, 4, 16]]
    assert list(g2.vars)[:2] == ["lod", "dlatent_avg"]
    assert "G_synthesis/4x4/Conv/mod_weight" in g2.vars and "G_mapping/Dense0/weight" in g2.vars
    assert g2.vars["G_synthesis/8x8/Conv0_up/weight"].shape == (3, 3, 16, 8)  # HWIO
    assert g2.vars["G_synthesis/noise1"].shape == (1, 1, 8, 8)
    frozen = {n for n in g2.vars if n not in g2.trainables}
    assert frozen == {"lod", "dlatent_avg", "G_synthesis/noise0", "G_synthesis/noise1", "G_synthesis/noise2"}


# ------------------------------------------------------------------------------------------------
# Construction for every family / architecture.


@pytest.mark.parametrize("family", FAMILIES)
def test_from_config_is_seeded(family):
    a, b, c = _g(family, seed=3), _g(family, seed=3), _g(family, seed=4)
    z = _z(2)
    np.testing.assert_array_equal(a.run(z, None, randomize_noise=False), b.run(z, None, randomize_noise=False))
    assert np.max(np.abs(a.run(z, None, randomize_noise=False) - c.run(z, None, randomize_noise=False))) > 0


@pytest.mark.parametrize("family", ["stylegan2", "stylegan2-ada"])
@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_every_architecture_builds_and_runs(family, architecture):
    G = _g(family, architecture=architecture)
    D = _d(family, architecture=architecture)
    images = G.run(_z(4), None, randomize_noise=False)
    assert images.shape == (4, 3, 8, 8) and np.all(np.isfinite(images))
    scores = D.run(images, None)
    assert scores.shape == (4, 1) and np.all(np.isfinite(scores))
    assert ("8x8/Skip/weight" in D.vars) == (architecture == "resnet")
    assert ("G_synthesis/4x4/ToRGB/weight" in G.vars) == (architecture == "skip")


@pytest.mark.parametrize("family", FAMILIES)
def test_conditional_networks(family):
    G, D = _g(family, label_size=3), _d(family, label_size=3)
    z, onehot = _z(2), np.eye(3, dtype=np.float32)[[0, 2]]
    images = G.run(z, onehot, randomize_noise=False)
    other = G.run(z, np.eye(3, dtype=np.float32)[[1, 1]], randomize_noise=False)
    assert images.shape == (2, 3, 8, 8) and np.max(np.abs(images - other)) > 0
    assert G.input_shapes[1] == [None, 3]
    scores = D.run(images, onehot)
    assert scores.shape == (2, 1) and np.max(np.abs(scores - D.run(images, onehot[::-1]))) > 0


def test_v2_label_conditioning_variables_and_projection():
    G, D = _g("stylegan2", label_size=3), _d("stylegan2", label_size=3)
    assert G.vars["G_mapping/LabelConcat/weight"].shape == (3, 16)
    assert D.vars["Output/weight"].shape == (16, 3)
    images, labels = G.run(_z(2), np.eye(3, dtype=np.float32)[:2], randomize_noise=False), np.eye(3, dtype=np.float32)[:2]
    np.testing.assert_allclose(D.run(images, 2 * labels), 2 * D.run(images, labels), rtol=1e-5)  # sum(out * labels)


def test_ada_label_embedding_variables():
    G = _g("stylegan2-ada", label_size=3)
    assert G.vars["G_mapping/LabelEmbed/weight"].shape == (3, 16)  # label_fmaps None = latent_size
    assert G.vars["G_mapping/Dense0/weight"].shape == (32, 16)
    D = _d("stylegan2-ada", label_size=3, mapping_layers=1, fmap_max=32)  # nf(0) = 32, nf(1) = 16
    assert list(D.vars)[:4] == ["LabelEmbed/weight", "LabelEmbed/bias", "Mapping0/weight", "Mapping0/bias"]
    assert D.vars["LabelEmbed/weight"].shape == (3, 32) and D.vars["Mapping0/weight"].shape == (32, 32)
    assert D.vars["Output/weight"].shape == (32, 32)  # cmap width = mapping_fmaps, default nf(0)


def test_ada_comparison_methods_rejected_and_score_max():
    with pytest.raises(StyleGANTLError, match="use_spectral_norm=True"):
        _d("stylegan2-ada", use_spectral_norm=True)
    D = _d("stylegan2-ada", score_max=3, score_size=2)
    assert D.vars["Output/weight"].shape == (16, 3)
    assert D.run(np.zeros([2, 3, 8, 8], np.float32), None).shape == (2, 2)


def test_ada_conv_clamp_bounds_output():
    G = _g("stylegan2-ada", architecture="orig", conv_clamp=0.01)
    images = G.run(_z(3), None, randomize_noise=False)
    assert np.max(np.abs(images)) <= 0.01 + 1e-7
    assert np.max(np.abs(_g("stylegan2-ada", architecture="orig").run(_z(3), None, randomize_noise=False))) > 0.01


def test_ada_freeze_layers_and_whole_batch_mbstd():
    D = _d("stylegan2-ada", freeze_layers=2)
    assert not D.vars["8x8/FromRGB/weight"].trainable and not D.vars["8x8/Conv0/weight"].trainable
    assert D.vars["8x8/Conv1_down/weight"].trainable and D.vars["Output/weight"].trainable
    assert D.module.kwargs["mbstd_group_size"] is None
    assert D.run(np.random.RandomState(0).randn(6, 3, 8, 8), None).shape == (6, 1)  # group = whole batch


def test_ada_fp16_kwargs_accepted_and_computed_in_fp32():
    a = _g("stylegan2-ada", num_fp16_res=2)
    b = _g("stylegan2-ada")
    z = _z(2)
    np.testing.assert_array_equal(a.run(z, None, randomize_noise=False), b.run(z, None, randomize_noise=False))


def test_fused_modconv_kwarg_gives_same_numbers(g2):
    z = _z(3)
    np.testing.assert_allclose(g2.run(z, None, randomize_noise=False, fused_modconv=False),
                               g2.run(z, None, randomize_noise=False, fused_modconv=True), rtol=1e-4, atol=1e-5)


def test_unknown_static_kwarg_is_a_clear_error():
    with pytest.raises(StyleGANTLError, match="unknown static kwargs archtecture"):
        _g("stylegan2", archtecture="skip")
    with pytest.raises(StyleGANTLError, match="unknown family"):
        Network.from_config("stylegan3", "G", 8)


# ------------------------------------------------------------------------------------------------
# Variables: clone, copy_vars_from, state round trip, loading checks.


def test_clone_is_independent(g2):
    clone = g2.clone("Gs")
    z = _z(2)
    assert clone.name == "Gs" and list(clone.vars) == list(g2.vars)
    np.testing.assert_array_equal(clone.run(z, None, randomize_noise=False), g2.run(z, None, randomize_noise=False))
    clone.vars["G_synthesis/4x4/Conv/bias"].assign_add(tf.ones([16]))
    assert np.max(np.abs(clone.run(z, None, randomize_noise=False) - g2.run(z, None, randomize_noise=False))) > 0
    assert np.all(g2.get_var("G_synthesis/4x4/Conv/bias") == 0)


def test_copy_vars_from_by_name():
    a, b = _g(seed=1), _g(seed=2)
    z = _z(2)
    a.copy_vars_from(b)
    np.testing.assert_array_equal(a.run(z, None, randomize_noise=False), b.run(z, None, randomize_noise=False))
    wider = _g(seed=1, fmap_max=8)
    with pytest.raises(StyleGANTLError, match="shape"):
        wider.copy_vars_from(b)


def test_copy_trainables_and_compatible_trainables():
    a, b = _g(seed=1), _g(seed=2)
    b.set_var("dlatent_avg", np.ones(16))
    a.copy_trainables_from(b)
    assert np.all(a.get_var("dlatent_avg") == 0)  # not trainable: left alone
    np.testing.assert_array_equal(a.get_var("G_mapping/Dense1/weight"), b.get_var("G_mapping/Dense1/weight"))
    wider = _g(seed=3, fmap_max=8)
    before = wider.get_var("G_synthesis/4x4/Conv/weight")
    wider.copy_compatible_trainables_from(b)  # shape mismatches are skipped, matches copied
    np.testing.assert_array_equal(wider.get_var("G_synthesis/4x4/Conv/weight"), before)
    np.testing.assert_array_equal(wider.get_var("G_mapping/Dense1/weight"), b.get_var("G_mapping/Dense1/weight"))


def test_copy_vars_from_skips_names_on_one_side_only():
    v2, ada = _g("stylegan2", seed=1), _g("stylegan2-ada", seed=2, mapping_fmaps=16)
    v2.copy_vars_from(ada)  # ADA has no 'lod'; everything else matches by name
    np.testing.assert_array_equal(v2.get_var("G_synthesis/4x4/Const/const"), ada.get_var("G_synthesis/4x4/Const/const"))
    assert v2.get_var("lod") == 0


def test_create_networks_gs_is_a_clone():
    G, D, Gs = create_networks("stylegan2", 8, seed=0, G_kwargs=TINY, D_kwargs=TINY_D)
    assert (G.name, D.name, Gs.name) == ("G", "D", "Gs")
    assert G.vars["G_mapping/Dense0/weight"] is not Gs.vars["G_mapping/Dense0/weight"]
    np.testing.assert_array_equal(G.get_var("G_mapping/Dense0/weight"), Gs.get_var("G_mapping/Dense0/weight"))


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(tmp_path, family):
    G, D, Gs = create_networks(family, 8, seed=5, G_kwargs=dict(TINY, label_size=2), D_kwargs=dict(TINY_D, label_size=2))
    path = save_network_pkl(tmp_path / "net.pkl", G, D, Gs)
    G2, D2, Gs2 = load_network_pkl(str(path))
    z, labels = _z(3), np.eye(2, dtype=np.float32)[[0, 1, 1]]
    for a, b in ((G, G2), (Gs, Gs2)):
        assert list(a.vars) == list(b.vars) and a.static_kwargs == b.static_kwargs
        np.testing.assert_array_equal(a.run(z, labels, randomize_noise=False), b.run(z, labels, randomize_noise=False))
    x = np.random.RandomState(1).randn(4, 3, 8, 8).astype(np.float32)
    np.testing.assert_array_equal(D.run(x, labels[[0, 1, 1, 0]]), D2.run(x, labels[[0, 1, 1, 0]]))
    assert Gs2.build_module_src == network.PLACEHOLDER_SRC


def test_to_state_layout():
    state = _g("stylegan2-ada").to_state()
    assert state.version == 5 and state.build_func_name == "G_main" and "lod" not in state.variables
    assert state.variables["dlatent_avg"].dtype == np.float32
    syn = state.components["synthesis"]
    assert syn.name == "G_synthesis" and syn.variables["4x4/Conv/noise_strength"].shape == ()
    assert state.components["mapping"].static_kwargs["dlatent_broadcast"] == 4
    assert state.extra["input_names"] == ["latents_in", "labels_in"] and state.extra["output_shapes"] == [[None, 3, 8, 8]]


def test_fixture_round_trip_keeps_source_and_outputs(tmp_path):
    G, D, Gs = load_network_pkl(str(FIXTURES / "C_v2_orig_orig_r16" / "network.pkl"))
    path = save_network_pkl(tmp_path / "c.pkl", G, D, Gs)
    G2, D2, Gs2 = load_network_pkl(str(path))
    z = _z(2, size=64)
    np.testing.assert_array_equal(Gs.run(z, None, randomize_noise=False), Gs2.run(z, None, randomize_noise=False))
    assert Gs2.build_module_src == Gs.build_module_src and Gs2.components.mapping.static_kwargs == Gs.components.mapping.static_kwargs


def test_loading_checks_every_variable():
    state = _g().to_state()
    state.components["synthesis"].variables["extra/weight"] = np.zeros([2], np.float32)
    with pytest.raises(StyleGANTLError, match="not used by this network: extra/weight"):
        Network.from_state(state)
    state = _g().to_state()
    state.components["mapping"].variables["Dense0/weight"] = np.zeros([3, 3], np.float32)
    with pytest.raises(StyleGANTLError, match="'Dense0/weight': shape"):
        Network.from_state(state)
    state = _g().to_state()
    del state.variables["dlatent_avg"]
    with pytest.raises(StyleGANTLError, match="missing from the pickle: dlatent_avg"):
        Network.from_state(state)


# ------------------------------------------------------------------------------------------------
# Graph use: training mode and gradients.


def test_is_training_updates_dlatent_avg_and_mixes(g2):
    G = g2.clone("G")
    z = tf.constant(_z(4))
    before = G.get_var("dlatent_avg")
    w0 = G.components.mapping.get_output_for(z, None)[:, 0].numpy().mean(axis=0)
    G.get_output_for(z, None, is_training=True, style_mixing_prob=0.0)
    np.testing.assert_allclose(G.get_var("dlatent_avg"), w0 + (before - w0) * 0.995, rtol=1e-5, atol=1e-6)
    tf.random.set_seed(1)
    _, mixed = G.get_output_for(z, None, is_training=True, style_mixing_prob=1.0, return_dlatents=True)
    w = G.components.mapping.get_output_for(z, None).numpy()
    assert np.allclose(mixed[:, 0], w[:, 0]) and not np.allclose(mixed[:, -1], w[:, -1])


@pytest.mark.parametrize("family", FAMILIES)
def test_r1_second_order_gradient_of_D(family):
    D = _d(family)
    x = tf.constant(np.random.RandomState(0).randn(4, 3, 8, 8).astype(np.float32))

    @tf.function
    def step(x):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                scores = tf.reduce_sum(D.get_output_for(x, None))
            r1 = tf.reduce_sum(tf.square(inner.gradient(scores, x)))
        return dict(zip(D.trainables, outer.gradient(r1, list(D.trainables.values()))))

    grads = step(x)  # unused variables (v1's lower-lod FromRGB, the last bias) may have no gradient
    assert all(np.all(np.isfinite(g.numpy())) for g in grads.values() if g is not None)
    assert np.max(np.abs(grads["8x8/Conv0/weight"].numpy())) > 0


@pytest.mark.parametrize("fused", [True, False])
def test_path_length_second_order_gradient_of_G(g2, fused):
    z = tf.constant(_z(2))

    @tf.function
    def step(z):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                images, w = g2.get_output_for(z, None, is_training=True, style_mixing_prob=0.0,
                                              return_dlatents=True, fused_modconv=fused)
                projected = tf.reduce_sum(images * tf.random.normal(tf.shape(images)))
            g = inner.gradient(projected, w)
            penalty = tf.reduce_sum(tf.square(g))
        return outer.gradient(penalty, [g2.vars["G_synthesis/8x8/Conv1/weight"],
                                        g2.vars["G_mapping/Dense1/weight"]])

    G_copy_avg = g2.get_var("dlatent_avg")
    grads = step(z)
    g2.set_var("dlatent_avg", G_copy_avg)  # is_training moved the average; restore the shared fixture
    assert all(g is not None and np.all(np.isfinite(g.numpy())) and np.max(np.abs(g.numpy())) > 0 for g in grads)
