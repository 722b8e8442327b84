"""PSNR-Y / SSIM-Y against known values and an independent reference computation."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from superres_tf import metrics
from superres_tf.evaluate import training_overlap_note


def _rgb(seed, shape=(24, 20, 3)):
    return np.random.default_rng(seed).random(shape)


def test_psnr_of_a_known_mse():
    assert metrics.psnr_from_mse(1.0) == pytest.approx(20 * np.log10(255), abs=1e-9)
    assert metrics.psnr_from_mse(0.0) == float("inf")


def test_psnr_y_of_a_uniform_grey_offset():
    a = np.full((10, 10, 3), 0.5)
    b = a + 0.1  # Y differs by 0.1 * (65.481 + 128.553 + 24.966) = 21.9 everywhere
    assert metrics.psnr_y(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 21.9 ** 2), abs=1e-9)


def test_y_uses_bt601_studio_range():
    assert metrics.rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16.0)
    assert metrics.rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235.0)


def test_border_crop_ignores_differences_at_the_edges():
    a = _rgb(0)
    b = a.copy()
    b[:4] = 0.0
    assert metrics.psnr_y(a, b, border=4) == float("inf")
    assert metrics.psnr_y(a, b, border=3) < 40


def test_ssim_of_identical_images_is_one():
    a = _rgb(1)
    assert metrics.ssim_y(a, a, border=2) == pytest.approx(1.0, abs=1e-12)


def _reference_ssim(x, y, size=11, sigma=1.5, peak=255.0):
    """Window-by-window SSIM (Wang et al. 2004), written plainly for comparison."""
    grid = np.arange(size) - (size - 1) / 2
    window = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * sigma ** 2))
    window /= window.sum()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    values = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            px, py = x[i:i + size, j:j + size], y[i:i + size, j:j + size]
            mx, my = (window * px).sum(), (window * py).sum()
            vx, vy = (window * (px - mx) ** 2).sum(), (window * (py - my) ** 2).sum()
            cov = (window * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_window_by_window_reference_and_tensorflow():
    a = _rgb(2)
    b = np.clip(a + np.random.default_rng(3).normal(0, 0.1, a.shape), 0, 1)
    ya, yb = metrics.rgb_to_y(a), metrics.rgb_to_y(b)
    ours = metrics.ssim_y(a, b)
    assert ours == pytest.approx(_reference_ssim(ya, yb), abs=1e-10)
    tf_value = tf.image.ssim(ya[..., None].astype(np.float32), yb[..., None].astype(np.float32), 255.0)
    assert ours == pytest.approx(float(tf_value), abs=1e-4)
    assert ours < 0.99


def test_bicubic_baseline_and_score():
    high = _rgb(4, (32, 32, 3))
    low = high[::4, ::4]
    up = metrics.bicubic_baseline(low, 4)
    assert up.shape == high.shape
    psnr, ssim = metrics.score(high, high, 4)
    assert psnr == float("inf") and ssim == pytest.approx(1.0)


def _evaluate_cli(*args):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-m", "superres_tf.evaluate", *args], cwd=repo,
                          capture_output=True, text=True, timeout=120)


def test_evaluate_cli_names_a_folder_without_usable_images(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _evaluate_cli(f"--data={tmp_path / 'empty'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'empty'}: no image files"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"garbage")
    result = _evaluate_cli(f"--data={tmp_path / 'bad'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {tmp_path / 'bad'}: no usable image to evaluate among 1 file(s)"


def test_evaluation_on_training_photos_says_the_scores_flatter_the_model():
    config = {"train_files": ["a.jpg", "b.jpg"], "heldout_files": ["c.jpg"]}
    note = training_overlap_note(["/d/a.jpg", "/d/b.jpg", "/d/c.jpg"], config)
    assert note.startswith("note: 2 of 3 images") and "--files=heldout" in note
    assert training_overlap_note(["/d/c.jpg"], config) is None
    assert training_overlap_note(["/d/a.jpg"], None) is None


@pytest.mark.parametrize("content, message", [
    ('{"a": 1}', "training config has no 'heldout_files'"),
    ("[1, 2]", "not a training config (expected a JSON object)")])
def test_evaluate_cli_names_a_training_config_it_cannot_use(tmp_path, content, message):
    config = tmp_path / "config.json"
    config.write_text(content)
    result = _evaluate_cli("--data=data/samples/landscapes", "--files=heldout", f"--train_config={config}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {config}: {message}"


def test_ycbcr_of_grey_has_neutral_chroma_and_y_matches_rgb_to_y():
    grey = np.full((2, 2, 3), 0.3)
    ycbcr = metrics.rgb_to_ycbcr(grey)
    np.testing.assert_allclose(ycbcr[..., 1:], 128.0, atol=1e-9)
    np.testing.assert_allclose(ycbcr[..., 0], metrics.rgb_to_y(grey))


def test_a_grey_change_leaves_chroma_psnr_infinite():
    a = _rgb(2)
    b = a + 0.05  # the same offset on R, G and B
    psnr = metrics.psnr_ycbcr(a, b)
    assert psnr["cb"] > 150 and psnr["cr"] > 150  # zero up to float rounding
    assert psnr["y"] < 40


def test_a_colour_fringe_lowers_chroma_psnr_only_where_present():
    a = np.full((16, 16, 3), 0.5)
    b = a.copy()
    b[:, 8, 0] += 0.2  # a red line
    psnr = metrics.psnr_ycbcr(a, b)
    assert psnr["cr"] < 40 and psnr["cb"] < 50


def test_sharpness_is_one_for_the_truth_and_below_one_for_a_blur():
    rng = np.random.default_rng(0)
    high = rng.random((32, 32, 3))
    blurred = (high + np.roll(high, 1, axis=0) + np.roll(high, 1, axis=1) + np.roll(high, 1, axis=(0, 1))) / 4
    assert metrics.sharpness(high, high) == pytest.approx(1.0)
    assert metrics.sharpness(blurred, high, border=2) < 0.5


def test_full_score_agrees_with_score():
    rng = np.random.default_rng(1)
    high, sr = rng.random((40, 36, 3)), rng.random((40, 36, 3))
    full = metrics.full_score(sr, high, 4)
    assert (full["psnr_y"], full["ssim_y"]) == pytest.approx(metrics.score(sr, high, 4))
    assert set(full) == {"psnr_y", "ssim_y", "psnr_cb", "psnr_cr", "sharpness"}


def test_mean_interval_is_the_student_t_interval():
    mean, (low, high) = metrics.mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert (low, high) == pytest.approx((2.0 - 4.303 / np.sqrt(3), 2.0 + 4.303 / np.sqrt(3)))
    _, many = metrics.mean_interval(np.arange(100.0))
    assert many[1] - 49.5 == pytest.approx(1.96 * np.std(np.arange(100.0), ddof=1) / 10)
    assert np.isnan(metrics.mean_interval([1.0])[1][0])


def test_summary_chroma_means_leave_out_grey_photos_and_the_gain_keeps_every_photo():
    from superres_tf.evaluate import summarize
    row = lambda y, cb: {**{f"{k}_{m}": 1.0 for k in ("model", "bicubic") for m in ("ssim_y", "sharpness")},  # noqa: E731
                         "model_psnr_y": y + 1, "bicubic_psnr_y": y, "model_psnr_cb": cb, "bicubic_psnr_cb": cb,
                         "model_psnr_cr": cb, "bicubic_psnr_cr": cb}
    summary = summarize([row(30.0, 40.0), row(20.0, np.inf), row(25.0, 44.0)])
    assert summary["model_psnr_cb"] == summary["bicubic_psnr_cr"] == 42.0
    assert summary["gain_psnr_y"] == pytest.approx(1.0) and summary["model_psnr_y"] == pytest.approx(26.0)
    assert summarize([row(30.0, np.inf)])["model_psnr_cb"] == np.inf
