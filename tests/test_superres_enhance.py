"""Tiled enhance == untiled away from borders; alpha, grey, 16-bit, PIL, EXIF; CLI errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from superres_tf import enhance, images
from superres_tf.enhance import enhance_image, ramp, tile_starts
from superres_tf.errors import ConfigError, ImageReadError
from superres_tf.unet import build_unet
from test_image_limits import png_claiming

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def small_field_model():
    """Random x2 model with a receptive field of ~3 input pixels (depth 0, one conv per stage)."""
    import keras
    keras.utils.set_random_seed(0)
    return build_unet(scale=2, width=8, depth=0, convs=1, residual=False)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, small_field_model):
    path = str(tmp_path_factory.mktemp("model") / "sr_x2.keras")
    small_field_model.save(path)
    return path


def _rgb(height, width, seed=0):
    return np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)


def test_ramps_facing_each_other_sum_to_one_and_start_at_zero():
    left, right = ramp(40, True, False, 16), ramp(40, False, True, 16)
    assert left[0] == 0 and right[-1] == 0 and left[-1] == 1
    np.testing.assert_allclose(right[-16:] + left[:16], 1.0, atol=1e-6)


def test_tiles_cover_the_image_with_aligned_starts():
    starts = tile_starts(100, 32, 8, 4)
    assert starts[0] == 0 and all(s % 4 == 0 for s in starts) and starts[-1] + 32 >= 100
    assert all(b - a <= 32 - 8 for a, b in zip(starts, starts[1:]))


def test_tiled_equals_untiled_away_from_borders(small_field_model):
    image = _rgb(70, 90)
    whole = enhance_image(small_field_model, image, tile=1000)
    tiled = enhance_image(small_field_model, image, tile=32, overlap=16)
    assert tiled.shape == whole.shape == (140, 180, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tiled_and_untiled_agree_for_a_unet_with_pooling():
    import keras
    keras.utils.set_random_seed(1)
    model = build_unet(scale=2, width=4, depth=1, convs=1, residual=False)
    image = _rgb(60, 76, seed=1)
    whole = enhance_image(model, image, tile=1000)
    tiled = enhance_image(model, image, tile=48, overlap=40)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_rgba_alpha_is_upscaled_separately_with_bicubic(small_field_model):
    rgba = (np.random.default_rng(2).random((20, 24, 4)) * 255).astype(np.uint8)
    out = enhance_image(small_field_model, rgba, tile=64)
    assert out.shape == (40, 48, 4) and out.dtype == np.uint8
    alpha = Image.fromarray(rgba[..., 3].astype(np.float32) / 255, mode="F").resize((48, 40), Image.BICUBIC)
    np.testing.assert_array_equal(out[..., 3], images.from_unit_float(np.asarray(alpha)))


def test_grey_16_bit_and_pil_inputs_keep_their_kind(small_field_model):
    grey16 = (np.random.default_rng(3).random((16, 16)) * 65535).astype(np.uint16)
    out = enhance_image(build_unet(scale=2, width=4, depth=0), grey16)  # starts as bicubic
    assert out.shape == (32, 32) and out.dtype == np.uint16 and len(np.unique(out)) > 256
    pil = enhance_image(small_field_model, Image.fromarray((grey16 >> 8).astype(np.uint8)))
    assert pil.mode == "L" and pil.size == (32, 32)


def test_bad_arguments_are_rejected(small_field_model):
    with pytest.raises(ConfigError):
        enhance_image(small_field_model, _rgb(16, 16), tile=32, overlap=32)
    with pytest.raises(ImageReadError, match="too small"):
        enhance_image(small_field_model, _rgb(2, 16))


def test_enhance_file_applies_exif_orientation(small_field_model, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray((_rgb(10, 20) * 255).astype(np.uint8)).save(tmp_path / "in.jpg", exif=exif.tobytes())
    enhance.enhance_file(small_field_model, str(tmp_path / "in.jpg"), str(tmp_path / "out.png"))
    with Image.open(tmp_path / "out.png") as result:
        assert result.size == (20, 40)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "superres_tf.enhance", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_enhances_a_folder_and_names_bad_files(model_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray((_rgb(12, 16) * 255).astype(np.uint8)).save(folder / "a.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_claiming(20000, 10000))  # 65 bytes claiming 200 Mpx
    result = _cli("-i", str(folder), "-o", str(tmp_path / "out"), "--model", model_path, "-s", "2")
    assert result.returncode == 1
    assert os.path.exists(tmp_path / "out" / "a_out.png")
    assert f"error: {folder / 'empty.jpg'}: empty file (0 bytes)" in result.stderr
    assert f"error: {folder / 'bomb.png'}: too many pixels" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_reports_each_bad_file_once_and_an_unwritable_output_without_traceback(model_path, tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    result = _cli("-i", str(tmp_path / "text.png"), "-o", str(tmp_path / "out"), "--model", model_path)
    assert result.returncode == 2
    assert result.stderr.count("text.png") == 1
    assert f"error: {tmp_path / 'text.png'}: not a readable image (not a JPEG, PNG, WEBP, BMP, TIFF or GIF file)" in result.stderr
    Image.fromarray((_rgb(12, 16) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    result = _cli("-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "text.png" / "out"), "--model", model_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"error: {tmp_path / 'text.png' / 'out' / 'a_out.png'}: cannot write" in result.stderr


def test_cli_never_overwrites_an_input(model_path, tmp_path):
    Image.fromarray((_rgb(12, 16) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    result = _cli("-i", str(tmp_path), "-o", str(tmp_path), "--suffix=", "--model", model_path)
    assert result.returncode == 2
    assert f"error: {tmp_path / 'a.png'}: the output {tmp_path / 'a.png'} would overwrite it" in result.stderr
    assert (tmp_path / "a.png").read_bytes() == before
    # The output of a.jpg would be the user's (different) a.png: refused before anything is written.
    Image.fromarray((_rgb(12, 16) * 200).astype(np.uint8)).save(tmp_path / "a.jpg")
    result = _cli("-i", str(tmp_path), "-o", str(tmp_path), "--ext=png", "--suffix=", "--model", model_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'a.png'}: the output {tmp_path / 'a.png'} would overwrite it (an input; use another "
        "-o or a --suffix); nothing was written")
    assert (tmp_path / "a.png").read_bytes() == before and sorted(os.listdir(tmp_path)) == ["a.jpg", "a.png"]


def _photos(folder, names):
    folder.mkdir(exist_ok=True)
    for name in names:
        Image.fromarray((_rgb(12, 16) * 255).astype(np.uint8)).save(folder / name)
    return sorted(str(folder / n) for n in names)


def test_two_inputs_mapped_to_one_output_are_refused_before_writing(tmp_path):
    paths = _photos(tmp_path / "in", ["a.jpg", "a.png", "b.png"])
    with pytest.raises(ConfigError, match=r"a.jpg and .*a.png would both be written to .*out/a_x.png"):
        enhance.plan_outputs(paths, str(tmp_path / "out"), suffix="x", ext="png")
    targets, failed = enhance.plan_outputs(paths, str(tmp_path / "out"), suffix="x", ext="auto")
    assert sorted(os.path.basename(t) for t in targets.values()) == ["a_x.jpg", "a_x.png", "b_x.png"]
    assert not failed and not (tmp_path / "out").exists()


def test_output_paths_follow_alpha_and_16_bit_from_the_header(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGBA", (8, 8)).save(folder / "alpha.webp")
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(folder / "deep.tif")
    Image.new("P", (8, 8)).save(folder / "palette.bmp")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    paths = images.list_images(str(folder))
    targets, failed = enhance.plan_outputs(paths, str(tmp_path / "o"), suffix="", ext="auto")
    assert sorted(os.path.basename(t) for t in targets.values()) == ["alpha.png", "deep.png", "palette.bmp"]
    assert list(failed) == [str(folder / "broken.jpg")]
    for path, target in targets.items():  # the header's verdict is what read_image gives
        array, _ = images.read_image(path)
        assert target == enhance.output_path(path, str(tmp_path / "o"), "", "auto", array.shape[-1],
                                             array.dtype == np.uint16)


def test_written_images_get_the_usual_permissions(tmp_path):
    old_mask = os.umask(0o022)
    try:
        images.write_image(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    finally:
        os.umask(old_mask)
    assert os.stat(tmp_path / "a.png").st_mode & 0o777 == 0o644  # not mkstemp's owner-only 0o600


@pytest.mark.parametrize("content", [b"", b"not a zip", b"\x80\x04K\x01."])
def test_cli_model_that_is_not_a_keras_file_is_named(tmp_path, content):
    (tmp_path / "m.keras").write_bytes(content)
    result = _cli("-i", str(tmp_path), "--model", str(tmp_path / "m.keras"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {tmp_path / 'm.keras'}: not a Keras .keras model (not a zip archive)"
    (tmp_path / "m.pkl").write_bytes(content)
    result = _cli("-i", str(tmp_path), "--model", str(tmp_path / "m.pkl"))
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {tmp_path / 'm.pkl'}: not a Keras model file (expected a .keras or .h5 file)"


def test_cli_missing_model_is_a_one_line_error(tmp_path):
    result = _cli("-i", str(tmp_path), "--model", str(tmp_path / "nope.keras"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope.keras'}: model file not found"
