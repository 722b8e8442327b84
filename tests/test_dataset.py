"""Image folder / TFRecords -> seeded tf.data stream of NCHW float images in [-1, 1]."""

import logging

import numpy as np
import pytest
from PIL import Image

from stylegan_tl import dataset
from stylegan_tl.errors import DatasetError


def _save(path, array, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path, **kw) if mode else Image.fromarray(array).save(path, **kw)
    return path


def _rgb(value, size=(8, 8)):
    return np.full(size + (3,), value, np.uint8)


def test_every_kind_of_image_becomes_rgb_nchw(tmp_path):
    _save(tmp_path / "a_rgb.jpg", _rgb((200, 10, 10)), quality=100)
    _save(tmp_path / "b_grey.png", np.full((8, 8), 77, np.uint8))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[:, 4:, 3] = 255, 255  # left half transparent red, right half opaque red
    _save(tmp_path / "c_rgba.png", rgba)
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.save(tmp_path / "d_palette.png")
    _save(tmp_path / "e_16bit.png", np.full((8, 8), 65535, np.uint16))
    _save(tmp_path / "sub" / "f_nested.webp", _rgb((0, 0, 250)), lossless=True)
    (tmp_path / "notes.txt").write_text("not an image")

    arr = dataset.load_dataset(str(tmp_path), resolution=4)
    assert arr.images.dtype == np.uint8 and arr.images.shape == (6, 3, 4, 4)
    a, grey, rgba_out, pal_out, deep, nested = arr.images
    assert abs(int(a[0, 2, 2]) - 200) <= 3 and a[1, 2, 2] < 20
    assert (grey == 77).all()
    assert (rgba_out[:, :, 0] == 0).all() and (rgba_out[0, :, 3] == 255).all()  # alpha composited on black
    assert (pal_out[:, 2, 2] == [10, 200, 30]).all()
    assert (deep == 255).all()
    assert nested[2, 2, 2] > 240 and nested[0, 2, 2] < 10
    assert arr.skipped == [] and arr.label_size == 0


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (32, 16), (255, 255, 255))  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise -> portrait
    img.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    chw = dataset.load_image(str(tmp_path / "rot.jpg"), 16, letterbox=True)
    # Portrait content letterboxed into a square: black bars left and right, not top and bottom.
    assert chw[:, :, 0].max() < 30 and chw[:, 0, 8].min() > 220


def test_center_crop_versus_letterbox(tmp_path):
    wide = np.zeros((16, 32, 3), np.uint8)
    wide[:, :8] = 255  # white left quarter, cut away by the centre crop
    _save(tmp_path / "wide.png", wide)
    crop = dataset.load_image(str(tmp_path / "wide.png"), 16)
    box = dataset.load_image(str(tmp_path / "wide.png"), 16, letterbox=True)
    assert crop.max() == 0
    assert box[:, :4].max() == 0 and box[:, 4:12, :3].min() > 200  # bars top/bottom, white at left


def test_corrupt_file_is_skipped_and_named(tmp_path, caplog):
    for i in range(3):
        _save(tmp_path / f"ok{i}.png", _rgb(i * 50))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with caplog.at_level(logging.WARNING):
        arr = dataset.load_dataset(str(tmp_path), resolution=8)
    assert len(arr) == 3 and arr.skipped == ["broken.jpg"]
    assert "broken.jpg" in caplog.text and "1 unreadable" in caplog.text


def test_empty_or_too_small_dataset_is_a_one_line_error(tmp_path):
    with pytest.raises(DatasetError, match="need at least 1") as e:
        dataset.load_dataset(str(tmp_path), resolution=8)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    _save(tmp_path / "one.png", _rgb(9))
    with pytest.raises(DatasetError, match="1 usable image.*need at least 5"):
        dataset.load_dataset(str(tmp_path), resolution=8, min_images=5)
    with pytest.raises(DatasetError, match="not found"):
        dataset.load_dataset(str(tmp_path / "missing"), resolution=8)


def test_decoded_cache_is_reused_and_keeps_the_skip_list(tmp_path):
    src, cache = tmp_path / "src", tmp_path / "cache"
    for i in range(2):
        _save(src / f"{i}.png", _rgb(i * 100))
    (src / "bad.png").write_bytes(b"junk")
    first = dataset.load_dataset(str(src), 8, cache_dir=str(cache))
    assert len(list(cache.glob("dataset-*.npy"))) == 1
    second = dataset.load_dataset(str(src), 8, cache_dir=str(cache))
    assert isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(first.images, second.images)
    assert second.skipped == ["bad.png"]
    dataset.load_dataset(str(src), 4, cache_dir=str(cache))  # other settings: another cache entry
    assert len(list(cache.glob("dataset-*.npy"))) == 2


def test_tfrecords_round_trip_all_levels_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    labels = np.eye(5, dtype=np.float32)
    paths = dataset.write_tfrecords(str(tmp_path / "ds"), images, labels, shuffle_seed=None)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "ds-r02.tfrecords", "ds-r03.tfrecords", "ds-rxx.labels"]
    top = dataset.load_dataset(str(tmp_path / "ds"), resolution=None)
    np.testing.assert_array_equal(top.images, images)
    np.testing.assert_array_equal(top.labels, labels)
    low = dataset.read_tfrecords(str(tmp_path / "ds"), 4)
    box = images.astype(np.float32).reshape(5, 3, 4, 2, 4, 2).mean(axis=(3, 5))
    np.testing.assert_array_equal(low.images, np.clip(np.rint(box), 0, 255).astype(np.uint8))
    with pytest.raises(DatasetError, match="no 16x16 level"):
        dataset.read_tfrecords(str(tmp_path / "ds"), 16)


def test_stream_is_seeded_scaled_and_splits_over_replicas(tmp_path):
    images = np.arange(6 * 3 * 4 * 4, dtype=np.uint8).reshape(6, 3, 4, 4) * 3
    arr = dataset.ImageArray(images, np.zeros((6, 0), np.float32), "mem")
    whole = list(dataset.make_tf_dataset(arr, 4, seed=1, mirror=True).take(3))
    again = list(dataset.make_tf_dataset(arr, 4, seed=1, mirror=True).take(3))
    x = whole[0][0].numpy()
    assert x.shape == (4, 3, 4, 4) and x.dtype == np.float32 and -1 <= x.min() and x.max() <= 1
    for (a, _), (b, _) in zip(whole, again):
        np.testing.assert_array_equal(a, b)
    # The first epoch (6 samples) visits every image once.
    seen = np.concatenate([dataset.make_batch(arr, 3, k, seed=1)[0] for k in range(2)])
    assert sorted(s.sum() for s in seen) == sorted(s.sum() for s in images)
    # Two replicas get the two halves of the same global batches, in element order (b0r0, b0r1, ...).
    halves = [h.numpy() for h, _ in dataset.make_tf_dataset(arr, 4, seed=1, mirror=True,
                                                              num_replicas=2, local_replicas=2).take(6)]
    for k in range(3):
        np.testing.assert_array_equal(np.concatenate(halves[2 * k:2 * k + 2]), whole[k][0].numpy())
    # Resuming at batch 2 continues the same stream.
    resumed = next(iter(dataset.make_tf_dataset(arr, 4, seed=1, mirror=True, start_batch=2)))[0]
    np.testing.assert_array_equal(resumed, whole[2][0])


def test_mirror_flips_about_half_the_samples():
    images = np.tile(np.arange(4, dtype=np.uint8), (64, 3, 4, 1))  # every row 0,1,2,3
    arr = dataset.ImageArray(images, np.zeros((64, 0), np.float32), "mem")
    out, _ = dataset.make_batch(arr, 64, 0, seed=3, mirror=True)
    flipped = out[:, 0, 0, 0] == 3
    assert 16 < flipped.sum() < 48
    np.testing.assert_array_equal(out[flipped], images[flipped][..., ::-1])


def test_probe_resolution(tmp_path):
    _save(tmp_path / "x.png", np.zeros((300, 200, 3), np.uint8))
    assert dataset.probe_resolution(str(tmp_path)) == 128
