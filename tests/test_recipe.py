"""The training recipe: NVIDIA's values for each cfg, resolution and replica count; Freeze-D as
NVIDIA counts it; mixed precision defaults; the options file and the generated flags.

The expected numbers are NVIDIA's, worked out by hand from ADA-TF ``train.py`` (``--cfg=auto``:
batch ``max(min(g*min(4096//res, 32), 64), g)``, gamma ``0.0002*res^2/batch``, EMA ``batch*10/32``,
lr 0.0025 below 1024 px) and StyleGAN ``train.py`` / ``training_schedule`` for v1 pickles.
"""

import json
import os

import pytest

from conftest import FIXTURES
from stylegan_tl import save_network_pkl
from stylegan_tl.network import Network, create_networks, load_network_pkl
from stylegan_tl.recipe import (Options, RecipeError, ada_spec, frozen_layer_names, frozen_variables,
                                lazy_adam, resolve, v1_schedule, write_options_file)
from stylegan_tl.train import run_training

TINY = dict(fmap_base=64, fmap_max=16, latent_size=32, dlatent_size=32, mapping_fmaps=32, mapping_layers=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A dataset folder: a dry run only checks that it exists."""
    return str(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def pickles(tmp_path_factory):
    """A StyleGAN2 pickle at 256 px and an ADA-TF one at 64 px as NVIDIA's train.py writes them
    (num_fp16_res 4, conv_clamp 256, an explicit mbstd group), both with tiny feature maps."""
    folder = tmp_path_factory.mktemp("pickles")
    d_tiny = dict(fmap_base=64, fmap_max=16)
    v2 = str(folder / "stylegan2-256.pkl")
    save_network_pkl(v2, *create_networks("stylegan2", 256, G_kwargs=TINY, D_kwargs=d_tiny))
    fp16 = dict(num_fp16_res=4, conv_clamp=256)
    ada = str(folder / "ada-64.pkl")
    save_network_pkl(ada, *create_networks("stylegan2-ada", 64, G_kwargs=dict(TINY, **fp16),
                                           D_kwargs=dict(d_tiny, mbstd_group_size=4, freeze_layers=3, **fp16)))
    return dict(v2=v2, ada=ada, v1=str(FIXTURES / "A_v1_r32" / "network.pkl"))


def _dry(photos, tmp_path, **options):
    return run_training(photos, str(tmp_path / "out"), dry_run=True, **options)["recipe"]


# ---- NVIDIA's numbers -----------------------------------------------------------------------------

def test_auto_spec_per_resolution_and_replica_count():
    cases = {  # (res, replicas): batch, mbstd, lr, gamma, ema_kimg, fmap_base
        (256, 1): (16, 4, 0.0025, 0.8192, 5.0, 8192),
        (64, 1): (32, 4, 0.0025, 0.0256, 10.0, 8192),
        (512, 1): (8, 4, 0.0025, 6.5536, 2.5, 16384),
        (1024, 1): (4, 4, 0.002, 52.4288, 1.25, 16384),
        (1024, 2): (8, 4, 0.002, 26.2144, 2.5, 16384),
        (512, 8): (64, 4, 0.0025, 0.8192, 20.0, 16384),
        (128, 4): (64, 4, 0.0025, 0.0512, 20.0, 8192),
    }
    for (res, gpus), (batch, mbstd, lr, gamma, ema, fmaps) in cases.items():
        spec = ada_spec("auto", res, gpus)
        assert (spec["batch"], spec["mbstd_group"], spec["lr"], spec["fmap_base"]) == (batch, mbstd, lr, fmaps)
        assert spec["gamma"] == pytest.approx(gamma) and spec["ema_kimg"] == pytest.approx(ema)
        assert spec["mapping_layers"] == 2
    assert ada_spec("paper256", 256, 1) == dict(batch=64, mbstd_group=8, fmap_base=8192, lr=0.0025, gamma=1.0,
                                                ema_kimg=20.0, mapping_layers=8)
    assert ada_spec("stylegan2", 1024, 4)["gamma"] == 10.0 and ada_spec("paper1024", 1024, 1)["gamma"] == 2.0
    assert ada_spec("paper512", 512, 1)["gamma"] == 0.5


def test_v1_schedule_per_resolution_and_gpu_preset():
    assert v1_schedule(256, 1) == dict(batch=8, lr=0.002, tick_kimg=40.0)
    assert v1_schedule(128, 1) == dict(batch=16, lr=0.0015, tick_kimg=60.0)
    assert v1_schedule(1024, 1) == dict(batch=4, lr=0.003, tick_kimg=20.0)
    assert v1_schedule(1024, 8) == dict(batch=32, lr=0.003, tick_kimg=20.0)
    assert v1_schedule(64, 2) == dict(batch=32, lr=0.001, tick_kimg=80.0)
    assert v1_schedule(256, 3)["batch"] == 6  # 2-GPU preset (8), made a multiple of 3


def test_lazy_regularisation_adam_settings():
    g = lazy_adam(0.002, 0.0, 0.99, 4)
    assert g["lr"] == pytest.approx(0.0016) and g["beta1"] == 0.0 and g["beta2"] == pytest.approx(0.99199, abs=1e-5)
    d = lazy_adam(0.002, 0.0, 0.99, 16)
    assert d["lr"] == pytest.approx(0.0018824, abs=1e-7) and d["beta2"] == pytest.approx(0.99059, abs=1e-5)
    assert lazy_adam(0.002, 0.0, 0.99, None) == dict(lr=0.002, beta1=0.0, beta2=0.99)


def test_stylegan2_pickle_at_256px_resolves_to_nvidias_auto(photos, pickles, tmp_path):
    r = _dry(photos, tmp_path, resume=pickles["v2"])
    assert (r["recipe"], r["batch"], r["batch_per_replica"], r["mbstd_group"]) == ("auto", 16, 16, 4)
    assert r["gamma"] == pytest.approx(0.8192) and r["lr"] == 0.0025 and r["ema_kimg"] == pytest.approx(5.0)
    assert r["ema_rampup"] is None and r["tune_kimg"] == 100.0  # resuming: no ramp-up, ADA reacts faster
    assert (r["aug"], r["augpipe"], r["target"], r["kimg"], r["snap"], r["tick_kimg"]) == ("ada", "bgc", 0.6, 25000.0, 50, 4.0)
    assert r["G_opt"]["lr"] == pytest.approx(0.0025 * 4 / 5) and r["D_opt"]["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert r["style_mixing_prob"] == 0.9 and r["pl_weight"] == 2.0 and r["betas"] == (0.0, 0.99)
    assert r["precision"]["loss_scaling"] is False  # a StyleGAN2 pickle stays float32 without --fp16
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_ada_pickle_at_64px_resolves_to_nvidias_auto_with_its_own_fp16(photos, pickles, tmp_path):
    r = _dry(photos, tmp_path, resume=pickles["ada"])
    assert (r["family"], r["batch"], r["mbstd_group"], r["lr"]) == ("stylegan2-ada", 32, 4, 0.0025)
    assert r["gamma"] == pytest.approx(0.0256) and r["ema_kimg"] == pytest.approx(10.0)
    assert r["precision"] == dict(G=dict(num_fp16_res=4, conv_clamp=256.0), D=dict(num_fp16_res=4, conv_clamp=256.0),
                                  loss_scaling=True)
    assert _dry(photos, tmp_path, resume=pickles["ada"], fp16=False)["precision"]["loss_scaling"] is False


def test_v1_pickle_follows_stylegans_schedule(photos, pickles, tmp_path):
    r = _dry(photos, tmp_path, resume=pickles["v1"])
    assert (r["recipe"], r["resolution"], r["batch"], r["lr"], r["gamma"], r["ema_kimg"]) == ("stylegan", 32, 64, 0.001, 10.0, 10.0)
    assert (r["tick_kimg"], r["snap"], r["first_tick"], r["aug"], r["pl_weight"]) == (100.0, 10, 1, "noaug", 0.0)
    assert r["lazy_regularization"] is False and r["G_opt"] == dict(lr=0.001, beta1=0.0, beta2=0.99)
    assert r["mbstd_group"] == 4 and r["style_mixing_prob"] == 0.9  # the network's own
    with pytest.raises(RecipeError, match="no mixed-precision path"):
        _dry(photos, tmp_path, resume=pickles["v1"], fp16=True)


def test_explicit_options_win_and_other_cfgs(photos, pickles, tmp_path):
    r = _dry(photos, tmp_path, resume=pickles["v2"], batch=8, gamma=100.0, lr=0.001, ema_kimg=2.0, aug="noaug",
             kimg=200.0, snap=10, style_mixing_prob=0.5, mbstd_group=2, ema_rampup=0.1)
    assert (r["batch"], r["gamma"], r["lr"], r["ema_kimg"], r["aug"], r["augpipe"]) == (8, 100.0, 0.001, 2.0, "noaug", None)
    assert (r["kimg"], r["snap"], r["style_mixing_prob"], r["mbstd_group"], r["ema_rampup"]) == (200.0, 10, 0.5, 2, 0.1)
    p = _dry(photos, tmp_path, resume=pickles["v2"], config="paper256")
    assert (p["batch"], p["gamma"], p["lr"], p["ema_kimg"], p["mbstd_group"]) == (64, 1.0, 0.0025, 20.0, 8)
    with pytest.raises(RecipeError, match="does not split over"):
        resolve(Options(data="d", outdir="o", batch=9, cpu_devices=0), *load_network_pkl(pickles["v2"])[:2], 2,
                None, False)
    with pytest.raises(RecipeError, match="not a multiple of the minibatch-stddev group"):
        _dry(photos, tmp_path, resume=pickles["v2"], batch=6)


def test_style_mixing_comes_from_the_pickle_and_g_keeps_its_lazy_adam_without_path_length(photos, tmp_path):
    G, D, Gs = create_networks("stylegan2", 16, G_kwargs=dict(TINY, style_mixing_prob=0.5), D_kwargs=dict(fmap_max=16))
    pkl = str(tmp_path / "mix.pkl")
    save_network_pkl(pkl, G, D, Gs)
    r = _dry(photos, tmp_path, resume=pkl, pl_weight=0.0)
    assert r["style_mixing_prob"] == 0.5 and r["pl_weight"] == 0.0
    assert r["G_opt"]["lr"] == pytest.approx(r["lr"] * 4 / 5)  # NVIDIA adjusts G's Adam whenever lazy


def test_from_scratch_auto_uses_the_cfg_architecture_and_ema_rampup(photos, tmp_path):
    r = _dry(photos, tmp_path, family="stylegan2-ada", resolution=16, latent_size=16, fmap_max=16)
    assert r["ema_rampup"] == 0.05 and r["tune_kimg"] == 500.0 and r["resume"] is None
    assert r["precision"]["G"] == dict(num_fp16_res=4, conv_clamp=256.0)  # ADA's cfg architecture
    G, D, _ = create_networks("stylegan2", 16, G_kwargs=TINY, D_kwargs=dict(fmap_max=16))
    legacy = resolve(Options(data="d", outdir="o"), G, D, 1, None, True, legacy_state=True)
    assert legacy.ema_rampup is None and legacy.tune_kimg == 100.0  # a run started by the pre-recipe code


# ---- Freeze-D --------------------------------------------------------------------------------------

def test_freeze_d_counts_layers_as_nvidias_d_main():
    _, D, _ = load_network_pkl(str(FIXTURES / "G_ada_r32" / "network.pkl"))
    assert frozen_layer_names(D, 5) == ["32x32/FromRGB", "32x32/Conv0", "32x32/Conv1_down", "32x32/Skip", "16x16/Conv0"]
    with pytest.raises(RecipeError, match="only 12 freezable layers"):
        frozen_layer_names(D, 13)
    state = D.to_state()
    for count in (1, 4, 11, 12):  # D_main built with freeze_layers=N leaves exactly these untrainable
        state.static_kwargs["freeze_layers"] = count
        frozen = Network.from_state(state)
        untrainable = {k for k, v in frozen.vars.items() if not v.trainable}
        assert untrainable == frozen_variables(D, frozen_layer_names(D, count)), count
    conditional = Network.from_config("stylegan2-ada", "D", 32, label_size=3, mapping_layers=1, fmap_base=64, fmap_max=16)
    assert frozen_layer_names(conditional, 2) == ["32x32/FromRGB", "32x32/Conv0"]  # never LabelEmbed / Mapping0
    _, D1, _ = load_network_pkl(str(FIXTURES / "A_v1_r32" / "network.pkl"))
    assert frozen_layer_names(D1, 4) == ["FromRGB_lod0", "32x32/Conv0", "32x32/Conv1_down", "16x16/Conv0"]


def test_a_pickles_stored_freeze_layers_is_reset(photos, pickles, tmp_path):
    r = _dry(photos, tmp_path, resume=pickles["ada"], freezed=2)  # the pickle's D has freeze_layers=3
    assert r["frozen_layers"] == ["64x64/FromRGB", "64x64/Conv0"]
    assert _dry(photos, tmp_path, resume=pickles["ada"])["frozen_layers"] == []


# ---- the options file and the flags ---------------------------------------------------------------

def test_options_file_is_not_written_over_a_foreign_one(photos, pickles, tmp_path):
    from stylegan_tl.recipe import Recipe

    values = _dry(photos, tmp_path, resume=pickles["v2"])
    recipe = Recipe(**values)
    path = write_options_file(str(tmp_path), recipe)
    assert json.loads(open(path).read())["gamma"] == pytest.approx(0.8192)
    write_options_file(str(tmp_path), recipe)  # ours: replaced
    (tmp_path / "training_options.json").write_text('{"from": "NVIDIA"}')
    with pytest.raises(RecipeError, match="not written by this trainer"):
        write_options_file(str(tmp_path), recipe)


def test_every_option_with_a_flag_has_help_and_bad_values_are_refused(photos, tmp_path):
    import dataclasses

    for field in dataclasses.fields(Options):
        assert field.metadata["help"], field.name
    with pytest.raises(RecipeError, match="--config='paper2048' is not one of"):
        run_training(photos, str(tmp_path), config="paper2048")
    with pytest.raises(RecipeError, match="--snap must be at least 1"):
        run_training(photos, str(tmp_path), snap=0)
    with pytest.raises(RecipeError, match="--resume=--dry_run: not a pickle path, URL or official name"):
        run_training(photos, str(tmp_path / "run"), resume="--dry_run")  # `--resume --dry_run` on the command line
    assert not os.path.exists(tmp_path / "run")
