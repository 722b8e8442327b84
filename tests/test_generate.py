"""Generation: ``python -m stylegan_tl.generate`` and ``generate_images`` on the fixture pickles."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from stylegan_tl import generate
from stylegan_tl.errors import StyleGANTLError

PKL_V1 = str(FIXTURES / "A_v1_r32" / "network.pkl")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gs_v1():
    from stylegan_tl import load_network_pkl

    return load_network_pkl(PKL_V1)[2]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "stylegan_tl.generate", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def _pixels(path):
    return np.asarray(Image.open(path))


def test_seed_specs_parse_like_nvidia():
    assert generate.parse_seeds("0-3") == [0, 1, 2, 3]
    assert generate.parse_seeds("7, 2,10-11") == [7, 2, 10, 11]
    for bad in ("", "a-b", "5-1", "-3", "1.5", str(2 ** 32)):
        with pytest.raises(StyleGANTLError, match="--seeds"):
            generate.parse_seeds(bad)


def test_latent_of_a_seed_is_randomstate_randn(gs_v1):
    z, overrides = generate.seed_inputs(gs_v1, 42)
    np.testing.assert_array_equal(z, np.random.RandomState(42).randn(1, 64).astype(np.float32))
    assert overrides == {}


def test_cli_writes_pngs_grid_mixing_figure_and_gif(tmp_path):
    result = _cli(f"--network={PKL_V1}", "--seeds=0-3", "--truncation_psi=0.7", f"--outdir={tmp_path}",
                  "--grid", "--mixing", "--mixing_styles=0-1", "--interpolate=3")
    assert result.returncode == 0, result.stderr
    names = sorted(os.listdir(tmp_path))
    assert names == ["grid.png", "interpolation.gif", "seed0000.png", "seed0001.png", "seed0002.png",
                     "seed0003.png", "stylemix.png"]
    assert _pixels(tmp_path / "seed0002.png").shape == (32, 32, 3)
    grid = _pixels(tmp_path / "grid.png")
    assert grid.shape == (64, 64, 3)
    np.testing.assert_array_equal(grid[32:, :32], _pixels(tmp_path / "seed0002.png"))
    mix = _pixels(tmp_path / "stylemix.png")
    assert mix.shape == (5 * 32, 5 * 32, 3)
    np.testing.assert_array_equal(mix[:32, 32:64], _pixels(tmp_path / "seed0000.png"))  # top row: columns
    np.testing.assert_array_equal(mix[64:96, :32], _pixels(tmp_path / "seed0001.png"))  # left column: rows
    with Image.open(tmp_path / "interpolation.gif") as gif:
        assert gif.n_frames == 4 * 3
    assert "images: 4/4" in result.stderr


def test_cli_bad_input_is_a_one_line_error(tmp_path):
    result = _cli(f"--network={PKL_V1}", "--seeds=3-1", f"--outdir={tmp_path}")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: --seeds")
    result = _cli(f"--network={tmp_path / 'missing.pkl'}", f"--outdir={tmp_path}")
    assert result.returncode == 2 and "missing.pkl" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    result = _cli(f"--network={PKL_V1}", "--noise_mode=loud")
    assert result.returncode == 2 and "error: --noise_mode" in result.stderr


def test_same_seed_same_image_and_truncation_matters(gs_v1, tmp_path):
    a = generate.generate_images(gs_v1, [5, 6], truncation_psi=0.7, outdir=str(tmp_path / "a"))
    b = generate.generate_images(gs_v1, [5], truncation_psi=0.7, outdir=str(tmp_path / "b"))
    c = generate.generate_images(gs_v1, [5], truncation_psi=1.0, outdir=str(tmp_path / "c"))
    assert [os.path.basename(p) for p in a] == ["seed0005.png", "seed0006.png"]
    np.testing.assert_array_equal(_pixels(a[0]), _pixels(b[0]))
    assert not np.array_equal(_pixels(a[0]), _pixels(c[0]))
    assert not np.array_equal(_pixels(a[0]), _pixels(a[1]))


def test_noise_modes_differ_are_reproducible_and_leave_the_network_unchanged(gs_v1, tmp_path):
    before = {k: v.numpy().copy() for k, v in gs_v1.vars.items()}
    out = {m: _pixels(generate.generate_images(gs_v1, [1], noise_mode=m, outdir=str(tmp_path / m))[0])
           for m in generate.NOISE_MODES}
    again = _pixels(generate.generate_images(gs_v1, [1], noise_mode="random", outdir=str(tmp_path / "r2"))[0])
    np.testing.assert_array_equal(out["random"], again)
    assert not np.array_equal(out["const"], out["none"])
    assert not np.array_equal(out["const"], out["random"])
    assert all(np.array_equal(before[k], v.numpy()) for k, v in gs_v1.vars.items())
    with pytest.raises(StyleGANTLError, match="noise_mode"):
        generate.generate_images(gs_v1, [1], noise_mode="loud", outdir=str(tmp_path))


def test_conditional_network_needs_a_valid_class(tmp_path):
    from stylegan_tl.network import Network

    G = Network.from_config("stylegan", "G", resolution=8, label_size=3, latent_size=8, dlatent_size=8,
                            mapping_fmaps=8, mapping_layers=2, fmap_base=16, fmap_max=8)
    one = generate.generate_images(G, [0], class_idx=0, outdir=str(tmp_path / "0"))
    two = generate.generate_images(G, [0], class_idx=2, outdir=str(tmp_path / "2"))
    assert not np.array_equal(_pixels(one[0]), _pixels(two[0]))
    with pytest.raises(StyleGANTLError, match="conditional"):
        generate.generate_images(G, [0], outdir=str(tmp_path))
    with pytest.raises(StyleGANTLError, match="out of range"):
        generate.generate_images(G, [0], class_idx=3, outdir=str(tmp_path))


def test_w_interpolation_and_mixing_validate_their_inputs(gs_v1, tmp_path):
    path = generate.interpolation_gif(gs_v1, [0, 1], 2, space="w", outdir=str(tmp_path))
    with Image.open(path) as gif:
        assert gif.n_frames == 4
    with pytest.raises(StyleGANTLError, match="at least 2 seeds"):
        generate.interpolation_gif(gs_v1, [0], 2, outdir=str(tmp_path))
    with pytest.raises(StyleGANTLError, match="out of range"):
        generate.style_mixing_figure(gs_v1, [0], [1], [0, 8], outdir=str(tmp_path))
