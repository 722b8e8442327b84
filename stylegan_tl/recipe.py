"""What a training run does: its options, NVIDIA's recipes, and the values they resolve to.

* :class:`Options` is the one source of every training option: each field has its default and its
  help text; the command-line flags of ``python -m stylegan_tl.train`` are generated from it
  (:func:`superres_tf.conventions.define_flags`), and the pipeline's settings refer to its fields.
  ``None`` means "the recipe's value".
* Recipes (``config``): NVIDIA StyleGAN2-ADA (TF) ``train.py --cfg`` values (``auto``, ``stylegan2``,
  ``paper256``, ``paper512``, ``paper1024``), and StyleGAN v1 ``train.py`` + ``training_schedule``
  (``stylegan``; what ``auto`` means for a v1 pickle). :func:`scratch_kwargs` gives a new network
  its recipe architecture; :func:`resolve` turns options + networks + replica count into a
  :class:`Recipe`, every value the run uses, which the run writes to ``training_options.json``.
* Freeze-D is counted as ADA-TF counts (:func:`frozen_layer_names`).

Explicit options always win over the recipe. Formulas (ADA-TF ``train.py``, ``auto``, resolution
``res``, ``g`` replicas): batch ``max(min(g * min(4096 // res, 32), 64), g)``, mbstd group
``min(batch // g, 4)``, lr ``0.002`` at ``res >= 1024`` else ``0.0025``, gamma ``0.0002 * res**2 /
batch``, EMA ``batch * 10 / 32`` kimg with a 0.05 ramp-up from scratch (none when resuming),
fmap_base ``16384`` at ``res >= 512`` else ``8192``, 2 mapping layers.
"""

import dataclasses
import json
import os
import re
from typing import Optional

from superres_tf.conventions import option

from .atomic import atomic_write
from .errors import StyleGANTLError

ADA_CONFIGS = ("auto", "stylegan2", "paper256", "paper512", "paper1024")
V1_CONFIG = "stylegan"
CONFIG_CHOICES = ADA_CONFIGS + (V1_CONFIG,)
# ADA-TF cfg_specs (all: fmap_max 512, num_fp16_res 4, conv_clamp 256, 25000 kimg, no EMA ramp-up).
_ADA_SPECS = {
    "stylegan2": dict(batch=32, mbstd_group=4, fmap_base=16384, lr=0.002, gamma=10.0, ema_kimg=10.0, mapping_layers=8),
    "paper256": dict(batch=64, mbstd_group=8, fmap_base=8192, lr=0.0025, gamma=1.0, ema_kimg=20.0, mapping_layers=8),
    "paper512": dict(batch=64, mbstd_group=8, fmap_base=16384, lr=0.0025, gamma=0.5, ema_kimg=20.0, mapping_layers=8),
    "paper1024": dict(batch=32, mbstd_group=4, fmap_base=16384, lr=0.002, gamma=2.0, ema_kimg=10.0, mapping_layers=8),
}
ADA_FP16 = dict(num_fp16_res=4, conv_clamp=256.0)  # every ADA cfg
TOTAL_KIMG = 25000.0
# StyleGAN v1 train.py: minibatch presets per GPU count, lr overrides; training_schedule ticks.
_V1_MINIBATCH = {
    1: (4, {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}),
    2: (8, {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}),
    4: (16, {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16}),
    8: (32, {4: 512, 8: 256, 16: 128, 32: 64, 64: 32}),
}
_V1_LR = {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}  # else 0.001
_V1_TICK_KIMG = {4: 160, 8: 140, 16: 120, 32: 100, 64: 80, 128: 60, 256: 40, 512: 30, 1024: 20}  # else 160
G_REG_INTERVAL, D_REG_INTERVAL = 4, 16
MINIBATCH_REPEATS = 4  # minibatches between tick checks and ADA adjustments
# Freeze-D counts these D layers, in creation order (ADA-TF D_main: FromRGB, Conv0, Conv1_down, Skip
# of each block from the top, 4x4/Conv, 4x4/Dense0; v1: FromRGB_lod0 for the full resolution).
_FREEZABLE = re.compile(r"\d+x\d+/(FromRGB|Conv0|Conv1_down|Skip|Conv|Dense0)|FromRGB_lod0")
OPTIONS_FILE = "training_options.json"


class RecipeError(StyleGANTLError):
    """The options cannot be resolved into a training recipe."""


@dataclasses.dataclass
class Options:
    """Every training option; ``None`` = the recipe's value (see the module docstring)."""

    data: str = option(None, "image folder (recursive) or NVIDIA TFRecords directory", required=True)
    outdir: str = option(None, "run directory (snapshots, state, logs); rerun to continue", required=True)
    resume: Optional[str] = option(None, "pickle to start from: path, URL or official name; default from scratch")
    config: str = option("auto", "recipe: NVIDIA ADA cfg (auto, stylegan2, paper256, paper512, paper1024) or "
                       "'stylegan' (StyleGAN v1 schedule; what auto means for v1 pickles)", choices=CONFIG_CHOICES)
    kimg: Optional[float] = option(None, "total length in thousands of real images (default: the recipe's 25000)")
    batch: Optional[int] = option(None, "global minibatch (default: the recipe's, per resolution and replica count)")
    gamma: Optional[float] = option(None, "R1 weight (default: the recipe's; auto: 0.0002*res^2/batch)")
    lr: Optional[float] = option(None, "Adam learning rate of G and D (default: the recipe's)")
    ema_kimg: Optional[float] = option(None, "half-life of the G moving average in kimg (default: the recipe's)")
    ema_rampup: Optional[float] = option(None, "EMA ramp-up (half-life <= nimg*rampup); 0 = off (default: "
                                       "0.05 for auto from scratch, else off)")
    mbstd_group: Optional[int] = option(None, "minibatch-stddev group size of D (default: the recipe's; "
                                      "v1: the network's)")
    style_mixing_prob: Optional[float] = option(None, "style-mixing probability (default: the network's own, 0.9)")
    pl_weight: Optional[float] = option(None, "path-length weight (default 2; StyleGAN v1 has none)")
    aug: Optional[str] = option(None, "discriminator augmentation (default: ada for the ADA recipes, noaug for v1)",
                              choices=("noaug", "ada"))
    augpipe: str = option("bgc", "ADA pipeline", choices=("blit", "geom", "color", "bg", "bgc"))
    target: float = option(0.6, "ADA target of r_t = E[sign(D(reals))]")
    tune_kimg: Optional[float] = option(None, "kimg for ADA's p to move by 1 (default 500 from scratch, 100 when resuming)")
    mirror: bool = option(False, "random x-flips of the real images")
    freezed: int = option(0, "Freeze-D: D layers left untrained, counted from the top as NVIDIA counts")
    snap: Optional[int] = option(None, "snapshot interval in ticks (default: 50 ticks of 4 kimg; v1: 10 ticks)")
    tick_kimg: Optional[float] = option(None, "tick length in kimg (default 4; v1: per resolution, 20-160)")
    seed: int = option(0, "random seed")
    metrics: Optional[str] = option(None, "comma-separated metrics computed for Gs at every snapshot, e.g. "
                                  "fid50k_full,kid50k_full (docs/metrics.md); default none")
    fp16: Optional[bool] = option(None, "mixed precision: the num_fp16_res highest resolutions in float16 with "
                                "conv_clamp and loss scaling (default: an ADA pickle's own setting, else off)")
    num_fp16_res: Optional[int] = option(None, "resolutions computed in float16 with --fp16 (default: the "
                                       "network's own, else 4)")
    conv_clamp: Optional[float] = option(None, "clamp of conv outputs with --fp16 (default: the network's own, else 256)")
    reset_lod: bool = option(False, "StyleGAN v1 pickle saved mid-growth (lod > 0): fine-tune it at lod 0 "
                           "(full resolution) instead of refusing it")
    resolution: Optional[int] = option(None, "from scratch: resolution (default from the data)")
    family: str = option("stylegan2", "from scratch: architecture", choices=("stylegan", "stylegan2", "stylegan2-ada"))
    fmap_base: Optional[int] = option(None, "from scratch: fmap_base of G and D (default: the recipe's)")
    fmap_max: Optional[int] = option(None, "from scratch: fmap_max of G and D (default: the recipe's 512)")
    latent_size: Optional[int] = option(None, "from scratch: size of z, w and the mapping layers")
    mapping_layers: Optional[int] = option(None, "from scratch: mapping layers (default: the recipe's)")
    letterbox: bool = option(False, "letterbox non-square photos on black instead of centre-cropping")
    cpu_devices: int = option(0, "split the CPU into N logical devices (MirroredStrategy test)")
    randomize_noise: bool = option(True, "fresh noise inputs every step (False: the stored ones)")
    dry_run: bool = option(False, "resolve the options, print them as training_options.json would hold them, "
                         "and exit without training or writing anything")
    min_images: int = option(4, "fewest usable images accepted", flag=False)
    max_steps: Optional[int] = option(None, "stop after this many minibatches in this invocation", flag=False)
    G_kwargs: Optional[dict] = option(None, "from scratch: further static kwargs of G", flag=False)
    D_kwargs: Optional[dict] = option(None, "from scratch: further static kwargs of D", flag=False)


def check_options(opts: Options):
    """Reject option values no recipe accepts (one-line :class:`RecipeError`)."""
    for f in dataclasses.fields(Options):
        choices = f.metadata.get("choices")
        value = getattr(opts, f.name)
        if choices and value is not None and value not in choices:
            raise RecipeError(f"--{f.name}={value!r} is not one of {', '.join(choices)}")
    for name in ("batch", "snap", "mbstd_group"):
        if getattr(opts, name) is not None and getattr(opts, name) < 1:
            raise RecipeError(f"--{name} must be at least 1")
    for name in ("kimg", "tick_kimg"):
        if getattr(opts, name) is not None and not getattr(opts, name) > 0:
            raise RecipeError(f"--{name} must be positive")
    for name in ("gamma", "lr", "ema_kimg", "ema_rampup", "pl_weight", "tune_kimg"):
        if getattr(opts, name) is not None and getattr(opts, name) < 0:
            raise RecipeError(f"--{name} must not be negative")
    if opts.freezed < 0:
        raise RecipeError("--freezed must not be negative")
    if opts.resume and opts.resume.startswith("-") and not os.path.isfile(opts.resume):
        # `--resume --dry_run`: absl gives a string flag the next argument as its value
        raise RecipeError(f"--resume={opts.resume}: not a pickle path, URL or official name "
                          "(a flag after --resume without a value?)")


# --------------------------------------------------------------------------------------------------
# Recipes.


def recipe_name(config: str, family: str) -> str:
    """The recipe a run follows: ``config``, where ``auto`` means ``stylegan`` for v1 networks."""
    return V1_CONFIG if config == V1_CONFIG or (config == "auto" and family == "stylegan") else config


def ada_spec(config: str, resolution: int, replicas: int) -> dict:
    """ADA-TF ``cfg_specs[config]`` for this resolution and replica count (``auto`` computed)."""
    if config != "auto":
        return dict(_ADA_SPECS[config])
    batch = max(min(replicas * min(4096 // resolution, 32), 64), replicas)
    return dict(batch=batch, mbstd_group=min(batch // replicas, 4), fmap_base=16384 if resolution >= 512 else 8192,
                lr=0.002 if resolution >= 1024 else 0.0025, gamma=0.0002 * resolution ** 2 / batch,
                ema_kimg=batch * 10 / 32, mapping_layers=2)


def v1_schedule(resolution: int, replicas: int) -> dict:
    """StyleGAN v1 ``training_schedule`` at lod 0: minibatch (preset of the largest GPU count in
    1/2/4/8 not above ``replicas``, made a multiple of it; None if that leaves nothing), lr and
    tick length."""
    preset = max(g for g in _V1_MINIBATCH if g <= max(replicas, 1))
    base, table = _V1_MINIBATCH[preset]
    batch = table.get(resolution, base)
    batch -= batch % replicas
    return dict(batch=batch or None, lr=_V1_LR.get(resolution, 0.001),
                tick_kimg=float(_V1_TICK_KIMG.get(resolution, 160)))


def scratch_kwargs(opts: Options, family: str, resolution: int, replicas: int):
    """(G_kwargs, D_kwargs) of a from-scratch network: the recipe's architecture (ADA recipes:
    fmap_base, fmap_max 512, mapping layers, mbstd group; ADA networks also num_fp16_res 4 and
    conv_clamp 256), then the explicit options, then ``opts.G_kwargs`` / ``opts.D_kwargs``."""
    G, D = {}, {}
    if recipe_name(opts.config, family) in ADA_CONFIGS:
        spec = ada_spec(opts.config, resolution, replicas)
        G.update(fmap_base=spec["fmap_base"], fmap_max=512, mapping_layers=spec["mapping_layers"])
        D.update(fmap_base=spec["fmap_base"], fmap_max=512, mbstd_group_size=spec["mbstd_group"])
        if family == "stylegan2-ada":
            G.update(ADA_FP16)
            D.update(ADA_FP16)
    for name in ("fmap_base", "fmap_max"):
        if getattr(opts, name) is not None:
            G[name] = D[name] = getattr(opts, name)
    if opts.mapping_layers is not None:
        G["mapping_layers"] = opts.mapping_layers
    if opts.latent_size is not None:
        G.update(latent_size=opts.latent_size, dlatent_size=opts.latent_size, mapping_fmaps=opts.latent_size)
    if opts.mbstd_group is not None:
        D["mbstd_group_size"] = opts.mbstd_group
    G.update(opts.G_kwargs or {})
    D.update(opts.D_kwargs or {})
    return G, D


@dataclasses.dataclass
class Recipe:
    """Every resolved value of a run (``training_options.json``)."""

    recipe: str                # 'auto', 'stylegan2', 'paper256', 'paper512', 'paper1024' or 'stylegan'
    family: str
    resolution: int
    replicas: int
    batch: int                 # global minibatch
    batch_per_replica: int
    gamma: float
    lr: float
    betas: tuple               # Adam (beta1, beta2) before the lazy-regularisation adjustment
    epsilon: float
    lazy_regularization: bool  # False for v1: R1 in every D step, no path length
    G_reg_interval: Optional[int]
    D_reg_interval: Optional[int]
    G_opt: dict                # Adam of G as run: lr, beta1, beta2 (lazy: lr*c, beta^c, c = I/(I+1))
    D_opt: dict
    ema_kimg: float
    ema_rampup: Optional[float]
    mbstd_group: Optional[int]  # None: D has no minibatch-stddev layer (or ADA's whole-batch group)
    style_mixing_prob: float
    pl_weight: float
    aug: str
    augpipe: Optional[str]
    target: Optional[float]
    tune_kimg: Optional[float]
    ada_interval: int
    mirror: bool
    freezed: int
    frozen_layers: list        # D layer names left untrained
    precision: dict            # G/D: num_fp16_res, conv_clamp; loss_scaling
    resume: Optional[str]      # the starting pickle as given (None: from scratch)
    continuing: bool           # this invocation continues the run's own newest snapshot
    kimg: float
    snap: int                  # snapshot interval in ticks
    tick_kimg: float           # tick length in kimg (ticks are checked every 4 minibatches)
    first_tick: int            # ADA: tick 0 ends after the first 4 minibatches; v1: tick 1 after tick_kimg
    seed: int
    data: str

    def to_json(self) -> str:
        return json.dumps(dict(dataclasses.asdict(self), written_by="stylegan_tl.train"), indent=2)


def _pick(explicit, recipe_value):
    return recipe_value if explicit is None else explicit


def resolve(opts: Options, G, D, replicas: int, resume: Optional[str], continuing: bool,
            legacy_state: bool = False) -> Recipe:
    """The run's :class:`Recipe` from the options, the networks (``Network`` G and D, their pickled
    static kwargs), the replica count and the pickle the run started from (``resume``; None: from
    scratch), which decides ADA's tune_kimg and auto's EMA ramp-up (NVIDIA's "resuming" values).
    ``continuing``: this invocation continues the run's own newest snapshot (recorded only).
    ``legacy_state``: that snapshot's training state predates recipes (no ticks in it): the run
    keeps what that code did implicitly, ADA tune_kimg 100 and no EMA ramp-up (unless given).
    """
    family = G.family
    resolution = int(G.output_shape[2])
    name = recipe_name(opts.config, family)
    from_pickle = resume is not None
    v1 = name == V1_CONFIG
    if v1:
        sched = v1_schedule(resolution, replicas)
        if sched["batch"] is None and opts.batch is None:
            raise RecipeError(f"the StyleGAN v1 schedule has no minibatch for {replicas} replicas at "
                              f"{resolution} px; pass --batch")
        base = dict(batch=sched["batch"], lr=sched["lr"], gamma=10.0, ema_kimg=10.0, ema_rampup=None,
                    mbstd_group=_mbstd_of(D), tick_kimg=sched["tick_kimg"], snap=10, first_tick=1, aug="noaug")
    else:
        spec = ada_spec(name, resolution, replicas)
        rampup = 0.05 if name == "auto" and not (from_pickle or legacy_state) else None
        base = dict(batch=spec["batch"], lr=spec["lr"], gamma=spec["gamma"], ema_kimg=spec["ema_kimg"],
                    ema_rampup=rampup, mbstd_group=spec["mbstd_group"], tick_kimg=4.0, snap=50, first_tick=0,
                    aug="ada")
    batch = _pick(opts.batch, base["batch"])
    if batch % replicas:
        raise RecipeError(f"--batch={batch} does not split over {replicas} replicas")
    per_replica = batch // replicas
    mbstd = _pick(opts.mbstd_group, base["mbstd_group"]) if _uses_mbstd(D) else None  # None: no such layer
    if mbstd is not None and mbstd < 2 and family != "stylegan2-ada":
        raise RecipeError(f"a {family} D with a minibatch-stddev layer needs a group of at least 2 (--mbstd_group)")
    if mbstd is not None and per_replica % min(mbstd, per_replica):
        raise RecipeError(f"the per-replica minibatch {per_replica} is not a multiple of the minibatch-stddev "
                          f"group {mbstd}; choose --batch or --mbstd_group")
    lr = _pick(opts.lr, base["lr"])
    lazy = family != "stylegan"
    aug = _pick(opts.aug, base["aug"])
    rampup = _pick(opts.ema_rampup, base["ema_rampup"]) or None
    return Recipe(
        recipe=name, family=family, resolution=resolution, replicas=replicas, batch=batch,
        batch_per_replica=per_replica, gamma=float(_pick(opts.gamma, base["gamma"])), lr=float(lr),
        betas=(0.0, 0.99), epsilon=1e-8, lazy_regularization=lazy,
        G_reg_interval=G_REG_INTERVAL if lazy else None, D_reg_interval=D_REG_INTERVAL if lazy else None,
        G_opt=lazy_adam(lr, 0.0, 0.99, G_REG_INTERVAL if lazy else None),
        D_opt=lazy_adam(lr, 0.0, 0.99, D_REG_INTERVAL if lazy else None),
        ema_kimg=float(_pick(opts.ema_kimg, base["ema_kimg"])), ema_rampup=rampup, mbstd_group=mbstd,
        style_mixing_prob=float(_pick(opts.style_mixing_prob, _style_mixing_of(G))),
        pl_weight=float(_pick(opts.pl_weight, 2.0)) if lazy else 0.0,
        aug=aug, augpipe=opts.augpipe if aug == "ada" else None, target=opts.target if aug == "ada" else None,
        tune_kimg=_pick(opts.tune_kimg, 100.0 if from_pickle or legacy_state else 500.0) if aug == "ada" else None,
        ada_interval=MINIBATCH_REPEATS, mirror=opts.mirror, freezed=opts.freezed,
        frozen_layers=frozen_layer_names(D, opts.freezed), precision=resolve_precision(opts, G, D),
        resume=resume, continuing=continuing, kimg=float(_pick(opts.kimg, TOTAL_KIMG)), snap=int(_pick(opts.snap, base["snap"])),
        tick_kimg=float(_pick(opts.tick_kimg, base["tick_kimg"])), first_tick=base["first_tick"],
        seed=opts.seed, data=opts.data)


def lazy_adam(lr, beta1, beta2, interval) -> dict:
    """Adam settings of a network regularised every ``interval`` minibatches: c = I/(I+1) gives
    lr*c, beta1**c, beta2**c (NVIDIA's lazy regularisation); ``interval`` None: unchanged."""
    c = interval / (interval + 1) if interval else 1.0
    return dict(lr=lr * c, beta1=beta1 ** c, beta2=beta2 ** c)


def _uses_mbstd(D) -> bool:
    k = D.module.kwargs
    return k.get("mbstd_num_features", 1) > 0 and (k.get("mbstd_group_size") is None or k["mbstd_group_size"] > 1)


def _mbstd_of(D):
    return D.module.kwargs.get("mbstd_group_size")


def _style_mixing_of(G) -> float:
    return G.module.kwargs.get("style_mixing_prob") or 0.0


def resolve_precision(opts: Options, G, D) -> dict:
    """float16 settings per network: ``num_fp16_res`` highest resolutions in float16, ``conv_clamp``.

    Default: the network's own (ADA pickles carry them; StyleGAN2 has none: float32). ``fp16=True``
    turns float16 on (the network's own values, else ADA's 4 resolutions and clamp 256);
    ``fp16=False`` keeps every layer in float32. StyleGAN v1 networks have no float16 path.
    """
    result = {}
    for key, net in (("G", G.components.synthesis if "synthesis" in G.components else G), ("D", D)):
        k = net.module.kwargs
        own_res, own_clamp = int(k.get("num_fp16_res") or 0), k.get("conv_clamp")
        if opts.fp16 is False:
            res = 0
        elif opts.fp16:
            res = opts.num_fp16_res if opts.num_fp16_res is not None else own_res or ADA_FP16["num_fp16_res"]
        else:
            res = own_res if opts.num_fp16_res is None else opts.num_fp16_res
        clamp = opts.conv_clamp if opts.conv_clamp is not None else own_clamp
        if res and clamp is None:
            clamp = ADA_FP16["conv_clamp"]
        result[key] = dict(num_fp16_res=res, conv_clamp=None if clamp is None else float(clamp))
    if G.family == "stylegan" and (result["G"]["num_fp16_res"] or result["D"]["num_fp16_res"]):
        raise RecipeError("--fp16: StyleGAN v1 networks have no mixed-precision path")
    result["loss_scaling"] = bool(result["G"]["num_fp16_res"] or result["D"]["num_fp16_res"])
    return result


# --------------------------------------------------------------------------------------------------
# Freeze-D.


def freezable_layers(D) -> list:
    """D's layers in NVIDIA's Freeze-D order (names without the variable part)."""
    layers = []
    for name in D.vars:
        layer = name.rsplit("/", 1)[0]
        if _FREEZABLE.fullmatch(layer) and layer not in layers:
            layers.append(layer)
    return layers


def frozen_layer_names(D, count: int) -> list:
    """The first ``count`` D layers counted as ADA-TF's ``freeze_layers`` counts them (FromRGB,
    then Conv0, Conv1_down, Skip of each block from the highest resolution, ..., 4x4/Conv,
    4x4/Dense0; never a label embedding or mapping layer, nor Output; v1: FromRGB_lod0, blocks,
    4x4/Conv, 4x4/Dense0)."""
    layers = freezable_layers(D)
    if count > len(layers):
        raise RecipeError(f"--freezed={count}: the discriminator has only {len(layers)} freezable layers")
    return layers[:count]


def frozen_variables(D, layers) -> set:
    """Full names of the variables of ``layers``."""
    return {name for name in D.vars if name.rsplit("/", 1)[0] in set(layers)}


# --------------------------------------------------------------------------------------------------
# The options file.


def write_options_file(outdir: str, recipe: Recipe) -> str:
    """Write ``<outdir>/training_options.json`` atomically; refuse to replace a file of that name
    that this trainer did not write."""
    path = os.path.join(outdir, OPTIONS_FILE)
    if os.path.exists(path):
        try:
            with open(path) as f:
                ours = json.load(f).get("written_by") == "stylegan_tl.train"
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise RecipeError(f"{path}: exists and was not written by this trainer; not replacing it")
    with atomic_write(path) as f:
        f.write((recipe.to_json() + "\n").encode())
    return path
