"""Fine-tuning loop: snapshots, exact resume, kill -9 recovery, NaN stop, two replicas, CLI errors.

The runs are tiny (16 px fixture C or a from-scratch 16 px net, batch 4-8, 1-4 steps); most of
their time is tracing the training graphs once per run.
"""

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from stylegan_tl import load_network_pkl, save_network_pkl
from stylegan_tl import snapshot as snap_files
from stylegan_tl.distribute import Adam
from stylegan_tl.train import (TrainingDiverged, TrainingError, frozen_layer_names, resolve_hyperparams,
                               run_training, Options)

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE_C = str(FIXTURES / "C_v2_orig_orig_r16" / "network.pkl")
DETERMINISTIC = dict(randomize_noise=False, style_mixing_prob=0.0)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return str(folder)


@pytest.fixture(scope="module")
def first_run(photos, tmp_path_factory):
    """2 steps of batch 4 from fixture C with Freeze-D on one layer, snapshot every step."""
    outdir = str(tmp_path_factory.mktemp("run"))
    records = _Records()
    logging.getLogger("absl").addHandler(records)
    try:
        result = run_training(photos, outdir, resume=FIXTURE_C, kimg=0.008, batch=4, snap=0.004, freezed=1,
                              **DETERMINISTIC)
    finally:
        logging.getLogger("absl").removeHandler(records)
    return result, records.lines


def _max_change(before, after):
    return {name: float(np.abs(after.vars[name].numpy() - var.numpy()).max()) for name, var in before.vars.items()}


@pytest.mark.slow
def test_finetune_from_pickle_writes_a_loadable_snapshot(first_run):
    result, _ = first_run
    assert result["kimg"] == pytest.approx(0.008)
    assert os.path.basename(result["snapshot"]) == "network-snapshot-000000.pkl"
    assert all(np.isfinite(v) for v in result["stats"].values())
    G0, D0, Gs0 = load_network_pkl(FIXTURE_C)
    G, D, Gs = load_network_pkl(result["snapshot"])
    g_change, d_change, gs_change = _max_change(G0, G), _max_change(D0, D), _max_change(Gs0, Gs)
    assert all(g_change[k] > 0 for k in G0.trainables)
    assert all(gs_change[k] > 0 for k in Gs0.trainables)  # EMA moved Gs toward G
    frozen = {"16x16/FromRGB/weight", "16x16/FromRGB/bias"}
    assert all(d_change[k] == 0 for k in frozen)
    assert all(d_change[k] > 0 for k in D0.trainables if k not in frozen)
    for net in (G, D, Gs):
        assert all(np.isfinite(v.numpy()).all() for v in net.vars.values())
    outdir = pathlib.Path(result["outdir"])
    assert (outdir / "fakes_init.png").is_file() and (outdir / "fakes000000.png").is_file()
    assert list((outdir / "logs").glob("events.out.tfevents.*"))
    arrays, meta = snap_files.load_state(result["state"])
    assert meta["nimg"] == 8 and meta["step"] == 2 and meta["snapshot"] == "network-snapshot-000000.pkl"
    assert int(arrays["G_opt/step"]) == 2 + 1  # 2 main steps + 1 lazy path-length step


@pytest.mark.slow
def test_corrupt_image_is_skipped_and_named_in_the_log(first_run):
    _, lines = first_run
    assert any("broken.jpg" in line and "unreadable" in line for line in lines)


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(first_run, photos, tmp_path):
    result, _ = first_run
    opts = dict(resume=FIXTURE_C, batch=4, snap=0.004, freezed=1, **DETERMINISTIC)
    resumed = run_training(photos, result["outdir"], kimg=0.016, **opts)
    straight = run_training(photos, str(tmp_path), kimg=0.016, **opts)
    assert resumed["kimg"] == straight["kimg"] == pytest.approx(0.016)
    _, meta = snap_files.load_state(resumed["state"])
    assert meta["nimg"] == 16 and meta["step"] == 4
    # Same weights only if the optimizer slots, pl_mean, counters and data position were restored.
    for a, b in zip(load_network_pkl(resumed["snapshot"]), load_network_pkl(straight["snapshot"])):
        for name, var in a.vars.items():
            np.testing.assert_allclose(var.numpy(), b.vars[name].numpy(), atol=1e-5, err_msg=name)
    # Running again with the same target does nothing and reports the same snapshot.
    again = run_training(photos, result["outdir"], kimg=0.016, **opts)
    assert again["snapshot"] == resumed["snapshot"] and again["kimg"] == pytest.approx(0.016)


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_snapshot(photos, tmp_path):
    outdir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "stylegan_tl.train", f"--data={photos}", f"--resume={FIXTURE_C}",
           f"--outdir={outdir}", "--kimg=10", "--batch=4", "--snap=0.004", "--aug=ada"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 400
        while time.time() < deadline:
            found = snap_files.latest_state(str(outdir)) if outdir.exists() else None
            if found and found[2]["nimg"] >= 8:
                break
            assert proc.poll() is None, "training process ended early"
            time.sleep(0.5)
        else:
            pytest.fail("no second snapshot within the time limit")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _, pkl, meta = snap_files.latest_state(str(outdir))
    nimg = meta["nimg"]
    result = run_training(photos, str(outdir), resume=FIXTURE_C, kimg=(nimg + 4) / 1000, batch=4, snap=0.004,
                          aug="ada")
    assert result["kimg"] == pytest.approx((nimg + 4) / 1000)
    _, new_meta = snap_files.load_state(result["state"])
    assert new_meta["step"] == meta["step"] + 1
    assert new_meta["ada"]["steps"] == meta["ada"]["steps"] + 1  # ADA state continued too
    load_network_pkl(result["snapshot"])


@pytest.mark.slow
def test_nan_stops_the_run_and_keeps_the_snapshots(photos, tmp_path):
    G, D, Gs = load_network_pkl(FIXTURE_C)
    D.set_var("Output/bias", np.array([np.nan], np.float32))
    bad = str(tmp_path / "bad.pkl")
    save_network_pkl(bad, G, D, Gs)
    outdir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"d_loss=nan.* at kimg 0\.004 .*last good snapshot: none"):
        run_training(photos, str(outdir), resume=bad, kimg=0.008, batch=4, snap=0.004)
    assert not list(outdir.glob("network-snapshot-*.pkl"))


_TWO_DEVICE_SCRIPT = """
import json, sys
from stylegan_tl.train import run_training
r = run_training(sys.argv[1], sys.argv[2], kimg=0.016, batch=8, snap=1, resolution=16, cpu_devices=int(sys.argv[3]),
                 G_kwargs=dict(fmap_base=64, fmap_max=32, latent_size=32, dlatent_size=32, mapping_layers=2),
                 D_kwargs=dict(fmap_base=64, fmap_max=32, mbstd_group_size=0), randomize_noise=False,
                 style_mixing_prob=0.0)
print("STATS" + json.dumps(r["stats"]))
"""


@pytest.mark.slow
def test_two_replicas_give_the_same_losses_as_one_device(photos, tmp_path):
    # From-scratch nets without minibatch-stddev (whose groups depend on the per-replica batch).
    stats = []
    for devices in (1, 2):
        out = subprocess.run([sys.executable, "-c", _TWO_DEVICE_SCRIPT, photos, str(tmp_path / str(devices)),
                              str(devices)], cwd=REPO, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        stats.append(json.loads(out.stdout.split("STATS", 1)[1]))
    one, two = stats
    for key in ("d_loss", "g_loss", "r1", "pl_penalty", "pl_length"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key


def test_freeze_d_counts_layers_from_the_top():
    _, D, _ = load_network_pkl(FIXTURE_C)
    assert frozen_layer_names(D, 2) == {"16x16/FromRGB/weight", "16x16/FromRGB/bias",
                                        "16x16/Conv0/weight", "16x16/Conv0/bias"}
    assert "Output/weight" not in frozen_layer_names(D, 7)
    with pytest.raises(TrainingError, match="only 7 freezable layers"):
        frozen_layer_names(D, 8)
    _, D1, _ = load_network_pkl(str(FIXTURES / "A_v1_r32" / "network.pkl"))
    names = frozen_layer_names(D1, 4)  # v1: FromRGB_lod0, 32x32/Conv0, 32x32/Conv1_down, 16x16/Conv0
    assert "16x16/Conv0/weight" in names and not any("FromRGB_lod1" in n for n in names)


def test_hyperparameter_defaults_and_overrides():
    opts = Options(data="d", outdir="o")
    assert resolve_hyperparams(opts, 256, 1) == dict(batch=16, gamma=10.0, lr=0.002, ema_kimg=10.0)
    assert resolve_hyperparams(opts, 1024, 2)["batch"] == 8
    paper = Options(data="d", outdir="o", config="paper256", gamma=100.0)
    assert resolve_hyperparams(paper, 256, 1) == dict(batch=64, gamma=100.0, lr=0.0025, ema_kimg=20.0)
    with pytest.raises(TrainingError, match="does not split over 3 replicas"):
        resolve_hyperparams(Options(data="d", outdir="o", batch=8), 256, 3)


def test_cli_reports_bad_input_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "stylegan_tl.train", f"--data={tmp_path / 'missing'}",
                          f"--resume={FIXTURE_C}", f"--outdir={tmp_path / 'run'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "missing: dataset directory not found" in last
    assert "Traceback" not in out.stderr


def test_adam_matches_a_hand_computation():
    import collections

    import tensorflow as tf

    var = tf.Variable([1.0, -2.0])
    opt = Adam(collections.OrderedDict(w=var), lr=0.1, beta1=0.5, beta2=0.9, epsilon=1e-8)
    m = v = np.zeros(2)
    w = np.array([1.0, -2.0])
    for t, g in enumerate([np.array([0.3, -1.0]), np.array([-0.2, 0.5])], start=1):
        opt.apply([tf.constant(g, tf.float32)])
        m, v = 0.5 * m + 0.5 * g, 0.9 * v + 0.1 * g * g
        w = w - 0.1 * np.sqrt(1 - 0.9 ** t) / (1 - 0.5 ** t) * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5)
    state = opt.state_dict("G_opt")
    np.testing.assert_allclose(state["G_opt/m/w"], m, rtol=1e-5)
    assert int(state["G_opt/step"]) == 2


def test_loss_scaling_skips_a_non_finite_step_and_halves_the_scale():
    import collections

    import tensorflow as tf

    var = tf.Variable([1.0])
    opt = Adam(collections.OrderedDict(w=var), lr=0.1, loss_scaling=True)
    scale = float(opt.loss_scale.numpy())
    assert not bool(opt.apply([tf.constant([np.inf])]))
    assert var.numpy()[0] == 1.0 and float(opt.loss_scale.numpy()) == scale / 2
    assert bool(opt.apply([tf.constant([0.5 * scale / 2])]))  # scaled gradient 0.5
    assert var.numpy()[0] < 1.0 and int(opt.step.numpy()) == 1


def test_fp16_is_refused_on_cpu(photos, tmp_path):
    with pytest.raises(TrainingError, match="--fp16 needs a GPU"):
        run_training(photos, str(tmp_path), resume=FIXTURE_C, fp16=True)


def test_unwritable_outdir_is_a_one_line_error_naming_it(photos, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(TrainingError, match="cannot create the output folder"):
        run_training(photos, str(blocker / "out"), resume=FIXTURE_C, kimg=0.004, batch=4)
