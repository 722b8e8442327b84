"""Fine-tuning loop: snapshots at NVIDIA's ticks, training_options.json, exact resume, kill -9
recovery, NaN stop, two replicas, CLI errors, the optimizer.

The runs are tiny (16 px fixture C or a from-scratch 16 px net, batch 4-8, 1-4 steps; ticks
shortened with ``tick_kimg``); most of their time is tracing the training graphs once per run.
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
from stylegan_tl.train import TrainingDiverged, TrainingError, run_training

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE_C = str(FIXTURES / "C_v2_orig_orig_r16" / "network.pkl")
DETERMINISTIC = dict(randomize_noise=False, style_mixing_prob=0.0, aug="noaug")
TICK = dict(snap=1, tick_kimg=0.004)  # a snapshot at every tick check (every 4 minibatches) and at the end


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
    """2 steps of batch 4 from fixture C with Freeze-D on one layer (snapshot at the end)."""
    outdir = str(tmp_path_factory.mktemp("run"))
    records = _Records()
    logging.getLogger("absl").addHandler(records)
    try:
        result = run_training(photos, outdir, resume=FIXTURE_C, kimg=0.008, batch=4, freezed=1, **TICK,
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
    assert meta["tick"] == 0 and meta["resume"] == FIXTURE_C
    assert int(arrays["G_opt/step"]) == 2 + 1  # 2 main steps + 1 lazy path-length step


@pytest.mark.slow
def test_the_run_folder_holds_every_resolved_option(first_run):
    result, _ = first_run
    options = json.loads(pathlib.Path(result["options"]).read_text())
    assert result["options"] == os.path.join(result["outdir"], "training_options.json")
    # fixture C is 16 px: NVIDIA's auto at 16 px on one replica (batch 32) gives gamma 0.0002*16^2/32,
    # EMA 32*10/32 kimg; the explicit batch=4 replaces the batch only.
    assert (options["recipe"], options["batch"], options["batch_per_replica"], options["replicas"]) == ("auto", 4, 4, 1)
    assert options["gamma"] == pytest.approx(0.0016) and options["ema_kimg"] == 10.0 and options["lr"] == 0.0025
    assert options["frozen_layers"] == ["16x16/FromRGB"] and options["resume"] == FIXTURE_C
    assert (options["snap"], options["tick_kimg"], options["kimg"], options["aug"]) == (1, 0.004, 0.008, "noaug")
    for key in ("betas", "G_opt", "D_opt", "ema_rampup", "mbstd_group", "style_mixing_prob", "pl_weight",
                "augpipe", "target", "precision"):
        assert key in options, key


@pytest.mark.slow
def test_corrupt_image_is_skipped_and_named_in_the_log(first_run):
    _, lines = first_run
    assert any("broken.jpg" in line and "unreadable" in line for line in lines)


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(first_run, photos, tmp_path):
    result, _ = first_run
    opts = dict(resume=FIXTURE_C, batch=4, freezed=1, **TICK, **DETERMINISTIC)
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
           f"--outdir={outdir}", "--kimg=10", "--batch=4", "--snap=1", "--tick_kimg=0.004"]  # ADA by default
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 400
        while time.time() < deadline:
            found = snap_files.latest_state(str(outdir)) if outdir.exists() else None
            if found and found[2]["nimg"] >= 16:  # the snapshot of tick 0 (4 minibatches)
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
    result = run_training(photos, str(outdir), resume=FIXTURE_C, kimg=(nimg + 4) / 1000, batch=4, **TICK)
    assert result["kimg"] == pytest.approx((nimg + 4) / 1000)
    _, new_meta = snap_files.load_state(result["state"])
    assert new_meta["step"] == meta["step"] + 1
    assert new_meta["ada"]["steps"] == meta["ada"]["steps"] + 1  # ADA state continued too
    assert new_meta["tick"] >= meta["tick"]
    load_network_pkl(result["snapshot"])


@pytest.mark.slow
def test_nan_stops_the_run_and_keeps_the_snapshots(photos, tmp_path):
    G, D, Gs = load_network_pkl(FIXTURE_C)
    D.set_var("Output/bias", np.array([np.nan], np.float32))
    bad = str(tmp_path / "bad.pkl")
    save_network_pkl(bad, G, D, Gs)
    outdir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"d_loss=nan.* at kimg 0\.004 .*last good snapshot: none"):
        run_training(photos, str(outdir), resume=bad, kimg=0.008, batch=4, aug="noaug")
    assert not list(outdir.glob("network-snapshot-*.pkl"))


_TWO_DEVICE_SCRIPT = """
import json, sys
from stylegan_tl.train import run_training
r = run_training(sys.argv[1], sys.argv[2], kimg=0.016, batch=8, resolution=16, cpu_devices=int(sys.argv[3]),
                 G_kwargs=dict(fmap_base=64, fmap_max=32, latent_size=32, dlatent_size=32, mapping_layers=2),
                 D_kwargs=dict(fmap_base=64, fmap_max=32, mbstd_group_size=0), randomize_noise=False,
                 style_mixing_prob=0.0, aug="noaug", gamma=10.0)  # auto's gamma depends on the replica count
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


def test_cli_reports_bad_input_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "stylegan_tl.train", f"--data={tmp_path / 'missing'}",
                          f"--resume={FIXTURE_C}", f"--outdir={tmp_path / 'run'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "missing: dataset directory not found" in last
    assert "Traceback" not in out.stderr


def test_a_flag_taken_as_the_resume_pickle_is_refused_before_anything_starts(photos, tmp_path):
    out = subprocess.run([sys.executable, "-m", "stylegan_tl.train", f"--data={photos}", f"--outdir={tmp_path / 'run'}",
                          "--resume", "--dry_run"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("error: --resume=--dry_run: not a pickle path, URL or official "
                                                   "name (a flag after --resume without a value?)")
    assert not os.path.exists(tmp_path / "run")


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


def test_a_non_finite_gradient_skips_the_step_without_loss_scaling():
    import collections

    import tensorflow as tf

    var = tf.Variable([1.0, 2.0])
    opt = Adam(collections.OrderedDict(w=var), lr=0.1)
    assert not bool(opt.apply([tf.constant([np.nan, 1.0])]))  # as NVIDIA's tflib.Optimizer: skipped
    assert var.numpy().tolist() == [1.0, 2.0] and int(opt.step.numpy()) == 0


def test_mid_growth_v1_pickle_is_refused_or_trained_at_lod_0(photos, tmp_path):
    from stylegan_tl.train import _check_lod

    G, D, Gs = load_network_pkl(str(FIXTURES / "A_v1_r32" / "network.pkl"))
    for net in (G, D, Gs):
        net.set_var("lod", np.float32(1.5))
    grown = str(tmp_path / "grown.pkl")
    save_network_pkl(grown, G, D, Gs)
    with pytest.raises(TrainingError, match=r"saved mid-growth \(lod 1\.5: it was training at 16 px of 32\).*--reset_lod"):
        run_training(photos, str(tmp_path / "refused"), resume=grown, kimg=0.004, batch=4)
    assert run_training(photos, str(tmp_path / "lod0"), resume=grown, reset_lod=True, dry_run=True)["recipe"]["batch"] == 64
    _check_lod(G, D, Gs, grown, reset=True)
    lods = [float(net.get_var(name)) for net in (G, D, Gs) for name in net.vars if name.endswith("lod")]
    assert len(lods) == 5 and lods == [0.0] * 5  # G, its synthesis, D, Gs, its synthesis


def test_unwritable_outdir_is_a_one_line_error_naming_it(photos, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(TrainingError, match="cannot create the output folder"):
        run_training(photos, str(blocker / "out"), resume=FIXTURE_C, kimg=0.004, batch=4)


def _tick_recipe(**kw):
    import types

    return types.SimpleNamespace(**dict(dict(tick_kimg=4.0, snap=2, first_tick=0), **kw))


def _snapshot_steps(recipe, batch, steps, total_steps=None):
    from stylegan_tl.train import _Ticks

    ticks, due = _Ticks(recipe, 0), []
    for step in range(1, steps + 1):
        if ticks.snapshot_due(step * batch, step, step == total_steps):
            due.append((step, ticks.tick))
    return due


def test_snapshots_follow_nvidias_ticks():
    # ADA: tick 0 ends at the first check (4 minibatches), then a tick per 4 kimg, checked every 4
    # minibatches; snapshots at ticks 0, snap, 2*snap, ... and at the end.
    assert _snapshot_steps(_tick_recipe(), batch=500, steps=40, total_steps=38) == [
        (4, 0), (20, 2), (36, 4), (38, 5)]  # ticks end at steps 4, 12, 20, 28, 36 (nimg +4000 each)
    # StyleGAN v1: ticks start at 1 after tick_kimg; snapshots at tick 1 and every snap-th tick.
    assert _snapshot_steps(_tick_recipe(tick_kimg=2.0, snap=10, first_tick=1), batch=1000, steps=40) == [
        (4, 1), (40, 10)]
    from stylegan_tl.train import _Ticks

    old_state = _Ticks(_tick_recipe(), 10000, meta={"nimg": 10000})  # a state file without tick fields
    assert (old_state.tick, old_state.start_nimg) == (2, 10000)


def test_reals_and_fakes_get_independent_augmentations():
    import tensorflow as tf

    from stylegan_tl.recipe import Options, resolve
    from stylegan_tl.train import Trainer

    G, D, Gs = load_network_pkl(FIXTURE_C)
    strategy = tf.distribute.get_strategy()
    recipe = resolve(Options(data="d", outdir="o", batch=4), G, D, 1, FIXTURE_C, False)
    trainer = Trainer(G, D, Gs, strategy, recipe)
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 3, 16, 16)), tf.float32)
    step, p = tf.constant(3, tf.int64), tf.constant(1.0)
    fakes, reals = strategy.run(lambda: (trainer._augment_fn(step, 0, p)(images), trainer._augment_fn(step, 5, p)(images)))
    assert np.abs(fakes.numpy() - reals.numpy()).reshape(4, -1).max(axis=1).min() > 0.1
