"""run_pipeline.py: stage bookkeeping, the report, bad input, and the whole tiny pipeline."""

import dataclasses
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline import PipelineError, presets, report
from pipeline.records import OutputDir, Stage, StageResult, Workspace, fingerprint, run_stage, trainer_dir
from stylegan_tl import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------
# Bookkeeping on a toy stage (no TensorFlow).


def _toy_stage(calls):
    """A stage copying ``cfg['src']`` to ``out/copy.txt``; records each call's resume flag."""
    def run(cfg, ws, resume):
        calls.append(resume)
        if cfg.get("fail"):
            raise RuntimeError("interrupted")
        out = ws.path("out", "copy.txt")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(cfg["src"]) as f, open(out, "w") as g:
            g.write(f.read() + cfg["suffix"])
        return StageResult({"copy": out}, {"n": 1}, ["careful"])
    return Stage("toy", params=lambda cfg: {"suffix": cfg["suffix"], "steps": cfg["steps"]},
                 inputs=lambda cfg, ws: {"src": cfg["src"]}, run=run, resume_ignores=("steps",))


@pytest.fixture
def toy(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("hello")
    calls = []
    return _toy_stage(calls), {"src": str(src), "suffix": "!", "steps": 1}, Workspace(
        str(tmp_path / "work")), calls


def test_stage_record_holds_params_inputs_outputs_and_warnings(toy):
    stage, cfg, ws, _ = toy
    record = run_stage(stage, cfg, ws, out=io.StringIO())
    on_disk = json.load(open(ws.record_path("toy")))
    assert on_disk == record
    assert record["status"] == "complete" and record["params"] == {"suffix": "!", "steps": 1}
    assert record["outputs"] == {"copy": os.path.join("out", "copy.txt")}
    assert list(record["inputs"]["src"]) == ["."] and len(record["inputs"]["src"]["."][2]) == 64
    assert record["warnings"] == ["careful"] and record["elapsed_sec"] >= 0


def test_rerun_skips_until_params_inputs_or_outputs_change(toy):
    stage, cfg, ws, calls = toy
    run_stage(stage, cfg, ws, out=io.StringIO())
    out = io.StringIO()
    run_stage(stage, cfg, ws, out=out)
    assert out.getvalue() == "skip toy: up to date\n" and len(calls) == 1
    os.utime(cfg["src"], ns=(1, 1))  # touched, same content: still up to date
    run_stage(stage, cfg, ws, out=io.StringIO())
    assert len(calls) == 1
    open(cfg["src"], "w").write("changed")
    run_stage(stage, cfg, ws, out=io.StringIO())
    assert len(calls) == 2 and open(ws.path("out", "copy.txt")).read() == "changed!"
    run_stage(stage, dict(cfg, suffix="?"), ws, out=io.StringIO())
    assert len(calls) == 3
    os.remove(ws.path("out", "copy.txt"))
    run_stage(stage, dict(cfg, suffix="?"), ws, out=io.StringIO())
    assert len(calls) == 4
    run_stage(stage, dict(cfg, suffix="?"), ws, force=True, out=io.StringIO())
    assert calls == [False, False, False, True, False]  # same settings: may resume


def test_interrupted_stage_resumes_and_resume_ignored_params_continue(toy):
    stage, cfg, ws, calls = toy
    with pytest.raises(RuntimeError):
        run_stage(stage, dict(cfg, fail=True), ws, out=io.StringIO())
    assert json.load(open(ws.record_path("toy")))["status"] == "running"
    out = io.StringIO()
    run_stage(stage, cfg, ws, out=out)
    assert calls == [False, True] and "(resuming)" in out.getvalue()
    run_stage(stage, dict(cfg, steps=5), ws, out=io.StringIO())   # longer run: continue
    run_stage(stage, dict(cfg, steps=5, suffix="?"), ws, out=io.StringIO())  # other run: fresh
    run_stage(stage, dict(cfg, steps=9, suffix="?"), ws, force=True, out=io.StringIO())
    assert calls == [False, True, True, False, False]


def test_fingerprint_of_folder_lists_files_and_reuses_hashes(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / ".hidden").write_text("x")
    fp = fingerprint(str(tmp_path))
    assert sorted(fp) == ["a.txt", os.path.join("sub", "b.txt")]
    fake = {k: [v[0], v[1], "reused"] for k, v in fp.items()}
    assert {v[2] for v in fingerprint(str(tmp_path), fake).values()} == {"reused"}
    assert fingerprint(str(tmp_path / "missing")) == {}


# ---------------------------------------------------------------------------------------------
# Presets and the report's pieces.


def test_output_folders_remove_and_replace_only_the_files_the_pipeline_wrote(tmp_path):
    out = OutputDir(str(tmp_path / "enhanced"), str(tmp_path))
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(out.write("old.png", b"ours")).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600
    out.write(os.path.join("sub", "deep.png"), b"ours too")
    (tmp_path / "enhanced" / "holiday.jpg").write_bytes(b"precious")  # added by the user later
    again = OutputDir(str(tmp_path / "enhanced"), str(tmp_path))  # the record survives the process
    again.clear()
    assert sorted(os.listdir(tmp_path / "enhanced")) == [".made_by_run_pipeline", "holiday.jpg"]
    with pytest.raises(PipelineError, match="holiday.jpg: was not written by run_pipeline.py"):
        again.write("holiday.jpg", b"result")
    assert (tmp_path / "enhanced" / "holiday.jpg").read_bytes() == b"precious"
    with pytest.raises(PipelineError, match=r"holds files run_pipeline.py did not write \(holiday.jpg\)"):
        trainer_dir(Workspace(str(tmp_path)), str(tmp_path / "enhanced"), resume=False)
    assert trainer_dir(Workspace(str(tmp_path)), str(tmp_path / "enhanced"), resume=True).owned == set()


def test_a_symlinked_output_folder_is_an_error(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "work").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "work" / "samples")
    with pytest.raises(PipelineError, match=r"work/samples: is a symbolic link"):
        OutputDir(str(tmp_path / "work" / "samples"), str(tmp_path / "work"))
    os.symlink(tmp_path / "elsewhere", tmp_path / "work" / "finetune")
    with pytest.raises(PipelineError, match=r"work/finetune: is a symbolic link"):
        OutputDir(str(tmp_path / "work" / "finetune" / "run-1"), str(tmp_path / "work"))
    assert os.listdir(tmp_path / "elsewhere") == []


def _fake_module(monkeypatch, name, **functions):
    module = type(sys)(name)
    module.__dict__.update(functions)
    monkeypatch.setitem(sys.modules, name, module)


def _completed(ws, stage, **outputs):
    ws.save_record(stage, {"stage": stage, "status": "complete", "outputs": outputs})


def test_generate_keeps_user_files_in_samples_and_never_overwrites_one(tmp_path, monkeypatch):
    import stylegan_tl
    from pipeline.gan_stages import GENERATE
    ws = Workspace(str(tmp_path / "work"))
    _completed(ws, "finetune", snapshot="snap.pkl")

    def generate_images(gs, seeds, truncation_psi, noise_mode, outdir):
        paths = [os.path.join(outdir, f"seed{s:04d}.png") for s in seeds]
        for path in paths:
            open(path, "wb").write(b"sample")
        return paths

    monkeypatch.setattr(stylegan_tl, "load_network_pkl", lambda path: (None, None, "Gs"), raising=False)
    _fake_module(monkeypatch, "stylegan_tl.generate", generate_images=generate_images)
    cfg = presets.make_config("test", work_dir=ws.root, data_dir=str(tmp_path), seeds=[0, 1, 2])
    GENERATE.run(cfg, ws, resume=False)
    samples = tmp_path / "work" / "samples"
    (samples / "my_notes.txt").write_text("mine")
    GENERATE.run(dataclasses.replace(cfg, seeds=[1, 2]), ws, resume=False)  # seed 0 no longer asked for
    assert sorted(os.listdir(samples)) == [".made_by_run_pipeline", "my_notes.txt", "seed0001.png", "seed0002.png"]
    (samples / "seed0005.png").write_bytes(b"a user's file that happens to have a sample's name")
    with pytest.raises(PipelineError, match="seed0005.png: was not written by run_pipeline.py"):
        GENERATE.run(dataclasses.replace(cfg, seeds=[5]), ws, resume=False)
    assert (samples / "seed0005.png").read_bytes().startswith(b"a user's file")
    assert (samples / "seed0001.png").exists() and (samples / "my_notes.txt").exists()


def test_enhance_keeps_user_files_in_its_folder(tmp_path, monkeypatch):
    from pipeline.sr_stages import ENHANCE
    ws = Workspace(str(tmp_path / "work"))
    samples = OutputDir(ws.path("samples"), ws.root)
    samples.write("seed0000.png", b"sample")
    _completed(ws, "generate", samples="samples")
    _completed(ws, "sr_train", model="model.keras")

    def enhance_folder(model, inputs, outdir, tile, overlap, suffix, ext):
        written = [os.path.join(outdir, n) for n in sorted(os.listdir(inputs)) if not n.startswith(".")]
        for path in written:
            open(path, "wb").write(b"enhanced")
        return written, {}

    _fake_module(monkeypatch, "superres_tf.enhance", enhance_folder=enhance_folder)
    _fake_module(monkeypatch, "superres_tf.unet", load_model=lambda path: "model")
    cfg = presets.make_config("test", work_dir=ws.root, data_dir=str(tmp_path))
    ENHANCE.run(cfg, ws, resume=False)
    (tmp_path / "work" / "enhanced" / "keep.jpg").write_bytes(b"mine")
    ENHANCE.run(cfg, ws, resume=False)
    assert sorted(os.listdir(tmp_path / "work" / "enhanced")) == [".made_by_run_pipeline", "keep.jpg", "seed0000.png"]
    assert not [n for n in os.listdir(tmp_path / "work") if n.startswith(".staging")]


def test_presets_and_flag_overrides():
    demo = presets.make_config("demo")
    assert demo.data_dir == presets.DEMO_PHOTOS and demo.sr_model == presets.EMBEDDED
    assert demo.start_photos == presets.EMBEDDED_PHOTOS  # what the shipped starting network saw
    assert presets.make_config("demo", resume_pkl="/elsewhere/net.pkl").start_photos is None
    assert demo.resume_pkl in (presets.SCRATCH, presets.shipped_starting_pickle())
    paper = presets.make_config("paper", data_dir="/photos", kimg=5.0)
    assert (paper.resume_pkl, paper.resolution, paper.kimg) == ("stylegan2-church-config-f", 256, 5.0)
    with pytest.raises(PipelineError, match="--data_dir is required"):
        presets.make_config("paper")
    assert presets.parse_seeds is generate.parse_seeds  # the one seed parser (its rules: test_generate)
    assert presets.parse_seeds("0-2,7") == [0, 1, 2, 7]


class _ColourBackbone:
    """Stand-in feature network: an image's mean colour is its embedding."""
    name, source, pretrained = "colour", "test stand-in", True

    def embed(self, images):
        return np.asarray(images).mean(axis=(1, 2)) + 1e-3


def test_transfer_numbers_show_samples_moving_toward_the_fine_tuning_photos():
    from pipeline.transfer import compare

    def solid(*colours):
        return np.stack([np.full((8, 8, 3), c, np.uint8) for c in colours])
    blue, red = (20, 40, 220), (220, 30, 20)
    tune, others = solid(blue, (30, 60, 200)), solid(red, (200, 180, 20))
    start, tuned = solid(red, (210, 170, 30), blue), solid(blue, (25, 50, 210), (40, 60, 190))
    result = compare(_ColourBackbone(), start, tuned, tune, others)
    assert result["distance"]["finetuned"] < result["distance"]["start"]
    assert result["share"] == {"start": pytest.approx(1 / 3), "finetuned": 1.0}
    assert all(n["photo"] < len(tune) for n in result["nearest"])  # indices into tune + others
    assert "share" not in compare(_ColourBackbone(), start, tuned, tune)


def test_svg_chart_draws_a_polyline_scaled_to_the_box():
    svg = report.svg_chart("loss", [(0, 2.0), (10, 1.0), (20, float("nan")), (30, 0.5)])
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "<polyline" in svg
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 3 and points[0] == "52.0,22.0"   # first point: left edge, top (max)
    assert "no finite values" in report.svg_chart("x", [(0, float("inf"))])


def test_zoom_pair_crops_the_same_region_of_both_images():
    sample = Image.fromarray(np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((4, 4), np.uint8)))
    enhanced = sample.resize((64, 64), Image.NEAREST)
    before, after = report.zoom_pair(sample, enhanced, fraction=0.5, size=32)
    assert before.size == after.size == (32, 32)
    assert np.array_equal(np.asarray(before), np.asarray(after))


def test_a_given_sr_model_brings_its_own_heldout_files_and_vgg_warning(tmp_path):
    from pipeline import sr_stages
    _write_photos(str(tmp_path / "photos"))
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read by these functions")
    (tmp_path / "m.json").write_text(json.dumps({
        "vgg_weights_source": "RANDOM (seed 0)", "train_files": ["p0.jpg", "p1.jpg", "p2.jpg"],
        "heldout_files": ["p3.jpg", "elsewhere.jpg"], "degradation": {"jpeg_quality": [30, 90]}}))
    cfg = presets.make_config("test", data_dir=str(tmp_path / "photos"), sr_model=str(model))
    train, held, source = sr_stages._split(cfg)
    assert held == ["p3.jpg"] and train == ["p0.jpg", "p1.jpg", "p2.jpg", "p4.jpg", "p5.jpg"]
    assert source == f"held-out files of {tmp_path / 'm.json'}"
    assert sr_stages._degradation(str(model)) == {"jpeg_quality": [30, 90]}
    done = sr_stages._given_model(str(model))
    assert done.outputs == {"model": str(model)} and "RANDOM (seed 0)" in done.warnings[0]
    other = presets.make_config("test", data_dir=str(tmp_path / "photos"))  # trains: own split
    assert sr_stages._split(other)[2].startswith("split by file")


# ---------------------------------------------------------------------------------------------
# The command line.


def _cli(*args, cwd, env=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, os.path.join(REPO, "run_pipeline.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind, message", [
    ("missing", "is not a directory"), ("empty", "is empty"), ("no_images", "has no image files")])
def test_bad_data_dir_is_a_one_line_error_with_exit_code_2(tmp_path, kind, message):
    data = tmp_path / "photos"
    if kind != "missing":
        data.mkdir()
    if kind == "no_images":
        (data / "notes.txt").write_text("not a photo")
    proc = _cli("--stage=prepare", f"--data_dir={data}", f"--work_dir={tmp_path / 'w'}",
                cwd=str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {data}: --data_dir ") and message in lines[0]
    assert not (tmp_path / "w").exists()


def test_too_few_photos_are_reported_by_prepare_naming_the_data_dir(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    Image.new("RGB", (40, 40), (200, 100, 0)).save(data / "only.png")
    proc = _cli("--stage=all", "--preset=test", f"--data_dir={data}", f"--work_dir={tmp_path / 'w'}",
                cwd=str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and lines[-1].startswith(f"error: {data}: 1 usable image(s)"), proc.stderr
    assert proc.returncode == 2 and "[2/7]" not in proc.stdout


def test_unwritable_work_dir_is_a_one_line_error(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "photos" / "a.png")
    (tmp_path / "file").write_text("a file, not a folder")
    proc = _cli("--stage=prepare", f"--data_dir={tmp_path / 'photos'}", f"--work_dir={tmp_path / 'file' / 'w'}",
                cwd=str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'file' / 'w'}")
    assert "cannot write (Not a directory" in proc.stderr
    assert (tmp_path / "file").read_text() == "a file, not a folder"


# ---------------------------------------------------------------------------------------------
# The whole pipeline on the tiny `test` preset (real stylegan_tl and superres_tf, ~1 minute).


def _write_photos(folder, count=6):
    """``count`` small JPEG 'photos' (48x40 gradients, each different)."""
    os.makedirs(folder)
    y, x = np.mgrid[0:40, 0:48]
    for i in range(count):
        rgb = np.stack([(x * 5 + i * 20) % 256, (y * 6) % 256, ((x + y) * 3 + i * 40) % 256], -1)
        Image.fromarray(rgb.astype(np.uint8)).save(os.path.join(folder, f"p{i}.jpg"), quality=90)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from pipeline import steps
    root = tmp_path_factory.mktemp("pipeline")
    _write_photos(str(root / "photos"))
    cfg = presets.make_config("test", data_dir=str(root / "photos"), work_dir=str(root / "work"))
    out = io.StringIO()
    records = steps.run(cfg, out=out)
    return cfg, Workspace(cfg.work_dir), records, out.getvalue()


def _visible(folder):
    """File names in ``folder`` without the pipeline's hidden bookkeeping files."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _mtimes(folder):
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


@pytest.mark.slow
def test_all_stages_produce_every_artefact(tiny_run):
    cfg, ws, records, log = tiny_run
    assert [r["status"] for r in records.values()] == ["complete"] * 8
    assert [line.split()[1] for line in log.splitlines() if line.startswith("==>")] == [
        f"[{i}/8]" for i in range(1, 9)]
    assert records["transfer"]["result"] == {"skipped": "no starting network (trained from scratch)"}
    assert len(_visible(ws.path("prepared"))) == 6
    snapshot = ws.output("finetune", "snapshot")
    assert snapshot.endswith(".pkl") and os.path.getsize(snapshot) > 0
    samples = _visible(ws.path("samples"))
    enhanced = _visible(ws.path("enhanced"))
    assert len(samples) == len(enhanced) == len(cfg.seeds)
    for name in samples:
        small = Image.open(ws.path("samples", name))
        big = Image.open(ws.path("enhanced", os.path.splitext(name)[0] + ".png"))
        assert small.size == (16, 16) and big.size == (16 * cfg.sr_scale,) * 2
    summary = json.load(open(ws.path("summary.json")))
    metrics = summary["sr_metrics"]
    assert metrics["num_images"] == 2 and metrics["scale"] == 2 and len(metrics["protocols"]) == 2
    for scores in metrics["protocols"].values():
        assert 10 < scores["model_psnr"] < 60 and 10 < scores["bicubic_psnr"] < 60
    assert summary["gan"]["snapshot"] == ws.rel(snapshot) and len(summary["pairs"]) == 3
    assert any("RANDOM" in w["message"] for w in summary["warnings"])   # sr_backbone="random"
    page = open(ws.path("report.html")).read()
    assert page.count("data:image/png;base64,") == 2 * 3 + 2 * 3  # figure + zoomed crops
    scores = metrics["protocols"]["bicubic downscale only (BI)"]
    assert "PSNR-Y" in page and f"{scores['model_psnr']:.2f}" in page and "RANDOM" in page
    assert "<svg" in page and "<polyline" in page                    # training curves


@pytest.mark.slow
def test_second_run_skips_every_stage_and_force_redoes(tiny_run):
    from pipeline import steps
    cfg, ws, _, _ = tiny_run
    before = {d: _mtimes(ws.path(d)) for d in ("samples", "enhanced")}
    report_mtime = os.stat(ws.path("report.html")).st_mtime_ns
    out = io.StringIO()
    steps.run(cfg, out=out)
    assert [line for line in out.getvalue().splitlines() if line.startswith("skip")] == [
        f"skip {name}: up to date" for name in steps.STAGES]
    assert os.stat(ws.path("report.html")).st_mtime_ns == report_mtime
    out = io.StringIO()
    steps.run(cfg, "enhance", force=True, out=out)
    assert "==> [1/1] enhance" in out.getvalue()
    assert _mtimes(ws.path("enhanced")) != before["enhanced"]
    out = io.StringIO()
    steps.run(cfg, out=out)   # the report follows the redone enhance; the rest is up to date
    ran = [line.split()[-1] for line in out.getvalue().splitlines() if line.startswith("==>")]
    assert ran == ["report"] and _mtimes(ws.path("samples")) == before["samples"]


@pytest.mark.parametrize("args, message", [
    (["--stage=nope"], "error: flag --stage=nope: value should be one of"),
    (["--seeds=x-y"], "error: --seeds=x-y: expected"),
    (["--preset=paper"], "error: --data_dir is required with --preset=paper"),
    (["--stage=generate"], "stage finetune has not completed (run --stage=finetune first)")])
def test_bad_flags_and_missing_stages_are_one_line_errors_with_exit_code_2(tmp_path, args, message):
    proc = _cli(*args, f"--work_dir={tmp_path / 'w'}", cwd=str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr


def test_an_unusable_download_cache_is_a_one_line_error(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "photos" / "a.png")
    (tmp_path / "file").write_text("a file, not a folder")
    env = {"STYLEGAN_TL_CACHE": str(tmp_path / "file" / "cache")}
    proc = _cli("--stage=prepare", f"--data_dir={tmp_path / 'photos'}", f"--work_dir={tmp_path / 'w'}",
                "--resume_pkl=stylegan2-church-config-f", cwd=str(tmp_path), env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {tmp_path / 'file' / 'cache'}: cannot create the download cache folder")
    long_url = "http://127.0.0.1:9/" + "n" * 300 + ".pkl"  # a cache file name longer than NAME_MAX
    proc = _cli("--stage=prepare", f"--data_dir={tmp_path / 'photos'}", f"--work_dir={tmp_path / 'w'}",
                f"--resume_pkl={long_url}", cwd=str(tmp_path), env={"STYLEGAN_TL_CACHE": str(tmp_path / "c")})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: cannot download {long_url}"), \
        proc.stderr
