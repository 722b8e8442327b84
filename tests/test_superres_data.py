"""Degradation, file-level split, bad files skipped and named, paired batches, image I/O."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from superres_tf import dataset, images
from superres_tf.degrade import degrade, mod_crop
from superres_tf.errors import ConfigError, DatasetError, ImageReadError


def _photo(height=64, width=96, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_degrade_divides_the_size_by_scale(scale):
    low = degrade(_photo(), scale=scale, seed=0)
    assert low.shape == (64 // scale, 96 // scale, 3) and low.dtype == np.uint8


def test_degrade_is_deterministic_by_seed_and_keeps_pil_in_pil_out():
    photo = _photo()
    options = dict(scale=2, jpeg_quality=(10, 70), blur_sigma=(0.1, 1.0), noise_sigma=(0, 5))
    np.testing.assert_array_equal(degrade(photo, seed=3, **options), degrade(photo, seed=3, **options))
    assert not np.array_equal(degrade(photo, seed=3, **options), degrade(photo, seed=4, **options))
    assert isinstance(degrade(Image.fromarray(photo), scale=2), Image.Image)


def test_same_size_mode_only_compresses():
    photo = _photo()
    low = degrade(photo, scale=1, jpeg_quality=10, seed=0)
    assert low.shape == photo.shape and not np.array_equal(low, photo)
    np.testing.assert_array_equal(degrade(photo, scale=1, jpeg_quality=None), photo)


@pytest.mark.parametrize("kwargs", [{"scale": 3}, {"jpeg_quality": (70, 10)}, {"resample": "nearest"}])
def test_degrade_rejects_bad_options(kwargs):
    with pytest.raises(ConfigError):
        degrade(_photo(), **kwargs)


def test_mod_crop_makes_sides_multiples_of_scale():
    assert mod_crop(np.zeros((13, 10, 3)), 4).shape == (12, 8, 3)


def test_split_is_by_file_deterministic_and_disjoint():
    paths = [f"/d/{i}.png" for i in range(10)]
    train, held = dataset.split_files(paths, holdout=0.3, seed=1)
    assert len(held) == 3 and not set(train) & set(held) and sorted(train + held) == paths
    assert (train, held) == dataset.split_files(paths, holdout=0.3, seed=1)
    assert dataset.split_files(paths, holdout=["3.png"])[1] == ["/d/3.png"]
    with pytest.raises(DatasetError, match="nope.png"):
        dataset.split_files(paths, holdout=["nope.png"])
    with pytest.raises(DatasetError, match="^/d: no training files left after holding out 1 of 1"):
        dataset.split_files(paths[:1], holdout=0.2)


@pytest.fixture()
def folder(tmp_path):
    for i in range(4):
        Image.fromarray(_photo(seed=i)).save(tmp_path / f"good{i}.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.fromarray(_photo(8, 8)).save(tmp_path / "tiny.png")
    return tmp_path


def test_bad_files_are_skipped_and_named_in_the_log(folder, caplog):
    with caplog.at_level(logging.WARNING):
        train, held = dataset.load_folder(str(folder), min_side=32, holdout=["good0.png"])
    assert [p.split("/")[-1] for p, _ in held] == ["good0.png"] and len(train) == 3
    for name in ("empty.jpg", "broken.png", "tiny.png"):
        assert name in caplog.text


def test_pair_dataset_yields_nhwc_float_batches_in_unit_range(folder):
    train, _ = dataset.load_folder(str(folder), min_side=32, holdout=0.25)
    low, high = next(iter(dataset.pair_dataset(train, scale=4, crop=32, batch_size=3, seed=0)))
    assert tuple(low.shape) == (3, 8, 8, 3) and tuple(high.shape) == (3, 32, 32, 3)
    assert 0.0 <= float(np.min(high)) and float(np.max(high)) <= 1.0
    again = next(iter(dataset.pair_dataset(train, scale=4, crop=32, batch_size=3, seed=0)))
    np.testing.assert_array_equal(low, again[0])


def test_read_image_handles_modes_orientation_and_16_bit(tmp_path):
    grey16 = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10, 1) * 500)
    images.write_image(str(tmp_path / "g16.png"), grey16)
    array, _ = images.read_image(str(tmp_path / "g16.png"))
    assert array.dtype == np.uint16 and np.array_equal(array, grey16)
    palette = Image.fromarray(_photo(10, 20)).convert("P")
    palette.save(tmp_path / "p.png")
    assert images.read_image(str(tmp_path / "p.png"))[0].shape == (10, 20, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(_photo(10, 20)).save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert images.read_image(str(tmp_path / "rot.jpg"))[0].shape == (20, 10, 3)


def test_conversions_round_trip():
    for dtype in (np.uint8, np.uint16):
        pixels = np.array([[0, 1, np.iinfo(dtype).max]], dtype)
        np.testing.assert_array_equal(images.from_unit_float(images.to_unit_float(pixels), dtype), pixels)


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"garbage", "not a readable image")])
def test_unreadable_files_give_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as error:
        images.read_image(str(path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_wrong_mode_and_too_small_images_are_rejected(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(buffer, format="TIFF")
    (tmp_path / "float.tif").write_bytes(buffer.getvalue())
    with pytest.raises(ImageReadError, match="unsupported image mode 'F'"):
        images.read_image(str(tmp_path / "float.tif"))
    Image.fromarray(_photo(3, 30)).save(tmp_path / "thin.png")
    with pytest.raises(ImageReadError, match="too small"):
        images.read_image(str(tmp_path / "thin.png"), min_side=4)


def test_each_optional_step_happens_with_its_probability():
    photo = _photo()
    never = dict(scale=2, jpeg_quality=None, blur_sigma=2.0, blur_prob=0.0, noise_sigma=5.0, noise_prob=0.0)
    always = dict(never, blur_prob=1.0)
    clean = degrade(photo, scale=2, jpeg_quality=None)
    np.testing.assert_array_equal(degrade(photo, seed=1, **never), clean)
    assert not np.array_equal(degrade(photo, seed=1, **always), clean)
    jpeg_rate = np.mean([not np.array_equal(degrade(photo, scale=2, jpeg_quality=50, jpeg_prob=0.5, seed=s), clean)
                         for s in range(40)])
    assert 0.2 < jpeg_rate < 0.8


def test_photo_pyramid_keeps_the_copies_large_enough_for_a_crop():
    copies = dataset.photo_pyramid(_photo(100, 200), (1.0, 0.5, 0.3), min_side=40)
    assert [c.shape for c in copies] == [(100, 200, 3), (50, 100, 3)]
    with pytest.raises(ConfigError, match="photo scale"):
        dataset.photo_pyramid(_photo(), (1.5,), min_side=8)


def test_pair_dataset_draws_crops_from_downscaled_copies(folder):
    train, _ = dataset.load_folder(str(folder), min_side=32, holdout=0.25)
    whole = next(iter(dataset.pair_dataset(train, scale=4, crop=32, batch_size=8, seed=0, photo_scales=(1.0,))))
    mixed = next(iter(dataset.pair_dataset(train, scale=4, crop=32, batch_size=8, seed=0,
                                           photo_scales=(1.0, 0.5))))
    assert tuple(mixed[1].shape) == (8, 32, 32, 3)
    assert not np.array_equal(whole[1], mixed[1])


@pytest.mark.parametrize("flips, orientations", [("horizontal", 2), ("dihedral", 8)])
def test_crops_come_mirrored_or_in_every_orientation_of_the_square(flips, orientations):
    array = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)  # no symmetry: each orientation differs
    rng = np.random.default_rng(0)
    seen = {random_high(array, rng, flips).tobytes() for _ in range(200)}
    assert len(seen) == orientations


def random_high(array, rng, flips):
    _, high = dataset.random_pair(array, crop=8, scale=1, rng=rng, degradation={"jpeg_prob": 0.0}, flips=flips)
    return (high * 255).round().astype(np.uint8)
