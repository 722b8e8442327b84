"""U-Net: shapes per scale, ICNR start == nearest-neighbour, residual start == bicubic, .keras round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from superres_tf.errors import ConfigError
from superres_tf.unet import ICNR, build_unet, model_multiple


def _image(height, width, seed=0):
    return np.random.default_rng(seed).random((1, height, width, 3)).astype(np.float32)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_output_is_scale_times_larger_nhwc(scale):
    model = build_unet(scale=scale, width=4, depth=2)
    out = model(_image(16, 24))
    assert tuple(out.shape) == (1, 16 * scale, 24 * scale, 3)
    assert out.dtype == tf.float32


def test_width_and_depth_are_configurable():
    small, large = build_unet(width=4, depth=1), build_unet(width=8, depth=3)
    assert small.count_params() < large.count_params()
    assert model_multiple(small) == 2 and model_multiple(large) == 8


def test_untrained_residual_model_is_bicubic_upsampling():
    low = _image(12, 20)
    out = build_unet(scale=4, width=4)(low)
    expected = tf.image.resize(low, (48, 80), method="bicubic")
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_icnr_kernel_tiles_one_subkernel_in_depth_to_space_order():
    kernel = keras.ops.convert_to_numpy(ICNR(2)((3, 3, 5, 4 * 6)))
    for block in range(4):
        np.testing.assert_array_equal(kernel[..., block * 6:(block + 1) * 6], kernel[..., :6])


def test_icnr_upsampler_starts_as_nearest_neighbour_of_the_preshuffle_conv():
    model = build_unet(scale=4, width=4, depth=1)
    probe = keras.Model(model.inputs, [model.get_layer("up0_conv").output,
                                       model.get_layer("up0_shuffle").output])
    conv_out, shuffled = (keras.ops.convert_to_numpy(t) for t in probe([_image(8, 12)]))
    channels = shuffled.shape[-1]
    nearest = np.repeat(np.repeat(conv_out[..., :channels], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(shuffled, nearest, rtol=0, atol=0)


def test_keras_round_trip_keeps_outputs(tmp_path):
    model = build_unet(scale=2, width=4, depth=1, residual=False)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    low = _image(8, 8)
    np.testing.assert_allclose(model(low), loaded(low), atol=1e-6)
    assert type(loaded.get_layer("up0_shuffle")).__name__ == "PixelShuffle"


@pytest.mark.parametrize("kwargs", [{"scale": 3}, {"width": 0}, {"encoder": "resnet"},
                                    {"encoder": "vgg16", "depth": 5}])
def test_bad_configuration_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        build_unet(**kwargs)


def test_vgg16_encoder_without_imagenet_weights_says_so(monkeypatch, tmp_path):
    from superres_tf import features
    from superres_tf.errors import WeightsError
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(features, "_download_imagenet", lambda: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(WeightsError, match="not available offline"):
        build_unet(encoder="vgg16", depth=2, encoder_weights="imagenet")
    model = build_unet(scale=2, width=4, encoder="vgg16", depth=2, encoder_weights=None)
    assert tuple(model(_image(16, 16)).shape) == (1, 32, 32, 3)
