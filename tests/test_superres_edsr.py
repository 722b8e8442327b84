"""EDSR-like network: shapes, bicubic start, chroma untouched by the luma residual, .keras round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from superres_tf import metrics
from superres_tf.edsr import build_edsr
from superres_tf.errors import ConfigError
from superres_tf.models import build_model, make_arch
from superres_tf.unet import model_multiple


def _image(height, width, seed=0):
    return np.random.default_rng(seed).random((1, height, width, 3)).astype(np.float32)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_output_is_scale_times_larger_for_any_input_size(scale):
    model = build_edsr(scale=scale, width=8, blocks=2)
    assert tuple(model(_image(13, 7)).shape) == (1, 13 * scale, 7 * scale, 3)
    assert model_multiple(model) == 1


def test_untrained_model_is_bicubic_upsampling():
    low = _image(12, 20)
    expected = tf.image.resize(low, (48, 80), method="bicubic")
    np.testing.assert_allclose(build_edsr(4, width=8, blocks=2)(low), expected, atol=1e-6)


def test_luma_output_leaves_chroma_as_bicubic():
    model = build_edsr(4, width=8, blocks=1, output="luma")
    for variable in model.trainable_variables:  # any weights: the residual is still grey
        variable.assign(tf.random.normal(variable.shape, stddev=0.05, seed=1))
    low = _image(10, 10) * 0.5 + 0.25
    out = model(low).numpy()[0].astype(np.float64)
    base = tf.image.resize(low, (40, 40), method="bicubic").numpy()[0].astype(np.float64)
    assert np.abs(out - base).max() > 1e-3
    np.testing.assert_allclose(metrics.rgb_to_ycbcr(out)[..., 1:], metrics.rgb_to_ycbcr(base)[..., 1:], atol=1e-3)


def test_rgb_output_has_more_parameters_than_luma_and_blocks_add_capacity():
    luma, rgb = build_edsr(4, 8, 2, "luma"), build_edsr(4, 8, 2, "rgb")
    assert rgb.count_params() > luma.count_params()
    assert build_edsr(4, 8, 3).count_params() > luma.count_params()


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="output"):
        build_edsr(output="yuv")
    with pytest.raises(ConfigError, match="scale"):
        build_edsr(scale=3)
    with pytest.raises(ConfigError, match="arch"):
        make_arch("srgan", 4)


def test_models_build_from_their_config_arch_and_round_trip_as_keras(tmp_path):
    arch = make_arch("edsr", 2, width=8, blocks=1, output="rgb", depth=5)  # depth is a U-Net option
    assert arch == {"type": "edsr", "scale": 2, "width": 8, "blocks": 1, "output": "rgb"}
    model = build_model(arch)
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(again(_image(8, 8)), model(_image(8, 8)), atol=1e-6)
    assert build_model({"scale": 2, "width": 4, "depth": 1, "convs": 1}).name == "unet_x2"  # old configs
