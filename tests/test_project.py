"""Projector: NVIDIA's schedule and regulariser, distances (LPIPS layout), projections of v1/v2/ADA, CLI."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import FIXTURES
from stylegan_tl import load_network_pkl
from stylegan_tl.dataset import load_image
from stylegan_tl.distance import LPIPS_CHANNELS, LPIPS_TAPS, FeatureDistance, make_distance, read_lpips_weights
from stylegan_tl.errors import StyleGANTLError
from stylegan_tl.project import Schedule, images_for_distance, noise_regularization, project
from subprocesses import error_lines, run_module
from test_torch_weights import tensors, zip_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_PKL = os.path.join(ROOT, "data", "models", "landscapes32-stylegan2.pkl")
PHOTO = os.path.join(ROOT, "data", "samples", "landscapes", "creek.jpg")
FAST = Schedule(w_avg_samples=2000)


class StubBackbone:
    """Stands in for superres_tf.features.Backbone: fixed random 1x1 'features' of the pixels."""

    def __init__(self, name="vgg16", pretrained=True, channels=LPIPS_CHANNELS):
        self.name, self.pretrained = name, pretrained
        self.source = "stub" if pretrained else "RANDOM (stub)"
        rng = np.random.RandomState(0)
        self.kernels = [tf.constant(rng.randn(3, c).astype(np.float32)) for c in channels]
        self.taps_asked = None

    def features(self, images):
        return [tf.nn.relu(tf.einsum("nhwc,cd->nhwd", images, k)) for k in self.kernels]

    def feature_model(self, taps):
        self.taps_asked = taps
        return self.features


def _lpips_file(path, scale=1.0):
    weights = {f"lin{i}.model.1.weight": np.full([1, c, 1, 1], scale * (i + 1), np.float32)
               for i, c in enumerate(LPIPS_CHANNELS)}
    path.write_bytes(zip_bytes(tensors(weights)))
    return str(path)


def test_learning_rate_ramps_up_holds_and_ramps_down_as_nvidia():
    s = Schedule()
    assert s.learning_rate(0.0) == 0.0
    assert s.learning_rate(0.025) == pytest.approx(0.05)          # half-way up the 5 % ramp-up
    assert s.learning_rate(0.05) == pytest.approx(0.1)
    assert s.learning_rate(0.5) == pytest.approx(0.1)
    assert s.learning_rate(0.875) == pytest.approx(0.1 * (0.5 - 0.5 * np.cos(0.5 * np.pi)))
    assert s.learning_rate(0.999) < 1e-4


def test_w_noise_falls_quadratically_to_zero_at_three_quarters():
    s = Schedule()
    assert s.w_noise_scale(0.0, 2.0) == pytest.approx(0.1)
    assert s.w_noise_scale(0.375, 2.0) == pytest.approx(0.1 * 0.25)
    assert s.w_noise_scale(0.75, 2.0) == 0.0 and s.w_noise_scale(0.9, 2.0) == 0.0


def test_noise_regularization_closed_forms():
    checker = np.indices([16, 16]).sum(axis=0) % 2 * 2.0 - 1.0   # +-1: autocorrelation -1 at one pixel
    ones = np.ones([16, 16])
    as_map = lambda a: tf.constant(a[np.newaxis, np.newaxis], tf.float32)  # noqa: E731
    # 16 px: (-1)^2 in x and y; 8 px (2x2 means of a checkerboard = 0): 0.
    assert float(noise_regularization([as_map(checker)])) == pytest.approx(2.0)
    # A constant map: 1 + 1 at 16 px and again at 8 px; two maps add.
    assert float(noise_regularization([as_map(ones), as_map(ones)])) == pytest.approx(8.0)


def test_images_for_distance_maps_to_unit_range_and_averages_down_to_256():
    images = tf.constant(np.linspace(-1, 1, 512 * 512).reshape(1, 1, 512, 512), tf.float32)
    out = images_for_distance(images, channels=1).numpy()
    assert out.shape == (1, 256, 256, 3)
    expected = (images.numpy()[0, 0].reshape(256, 2, 256, 2).mean(axis=(1, 3)) + 1) / 2
    np.testing.assert_allclose(out[0, :, :, 2], expected, atol=1e-6)
    small = images_for_distance(tf.zeros([2, 3, 64, 64]), channels=3)
    assert small.shape == (2, 64, 64, 3) and float(small[0, 0, 0, 0]) == 0.5


def test_lpips_distance_uses_vgg_taps_unit_features_and_the_linear_layers(tmp_path):
    backbone = StubBackbone()
    rng = np.random.RandomState(1)
    target, other = rng.rand(1, 8, 8, 3).astype(np.float32), rng.rand(2, 8, 8, 3).astype(np.float32)
    dist = make_distance(target, "lpips", lpips_weights=_lpips_file(tmp_path / "vgg.pth"), backbone=backbone)
    assert dist.name == "lpips-vgg16" and backbone.taps_asked == LPIPS_TAPS
    expected = np.zeros(2)
    for i, (a, b) in enumerate(zip(backbone.features(other), backbone.features(target))):
        a, b = a.numpy(), b.numpy()
        a = a / (np.sqrt((a ** 2).sum(-1, keepdims=True)) + 1e-10)
        b = b / (np.sqrt((b ** 2).sum(-1, keepdims=True)) + 1e-10)
        expected += ((a - b) ** 2 * (i + 1)).mean(axis=(1, 2)).sum(-1)   # lin_i = i + 1 everywhere
    np.testing.assert_allclose(dist(tf.constant(other)).numpy(), expected, rtol=1e-5)
    assert float(dist(tf.constant(target))[0]) == pytest.approx(0.0, abs=1e-6)


def test_lpips_weights_of_another_network_are_refused(tmp_path):
    path = tmp_path / "alex.pth"
    path.write_bytes(zip_bytes(tensors({"lin0.model.1.weight": np.ones([1, 64, 1, 1], np.float32)})))
    with pytest.raises(StyleGANTLError, match="not LPIPS-VGG weights"):
        read_lpips_weights(str(path))


def test_the_lpips_packages_own_weights_are_read_without_pytorch():
    from stylegan_tl.distance import lpips_package_weights

    path = lpips_package_weights()
    if path is None:
        pytest.skip("the lpips package is not installed (pip install --no-deps lpips)")
    weights = read_lpips_weights(path)
    assert [w.shape for w in weights] == [(c,) for c in LPIPS_CHANNELS]
    assert all((w >= 0).all() and w.max() > 0 for w in weights)   # LPIPS clamps its linear layers at 0


def test_distance_falls_back_to_features_then_pixels_and_says_why(tmp_path):
    target = np.full([1, 8, 8, 3], 0.5, np.float32)
    lite = make_distance(target, "auto", backbone=StubBackbone("efficientnet_lite0", channels=(4, 8)))
    assert lite.name == "features-efficientnet_lite0" and lite.source == "stub"
    no_lin = make_distance(target, "auto", backbone=StubBackbone("vgg16", channels=(4,)),
                           lpips_weights=None) if not _installed_lpips() else None
    if no_lin is not None:
        assert no_lin.name == "features-vgg16" and "no LPIPS linear layers" in no_lin.source
    pixels = make_distance(target, "auto", backbone=StubBackbone(pretrained=False))
    assert pixels.name == "pixels" and "RANDOM (stub)" in pixels.source
    assert float(pixels(tf.constant(np.zeros([1, 8, 8, 3], np.float32)))[0]) == pytest.approx(0.25)
    with pytest.raises(StyleGANTLError, match="--distance=lpips needs ImageNet VGG16 weights"):
        make_distance(target, "lpips", lpips_weights=_lpips_file(tmp_path / "vgg.pth"),
                      backbone=StubBackbone("efficientnet_lite0"))
    with pytest.raises(StyleGANTLError, match="LPIPS weights file not found"):
        make_distance(target, "lpips", lpips_weights=str(tmp_path / "missing.pth"), backbone=StubBackbone())


def _installed_lpips():
    from stylegan_tl.distance import lpips_package_weights
    return lpips_package_weights() is not None


@pytest.mark.parametrize("fixture", ["A_v1_r32", "C_v2_orig_orig_r16", "G_ada_r32"])
def test_short_projection_gets_closer_than_the_mean_w_for_every_family(fixture):
    Gs = load_network_pkl(str(FIXTURES / fixture / "network.pkl"))[2]
    noise_before = {k: v.numpy().copy() for k, v in Gs.vars.items() if "noise" in k and "strength" not in k}
    R = Gs.output_shape[2]
    result = project(Gs, load_image(PHOTO, R), steps=20, distance="pixels", schedule=FAST, record_every=5)
    assert result.w.shape == (1,) + tuple(Gs.components.synthesis.input_shape[1:])
    np.testing.assert_array_equal(result.w, np.repeat(result.w[:, :1], result.w.shape[1], axis=1))
    assert result.final_distance < 0.8 * result.start_distance
    assert result.image.shape == result.target.shape == (R, R, 3) and result.image.dtype == np.uint8
    assert len(result.distances) == 20 and len(result.frames) == 5 and result.frames[0].shape == (R, 2 * R, 3)
    for name, value in noise_before.items():                     # the caller's Gs is left as it was
        np.testing.assert_array_equal(Gs.vars[name].numpy(), value)
        assert abs(result.noise[name].mean()) < 1e-4 and abs(result.noise[name].std() - 1) < 1e-3


def test_the_demo_network_projects_an_embedded_photo_closer_than_the_mean_w():
    Gs = load_network_pkl(DEMO_PKL)[2]
    result = project(Gs, load_image(PHOTO, Gs.output_shape[2]), steps=30, schedule=FAST)
    assert result.distance_name in ("lpips-vgg16", "features-vgg16", "features-efficientnet_lite0", "pixels")
    assert result.final_distance < result.start_distance


def test_same_seed_same_projection_other_seed_other_projection():
    Gs = load_network_pkl(str(FIXTURES / "C_v2_orig_orig_r16" / "network.pkl"))[2]
    target = load_image(PHOTO, 16)
    runs = [project(Gs, target, steps=3, seed=seed, distance="pixels", schedule=FAST) for seed in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0].w, runs[1].w)
    assert np.abs(runs[0].w - runs[2].w).max() > 0


def test_cli_writes_nvidias_files_a_record_and_a_gif(tmp_path):
    pkl = str(FIXTURES / "C_v2_orig_orig_r16" / "network.pkl")
    result = run_module("stylegan_tl.project", f"--network={pkl}", f"--target={PHOTO}", f"--outdir={tmp_path}", "--steps=12", "--save_video",
                  "--distance=pixels", "--w_avg_samples=1000")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["proj.gif", "proj.png", "projected_w.npz", "projection.json",
                                            "target.png"]
    with np.load(tmp_path / "projected_w.npz") as f:
        assert f.files == ["w"] and f["w"].shape == (1, 6, 64) and f["w"].dtype == np.float32
    record = json.loads((tmp_path / "projection.json").read_text())
    assert record["distance"] == "pixels" and record["steps"] == 12
    assert record["final_distance"] < record["start_distance"]
    assert "distance: pixels (requested)" in result.stdout
    assert "step    12/12: dist" in result.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "target.png")), load_image(PHOTO, 16).transpose(1, 2, 0))
    with Image.open(tmp_path / "proj.gif") as gif:
        assert gif.size == (32, 16) and gif.n_frames == 13


def test_cli_bad_inputs_are_one_line_errors(tmp_path):
    pkl = str(FIXTURES / "C_v2_orig_orig_r16" / "network.pkl")
    missing = run_module("stylegan_tl.project", f"--network={pkl}", f"--target={tmp_path / 'none.jpg'}", f"--outdir={tmp_path / 'o'}")
    assert missing.returncode == 2 and error_lines(missing) == [f"error: {tmp_path / 'none.jpg'}: no such file"]
    (tmp_path / "text.jpg").write_text("not an image")
    broken = run_module("stylegan_tl.project", f"--network={pkl}", f"--target={tmp_path / 'text.jpg'}", f"--outdir={tmp_path / 'o'}")
    assert broken.returncode == 2 and len(error_lines(broken)) == 1
    assert error_lines(broken)[0].startswith(f"error: {tmp_path / 'text.jpg'}: not a readable image")
    assert not (tmp_path / "o").exists()
