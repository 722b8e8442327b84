"""Generator SavedModel: plain TensorFlow in a fresh process matches Gs.run; no compiled op inside."""

import os

import numpy as np
import pytest

from conftest import FIXTURES
from subprocesses import error_lines, run_module, run_plain_tf
from stylegan_tl import load_network_pkl
from stylegan_tl.export import custom_ops_in, export_generator
from stylegan_tl.generate import seed_inputs, temporarily_set

# v1 (own truncation cutoff 8) and ADA (a v2 subclass: modulated convs, FIR resampling ops).
CASES = {"v1": ("A_v1_r32", 0.7), "ada": ("G_ada_r32", 0.5)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{case: (Gs, SavedModel folder)}."""
    out = {}
    for case, (fixture, _) in CASES.items():
        Gs = load_network_pkl(str(FIXTURES / fixture / "network.pkl"))[2]
        out[case] = (Gs, export_generator(Gs, str(tmp_path_factory.mktemp(case) / "saved")))
    return out


def test_fresh_process_without_the_package_matches_gs_run(exported, tmp_path):
    expected = {}
    for case, (Gs, folder) in exported.items():
        psi = CASES[case][1]
        z = np.random.RandomState(1).randn(3, Gs.input_shape[1]).astype(np.float32)
        w = Gs.components.mapping.run(z, None)
        np.savez(tmp_path / f"{case}_in.npz", z=z, labels=np.zeros([3, 0], np.float32), w=w,
                 psi=np.float32(psi), folder=folder)
        _, no_noise = seed_inputs(Gs, 0, "none")
        with temporarily_set(Gs, no_noise):
            images_none = Gs.run(z, None, truncation_psi=psi, randomize_noise=False)
        expected[case] = dict(const=Gs.run(z, None, truncation_psi=psi, randomize_noise=False), none=images_none,
                              w=w, synthesis=Gs.components.synthesis.run(w, randomize_noise=False))
    result = run_plain_tf(f"""
        import numpy as np, tensorflow as tf
        for case in {sorted(CASES)!r}:
            a = np.load(case + "_in.npz")
            sig = tf.saved_model.load(str(a["folder"])).signatures
            gen = lambda mode: sig["generate"](z=tf.constant(a["z"]), labels=tf.constant(a["labels"]),
                                               truncation_psi=tf.constant(a["psi"]), noise_mode=tf.constant(mode))
            const, none, random = gen("const"), gen("none"), gen("random")
            np.savez(case + "_out.npz", const=const["images"].numpy(), const_uint8=const["images_uint8"].numpy(),
                     none=none["images"].numpy(), random=random["images"].numpy(),
                     w=sig["mapping"](z=tf.constant(a["z"]), labels=tf.constant(a["labels"]))["w"].numpy(),
                     synthesis=sig["synthesis"](w=tf.constant(a["w"]))["images"].numpy())
    """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    from stylegan_tl import convert_images_to_uint8

    for case, want in expected.items():
        got = np.load(tmp_path / f"{case}_out.npz")
        for key in ("const", "none", "w", "synthesis"):
            assert got[key].shape == want[key].shape
            np.testing.assert_allclose(got[key], want[key], atol=1e-5, err_msg=f"{case} {key}")
        assert np.abs(got["none"] - got["const"]).max() > 1e-3   # the fixtures' noise is visible
        assert np.abs(got["random"] - got["const"]).max() > 1e-3
        uint8 = convert_images_to_uint8(want["const"], nchw_to_nhwc=True)
        assert np.abs(got["const_uint8"].astype(int) - uint8).max() <= 1  # float rounding at .5 only


def test_unknown_noise_mode_is_refused_by_the_served_graph(exported):
    import tensorflow as tf

    Gs, folder = exported["ada"]
    generate = tf.saved_model.load(folder).signatures["generate"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="noise_mode must be one of const, random, none"):
        generate(z=tf.zeros([1, Gs.input_shape[1]]), labels=tf.zeros([1, 0]), truncation_psi=tf.constant(1.0),
                 noise_mode=tf.constant("fresh"))


def test_no_compiled_op_in_the_export_even_when_the_environment_asks_for_them(exported, tmp_path, monkeypatch):
    import tensorflow as tf

    from stylegan_tl import ops
    from stylegan_tl.errors import BuildError
    from stylegan_tl.ops.impl import load_library

    try:
        load_library()
    except BuildError as e:
        pytest.skip(f"custom ops unavailable here: {e}")
    # Positive control: a graph traced with the compiled op is detected.
    probe = tf.Module()
    probe.f = tf.function(lambda x: ops.upsample_2d(x, impl="custom"),
                          input_signature=[tf.TensorSpec([1, 1, 4, 4], tf.float32)])
    tf.saved_model.save(probe, str(tmp_path / "probe"))
    assert custom_ops_in(str(tmp_path / "probe"))
    monkeypatch.setenv("STYLEGAN_TL_OPS", "custom")
    Gs, _ = exported["ada"]
    assert custom_ops_in(export_generator(Gs, str(tmp_path / "forced"))) == set()
    assert os.environ["STYLEGAN_TL_OPS"] == "custom"  # restored after tracing


def test_cli_exports_and_refuses_a_used_folder(tmp_path):
    pkl = str(FIXTURES / "C_v2_orig_orig_r16" / "network.pkl")
    outdir = tmp_path / "gen"
    ok = run_module("stylegan_tl.export", f"--network={pkl}", f"--outdir={outdir}")
    assert ok.returncode == 0, ok.stderr
    assert (outdir / "saved_model.pb").is_file()
    again = run_module("stylegan_tl.export", f"--network={pkl}", f"--outdir={outdir}")
    assert again.returncode == 2
    assert error_lines(again) == [f"error: {outdir}: already exists and is not an empty folder (choose a new --outdir)"]
    missing = run_module("stylegan_tl.export", f"--network={tmp_path / 'no.pkl'}", f"--outdir={tmp_path / 'x'}")
    assert missing.returncode == 2 and len(error_lines(missing)) == 1 and "no.pkl" in error_lines(missing)[0]
    assert sorted(os.listdir(tmp_path)) == ["gen"]
