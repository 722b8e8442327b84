"""Perceptual loss: zero for identical images, grows with distortion, Gram term, weights sources
(the backbones themselves: tests/test_superres_features.py)."""

import keras
import numpy as np
import pytest

from superres_tf import features
from superres_tf.errors import ConfigError, WeightsError
from superres_tf.perceptual import PerceptualLoss, gram_matrix

LAYERS = ("block1_conv2", "block2_conv2")


@pytest.fixture(scope="module")
def loss():
    return PerceptualLoss(backbone="random", layers=LAYERS, weights=(1.0, 1.0), gram_weights=(1.0, 1.0))


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(1, 48, 48, 3)), axis=1), axis=2)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return smooth.astype(np.float32)


def test_identical_images_give_zero_loss_in_every_term(loss, photo):
    assert float(keras.ops.mean(loss(photo, photo))) == pytest.approx(0.0, abs=1e-7)
    terms = loss.per_term(photo, photo)
    assert set(terms) == {"pixel", "feat/block1_conv2", "feat/block2_conv2", "gram/block1_conv2",
                          "gram/block2_conv2"}
    assert all(float(np.max(v)) < 1e-6 for v in terms.values())


def test_loss_grows_with_distortion(loss, photo):
    noise = np.random.default_rng(1).normal(size=photo.shape).astype(np.float32)
    values = [float(loss(photo, np.clip(photo + s * noise, 0, 1))) for s in (0.01, 0.05, 0.2)]
    assert values[0] < values[1] < values[2]


def test_gram_matrix_is_normalised_outer_product():
    features = np.random.default_rng(2).normal(size=(2, 3, 4, 5)).astype(np.float32)
    flat = features.reshape(2, 12, 5)
    expected = np.einsum("nkc,nkd->ncd", flat, flat) / (3 * 4 * 5)
    np.testing.assert_allclose(gram_matrix(features), expected, rtol=1e-5)


def test_gram_term_ignores_where_texture_is_but_features_do_not(loss, photo):
    shifted = np.roll(photo, 7, axis=2)
    terms = {k: float(np.mean(v)) for k, v in loss.per_term(photo, shifted).items()}
    assert terms["gram/block1_conv2"] < 0.25 * terms["feat/block1_conv2"]


def test_only_pixel_term_when_no_layers(photo):
    pixel_only = PerceptualLoss(backbone="random", layers=(), weights=(), gram_weights=(), pixel_weight=2.0)
    other = np.zeros_like(photo)
    assert float(pixel_only(photo, other)) == pytest.approx(2.0 * float(np.mean(photo)), rel=1e-5)


def test_missing_imagenet_weights_fall_back_loudly_to_seeded_random(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(features, "_download_imagenet", lambda: (_ for _ in ()).throw(OSError("offline")))
    with caplog.at_level("WARNING"):
        first = PerceptualLoss(vgg_weights="imagenet", layers=LAYERS[:1], weights=(1.0,), gram_weights=None)
    second = PerceptualLoss(vgg_weights="imagenet", layers=LAYERS[:1], weights=(1.0,), gram_weights=None)
    assert first.weights_source.startswith("RANDOM")
    assert "RANDOM VGG16" in caplog.text and str(tmp_path) in caplog.text
    for a, b in zip(first.features.get_weights(), second.features.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weights_file_path_is_loaded(tmp_path, photo):
    source_model, _ = features.load_vgg16(None, seed=5)
    path = str(tmp_path / "vgg16.weights.h5")
    source_model.save_weights(path)
    from_file = PerceptualLoss(vgg_weights=path, layers=LAYERS[:1], weights=(1.0,), gram_weights=None)
    assert from_file.weights_source == "file " + path
    np.testing.assert_array_equal(from_file.features.get_weights()[0], source_model.get_weights()[0])


def test_bad_weights_and_layers_raise_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        PerceptualLoss(vgg_weights=str(tmp_path / "missing.h5"))
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="broken.weights.h5"):
        PerceptualLoss(vgg_weights=str(broken))
    with pytest.raises(ConfigError, match="unknown VGG16 layers"):
        PerceptualLoss(vgg_weights=None, layers=("block9_conv1",), weights=(1.0,), gram_weights=None)


def test_the_vgg16_only_spelling_still_works():
    legacy = PerceptualLoss(vgg_weights=None, layers=LAYERS[:1], weights=(1.0,))
    assert legacy.backbone.name == "vgg16" and not legacy.backbone.pretrained
    assert legacy.get_config()["backbone"] == "random"
    with pytest.raises(ConfigError, match="1 layers but no weights"):
        PerceptualLoss(backbone="random", layers=LAYERS[:1])
