"""Metrics: names, the streaming pipeline against a direct computation, records, the command line."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import FIXTURES
from stylegan_tl import convert_images_to_uint8, feature_stats, load_network_pkl, metrics
from stylegan_tl.dataset import load_dataset
from stylegan_tl.errors import StyleGANTLError
from subprocesses import error_lines, run_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(ROOT, "data", "samples", "landscapes")
PKL_C = str(FIXTURES / "C_v2_orig_orig_r16" / "network.pkl")


def stub_embed(x):
    """[N, 8, 8, 3] -> [N, 6]: channel means and standard deviations (cheap, deterministic)."""
    return tf.concat([tf.reduce_mean(x, axis=[1, 2]), tf.math.reduce_std(x, axis=[1, 2])], axis=-1)


def stub_features(is_inception=True):
    return metrics.Features("stub", "test", stub_embed, 8, is_inception)


@pytest.fixture(scope="module")
def gs_c():
    return load_network_pkl(PKL_C)[2]


def test_metric_names_counts_and_the_offline_names():
    fid, kid = metrics.parse_metrics("fid50k_full, kid50k_full")
    assert (fid.kind, fid.num_fakes, kid.kind) == ("fid", 50000, "kid")
    inception, offline = stub_features(True), stub_features(False)
    assert fid.name(inception) == "fid50k_full" and kid.name(inception) == "kid50k_full"
    assert fid.name(offline) == "fd_stub_50k_full" and kid.name(offline) == "kd_stub_50k_full"
    short = metrics.parse_metrics("fid50k_full,kid50k_full", num_fakes=1000)
    assert [m.name(inception) for m in short] == ["fid1k_full", "kid1k_full"]
    assert metrics.parse_metrics("fid2k_full", num_fakes=250)[0].name(offline) == "fd_stub_250_full"
    assert len(metrics.parse_metrics("fid1k_full,fid1k_full")) == 1
    for bad in ("fid50k", "is50k", "", "fid0k_full"):
        with pytest.raises(StyleGANTLError, match="--metrics"):
            metrics.parse_metrics(bad)


def test_real_images_stream_the_folder_as_training_decodes_it(tmp_path):
    for name in sorted(os.listdir(PHOTOS))[:5]:
        if name.endswith(".jpg"):
            Image.open(os.path.join(PHOTOS, name)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    batches = list(metrics.real_images(str(tmp_path), 16, batch_size=2))
    assert [len(b) for b in batches] == [2, 2]
    np.testing.assert_array_equal(np.concatenate(batches), load_dataset(str(tmp_path), 16).images)


def test_evaluator_equals_the_direct_computation(gs_c):
    features = stub_features()
    evaluator = metrics.Evaluator(metrics.parse_metrics("fid1k_full,kid1k_full", num_fakes=70), PHOTOS, 16,
                                  features=features, batch_size=16, seed=3)
    values, details = evaluator.evaluate(gs_c)
    # Direct: all fakes in one call, all reals from the dataset loader, numpy statistics.
    z = np.random.RandomState(3).randn(70, 64).astype(np.float32)
    fakes = convert_images_to_uint8(gs_c.run(z, None, is_validation=True, randomize_noise=False), nchw_to_nhwc=True)
    reals = load_dataset(PHOTOS, 16).images.transpose(0, 2, 3, 1)
    f, r = features(fakes), features(reals)
    fid = feature_stats.frechet_distance(f.mean(0), np.cov(f, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    assert values["fid70_full"] == pytest.approx(fid, rel=1e-6)
    assert values["kid70_full"] == pytest.approx(feature_stats.kernel_distance(f, r, 100, 1000, seed=3), rel=1e-6)
    assert details["fid70_full"]["num_reals"] == 24 and details["fid70_full"]["num_fakes"] == 70
    assert values["fid70_full"] > 0


def test_records_are_nvidias_json_lines_appended_per_snapshot(tmp_path):
    details = {"fid1k_full": dict(features="stub: test", num_fakes=1000, num_reals=24, noise_mode="const",
                                  total_time=75.2)}
    metrics.append_results(str(tmp_path), {"fid1k_full": 12.5}, details, "/x/network-snapshot-000004.pkl")
    metrics.append_results(str(tmp_path), {"fid1k_full": 10.0}, details, "/x/network-snapshot-000008.pkl")
    lines = (tmp_path / "metric-fid1k_full.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 2 and first["results"] == {"fid1k_full": 12.5} and first["metric"] == "fid1k_full"
    assert first["snapshot_pkl"] == "network-snapshot-000004.pkl" and first["total_time_str"] == "1m 15s"
    assert {"total_time", "num_gpus", "timestamp", "num_fakes", "num_reals", "features"} <= set(first)
    latest = metrics.read_results(str(tmp_path))
    assert latest["fid1k_full"]["results"]["fid1k_full"] == 10.0
    assert os.listdir(tmp_path) == ["metric-fid1k_full.jsonl"]


def test_inception_features_give_fid_names_and_2048_d_vectors(tmp_path, monkeypatch):
    import keras

    weights = str(tmp_path / "inception.weights.h5")   # random weights stand in for ImageNet's (offline)
    keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg").save_weights(weights)
    monkeypatch.setattr(metrics, "inception_weights", lambda: weights)
    features = metrics.load_features("auto")
    assert features.is_inception and features.name == "inceptionv3" and weights in features.source
    vectors = features(np.zeros([2, 16, 16, 3], np.uint8))
    assert vectors.shape == (2, 2048) and np.isfinite(vectors).all()
    assert [m.name(features) for m in metrics.parse_metrics("fid50k_full,kid50k_full")] == ["fid50k_full",
                                                                                          "kid50k_full"]


def test_cli_prints_the_metric_and_appends_to_a_training_run(tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    pkl = run / "network-snapshot-000000.pkl"
    pkl.write_bytes(open(PKL_C, "rb").read())
    result = run_module("stylegan_tl.metrics", f"--network={pkl}", f"--data={PHOTOS}", "--metrics=kid1k_full",
                        "--num_fakes=40", "--features=offline")
    if result.returncode == 2 and "no pretrained offline features" in result.stderr:
        pytest.skip("no pretrained offline backbone here")
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("kd_")]
    assert line.split(":")[0].endswith("_40_full") and "(40 fakes, 24 reals" in line
    assert "fid" not in result.stdout.lower()
    [record] = metrics.read_results(str(run)).values()
    assert record["snapshot_pkl"] == pkl.name and record["num_fakes"] == 40


def test_cli_bad_inputs_are_one_line_errors(tmp_path):
    unknown = run_module("stylegan_tl.metrics", f"--network={PKL_C}", f"--data={PHOTOS}", "--metrics=is50k")
    assert unknown.returncode == 2 and error_lines(unknown) == [
        "error: --metrics: unknown metric 'is50k' (known: fid<K>k_full, kid<K>k_full, e.g. fid50k_full)"]
    missing = run_module("stylegan_tl.metrics", f"--network={PKL_C}", f"--data={tmp_path / 'none'}")
    assert missing.returncode == 2 and error_lines(missing) == [f"error: {tmp_path / 'none'}: dataset directory not found"]


def test_pipeline_report_shows_the_metrics_of_the_finetuning_run(tmp_path):
    from pipeline import report
    from pipeline.gan_stages import run_metrics

    details = {"fid1k_full": dict(features="inceptionv3: Keras", num_fakes=1000, num_reals=24, noise_mode="const",
                                  total_time=1.0)}
    pkl = str(tmp_path / "network-snapshot-000004.pkl")
    metrics.append_results(str(tmp_path), {"fid1k_full": 123.456}, details, pkl)
    found = run_metrics(pkl)
    assert found == {"fid1k_full": {"value": 123.456, "snapshot": "network-snapshot-000004.pkl",
                                    "features": "inceptionv3: Keras", "num_fakes": 1000, "num_reals": 24}}
    records = {"finetune": {"status": "done", "result": {"kimg": 4.0, "metrics": found},
                            "outputs": {"snapshot": pkl}}}
    page = report.render_html(report.build_summary({"preset": "test"}, records), [], {})
    assert "<h2>GAN metrics</h2>" in page and "<td>fid1k_full</td><td>123.5</td>" in page
    plain = report.render_html(report.build_summary({"preset": "test"}, {"finetune": {"status": "done"}}), [], {})
    assert "GAN metrics" not in plain and run_metrics(None) == {}


def test_snapshot_hook_writes_the_json_line_and_the_scalar_and_survives_a_failure(gs_c, tmp_path, monkeypatch):
    import types

    from pipeline.report import read_scalars

    monkeypatch.setattr(metrics, "load_features", lambda kind="auto": stub_features())
    opts = types.SimpleNamespace(metrics=["fid1k_full"], data=PHOTOS, letterbox=False)
    pkl = str(tmp_path / "network-snapshot-000002.pkl")
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    with writer.as_default():
        values = metrics.snapshot_metrics(opts, gs_c, pkl, nimg=2000)
    writer.flush()
    direct, _ = metrics.Evaluator(metrics.parse_metrics("fid1k_full"), PHOTOS, 16, features=stub_features()).evaluate(gs_c)
    assert values == direct                    # the CLI's number for the same snapshot
    assert metrics.read_results(str(tmp_path))["fid1k_full"]["results"] == direct
    assert read_scalars(str(tmp_path / "logs"))["Metrics/fid1k_full"] == [(2000, pytest.approx(direct["fid1k_full"]))]

    def unavailable(kind="auto"):
        raise StyleGANTLError("no feature network here")
    monkeypatch.setattr(metrics, "load_features", unavailable)
    other = types.SimpleNamespace(metrics="kid1k_full", data=PHOTOS, letterbox=True)
    assert metrics.snapshot_metrics(other, gs_c, pkl, nimg=4000) == {}
    assert sorted(os.listdir(tmp_path)) == ["logs", "metric-fid1k_full.jsonl"]


def test_training_with_metrics_records_each_snapshot_and_the_cli_agrees(tmp_path, monkeypatch):
    from pipeline.report import read_scalars
    from stylegan_tl.train import run_training

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in sorted(os.listdir(PHOTOS))[:6]:
        if name.endswith(".jpg"):
            Image.open(os.path.join(PHOTOS, name)).save(photos / name)
    monkeypatch.setattr(metrics, "load_features", lambda kind="auto": stub_features())
    result = run_training(str(photos), str(tmp_path / "run"), resume=PKL_C, kimg=0.008, batch=4, snap=1,
                          tick_kimg=0.004, randomize_noise=False, style_mixing_prob=0.0, aug="noaug",
                          metrics="fid1k_full")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metric-fid1k_full.jsonl").read_text().splitlines()]
    snapshots = sorted(name for name in os.listdir(tmp_path / "run") if name.endswith(".pkl"))
    assert lines and {line["snapshot_pkl"] for line in lines} == set(snapshots)
    scalars = read_scalars(result["log_dir"])["Metrics/fid1k_full"]
    assert [value for _, value in scalars] == pytest.approx([line["results"]["fid1k_full"] for line in lines])
    # The same number from the snapshot file, computed as the command line computes it.
    Gs = load_network_pkl(str(tmp_path / "run" / lines[-1]["snapshot_pkl"]))[2]
    again, _ = metrics.Evaluator(metrics.parse_metrics("fid1k_full"), str(photos), 16,
                                 features=stub_features()).evaluate(Gs)
    assert again["fid1k_full"] == pytest.approx(lines[-1]["results"]["fid1k_full"], rel=1e-6)
