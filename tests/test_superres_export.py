"""SR SavedModel: plain TensorFlow in a fresh process gives enhance_image's output; CLI errors."""

import os

import numpy as np
import pytest

from subprocesses import error_lines, run_module, run_plain_tf
from superres_tf.enhance import DEFAULT_MODEL, enhance_image
from superres_tf.export import export_sr_model
from superres_tf.unet import load_model

# Sizes: not multiples of the model's 4 (padding path), the 4 px minimum, a batch of two.
SHAPES = {"odd": (1, 37, 50), "tiny": (1, 4, 4), "pair": (2, 24, 16)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = load_model(DEFAULT_MODEL)
    outdir = str(tmp_path_factory.mktemp("sr") / "saved")
    export_sr_model(model, outdir)
    return model, outdir


def test_fresh_process_without_the_package_matches_enhance_image(exported, tmp_path):
    model, outdir = exported
    rng = np.random.default_rng(0)
    inputs = {name: rng.random(shape + (3,)).astype(np.float32) for name, shape in SHAPES.items()}
    np.savez(tmp_path / "inputs.npz", **inputs)
    result = run_plain_tf(f"""
        import numpy as np, tensorflow as tf
        enhance = tf.saved_model.load({outdir!r}).signatures["enhance"]
        inputs = np.load("inputs.npz")
        np.savez("outputs.npz", **{{k: enhance(images=tf.constant(inputs[k]))["images"].numpy() for k in inputs}})
    """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(tmp_path / "outputs.npz")
    for name, batch in inputs.items():
        expected = np.stack([enhance_image(model, image) for image in batch])
        assert outputs[name].shape == expected.shape == (len(batch), batch.shape[1] * 4, batch.shape[2] * 4, 3)
        np.testing.assert_allclose(outputs[name], expected, atol=1e-5, err_msg=name)


def test_cli_exports_the_default_model_and_refuses_a_used_folder(tmp_path):
    outdir = tmp_path / "sr"
    ok = run_module("superres_tf.export", f"--outdir={outdir}")
    assert ok.returncode == 0, ok.stderr
    assert (outdir / "saved_model.pb").is_file() and (outdir / "variables").is_dir()
    again = run_module("superres_tf.export", f"--outdir={outdir}")
    assert again.returncode == 2
    assert error_lines(again) == [f"error: {outdir}: already exists and is not an empty folder "
                                                 "(choose a new --outdir)"]
    assert sorted(os.listdir(tmp_path)) == ["sr"]  # no temporary folder left behind


def test_cli_bad_model_and_missing_outdir_are_one_line_errors(tmp_path):
    missing = run_module("superres_tf.export", f"--model={tmp_path / 'none.keras'}", f"--outdir={tmp_path / 'out'}")
    assert missing.returncode == 2
    assert error_lines(missing) == [f"error: {tmp_path / 'none.keras'}: model file not found"]
    no_outdir = run_module("superres_tf.export", )
    assert no_outdir.returncode == 2
    assert error_lines(no_outdir) == ["error: --outdir is required (a new folder for the SavedModel)"]
    assert not (tmp_path / "out").exists()
