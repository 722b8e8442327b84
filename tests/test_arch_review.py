"""Architecture review: the paths the shared fixtures do not exercise, against independent numpy maths.

Each test states NVIDIA's TF behaviour (``networks_stylegan.py``, ``networks_stylegan2.py``, ADA's
``networks.py``) as a small float64 numpy forward pass in NCHW, written here from the spec, and
compares it with our networks on randomised variables. The numpy passes are first validated on the
shared fixtures (NVIDIA's own outputs), then applied to configurations no fixture covers
(G 'resnet', D 'skip', labels, conv_clamp, minibatch-stddev features, v1 options, ...).

Tolerance as for the fixtures: ``max|ours - ref| <= 1e-4 * max(1, max|ref|)``.
"""

import functools
import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from stylegan_tl.network import Network, load_network_pkl

TOLERANCE = 1e-4
K4 = [1, 3, 3, 1]


def assert_close(ours, ref, what=""):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    err, bound = np.max(np.abs(ours - ref)), TOLERANCE * max(1.0, np.max(np.abs(ref)))
    assert err <= bound, f"{what}: max|ours - ref| = {err:.3g} > {bound:.3g}"


# ------------------------------------------------------------------------------------------------
# Independent numpy maths, NCHW, float64.


def np_kernel(k):
    k = np.asarray(k, np.float64)
    k = np.outer(k, k) if k.ndim == 1 else k
    return k / k.sum()


def np_upfirdn(x, k, up=1, down=1, pad0=0, pad1=0):
    """Zero-insert upsample, pad (negative crops), true convolution with k, keep every down-th pixel."""
    n, c, h, w = x.shape
    y = np.zeros([n, c, h * up, w * up])
    y[:, :, ::up, ::up] = x
    p = [max(pad0, 0), max(pad1, 0)]
    y = np.pad(y, [(0, 0), (0, 0), p, p])
    y = y[:, :, max(-pad0, 0):y.shape[2] - max(-pad1, 0), max(-pad0, 0):y.shape[3] - max(-pad1, 0)]
    kf = k[::-1, ::-1]
    kh = k.shape[0]
    oh, ow = y.shape[2] - kh + 1, y.shape[3] - kh + 1
    out = np.zeros([n, c, oh, ow])
    for i in range(kh):
        for j in range(kh):
            out += y[:, :, i:i + oh, j:j + ow] * kf[i, j]
    return out[:, :, ::down, ::down]


def np_conv(x, w, stride=1, pad=None):
    """Cross-correlation of NCHW x with HWIO w; pad None = SAME (odd kernels)."""
    kh = w.shape[0]
    pad = kh // 2 if pad is None else pad
    x = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kh + 1
    out = np.zeros([x.shape[0], w.shape[3], oh, ow])
    for i in range(kh):
        for j in range(kh):
            out += np.einsum("nchw,co->nohw", x[:, :, i:i + oh, j:j + ow], w[i, j])
    return out[:, :, ::stride, ::stride]


def np_lrelu(x, alpha=0.2):
    return np.where(x >= 0, x, x * alpha)


def np_bias_act(x, b, act="linear", gain=None, clamp=None, lrmul=1.0):
    shape = [1, -1] + [1] * (x.ndim - 2)
    x = x + np.reshape(b, shape) * lrmul
    if act == "lrelu":
        x = np_lrelu(x) * (np.sqrt(2) if gain is None else gain)
    elif act == "relu":
        x = np.maximum(x, 0) * (np.sqrt(2) if gain is None else gain)
    if clamp is not None:
        x = np.clip(x, -clamp, clamp)
    return x


def np_norm2(x, axis=1):
    return x / np.sqrt(np.mean(x ** 2, axis=axis, keepdims=True) + 1e-8)


def np_mbstd(x, group_size, num_features):
    """NVIDIA's minibatch stddev on NCHW x (strided groups, channel groups of C/F)."""
    n, c, h, w = x.shape
    g = n if group_size is None else min(group_size, n)
    y = x.reshape(g, -1, num_features, c // num_features, h, w)
    y = np.sqrt(np.mean((y - y.mean(axis=0)) ** 2, axis=0) + 1e-8)  # [M, F, c, H, W]
    y = y.mean(axis=(2, 3, 4))  # [M, F]
    y = np.tile(y[:, :, None, None], [g, 1, h, w])
    return np.concatenate([x, y], axis=1)


def np_flatten(x):
    return x.reshape(x.shape[0], -1)


# --- StyleGAN2 / ADA ----------------------------------------------------------------------------


def np_resample_kernel(k):
    """NVIDIA's resampling kernel: None = box [1, 1] (factor 2), normalised outer product."""
    k = np_kernel([1, 1] if k is None else k)
    return k, k.shape[0]


def np_up(x, k):
    """``upsample_2d`` x2: zero-insert, pad ((p+1)//2 + 1, p//2) with p = taps - 2, FIR 4k."""
    k, n = np_resample_kernel(k)
    return np_upfirdn(x, k * 4, up=2, pad0=(n - 1) // 2 + 1, pad1=(n - 2) // 2)


def np_down(x, k):
    """``downsample_2d`` x2: pad ((p+1)//2, p//2) with p = taps - 2, FIR k, keep every 2nd pixel."""
    k, n = np_resample_kernel(k)
    return np_upfirdn(x, k, down=2, pad0=(n - 1) // 2, pad1=(n - 2) // 2)


def np_up_conv(x, w, k):
    """``upsample_conv_2d`` (transposed conv, then FIR with p = taps - 2 - (kw - 1)) written as
    zero-insert x2, pad (kw + (p+1)//2, kw - 1 + p//2), FIR 4k, VALID conv with the unflipped w."""
    k, n = np_resample_kernel(k)
    kw = w.shape[0]
    p = n - 2 - (kw - 1)
    return np_conv(np_upfirdn(x, k * 4, up=2, pad0=kw + (p + 1) // 2, pad1=kw - 1 + p // 2), w, pad=0)


def np_conv_down(x, w, k):
    """``conv_downsample_2d``: FIR with pads ((p+1)//2, p//2), p = taps - 2 + kw - 1, then VALID
    conv at stride 2."""
    k, n = np_resample_kernel(k)
    p = n - 2 + w.shape[0] - 1
    return np_conv(np_upfirdn(x, k, pad0=(p + 1) // 2, pad1=p // 2), w, stride=2, pad=0)


def np_fan_scale(w, gain=1.0, lrmul=1.0):
    return w * gain / np.sqrt(np.prod(w.shape[:-1])) * lrmul


def np_modconv(v, scope, x, wl, up=False, demod=True, k=K4):
    """Modulated conv, written in its non-fused form (scale inputs, shared conv, scale outputs)."""
    w = np_fan_scale(v[f"{scope}/weight"])
    s = wl @ np_fan_scale(v[f"{scope}/mod_weight"]) + v[f"{scope}/mod_bias"] + 1  # [N, I]
    x = x * s[:, :, None, None]
    x = np_up_conv(x, w, k) if up else np_conv(x, w)
    if demod:
        ww = w[None] * s[:, None, None, :, None]
        d = 1 / np.sqrt(np.sum(ww ** 2, axis=(1, 2, 3)) + 1e-8)  # [N, O]
        x = x * d[:, :, None, None]
    return x


def np_g2_synthesis(v, kw, dlatents):
    """StyleGAN2 / ADA synthesis with stored noise (randomize_noise=False)."""
    arch, clamp, k = kw.get("architecture", "skip"), kw.get("conv_clamp"), kw.get("resample_kernel", K4)
    r2 = int(np.log2(kw["resolution"]))
    use_noise = kw.get("use_noise", True)

    def layer(scope, x, idx, up=False):
        x = np_modconv(v, scope, x, dlatents[:, idx], up=up, k=k)
        if use_noise:
            x = x + v[f"noise{idx}"] * v[f"{scope}/noise_strength"]
        return np_bias_act(x, v[f"{scope}/bias"], "lrelu", clamp=clamp)

    def torgb(scope, x, idx):
        return np_bias_act(np_modconv(v, scope, x, dlatents[:, idx], demod=False), v[f"{scope}/bias"],
                           clamp=clamp)

    x = np.tile(v["4x4/Const/const"], [dlatents.shape[0], 1, 1, 1])
    x = layer("4x4/Conv", x, 0)
    y = torgb("4x4/ToRGB", x, 1) if arch == "skip" else None
    for res in range(3, r2 + 1):
        s = f"{2 ** res}x{2 ** res}"
        t = x
        x = layer(f"{s}/Conv0_up", x, 2 * res - 5, up=True)
        x = layer(f"{s}/Conv1", x, 2 * res - 4)
        if arch == "resnet":
            x = (x + np_up_conv(t, np_fan_scale(v[f"{s}/Skip/weight"]), k)) / np.sqrt(2)
        if arch == "skip":
            y = np_up(y, k)
        if arch == "skip" or res == r2:
            t = torgb(f"{s}/ToRGB", x, 2 * res - 3)
            y = t if y is None else y + t
    return y


def np_g2_mapping(v, kw, z, labels, ada):
    """StyleGAN2 (LabelConcat, concat then normalise) / ADA (LabelEmbed, normalise each) mapping."""
    x = z
    if ada:
        x = np_norm2(x)
        if kw.get("label_size"):
            y = labels @ np_fan_scale(v["LabelEmbed/weight"]) + v["LabelEmbed/bias"]
            x = np.concatenate([x, np_norm2(y)], axis=1)
    else:
        if kw.get("label_size"):
            x = np.concatenate([x, labels @ v["LabelConcat/weight"]], axis=1)
        x = np_norm2(x)
    lrmul = kw.get("mapping_lrmul", 0.01)
    for i in range(kw.get("mapping_layers", 8)):
        x = x @ np_fan_scale(v[f"Dense{i}/weight"], lrmul=lrmul)
        x = np_bias_act(x, v[f"Dense{i}/bias"], kw.get("mapping_nonlinearity", "lrelu"), lrmul=lrmul)
    return x


def np_d2(v, kw, images, labels, ada):
    """StyleGAN2 ``D_stylegan2`` / ADA ``D_main`` (no comparison methods)."""
    arch, clamp, k = kw.get("architecture", "resnet"), kw.get("conv_clamp"), kw.get("resample_kernel", K4)
    r2 = int(np.log2(kw["resolution"]))

    def conv(scope, x, act="lrelu", down=False, bias=True):
        w = np_fan_scale(v[f"{scope}/weight"])
        x = np_conv_down(x, w, k) if down else np_conv(x, w)
        return np_bias_act(x, v[f"{scope}/bias"], act, clamp=clamp) if bias else x

    x, y = None, images
    for res in range(r2, 2, -1):
        s = f"{2 ** res}x{2 ** res}"
        if arch == "skip" or res == r2:
            t = conv(f"{s}/FromRGB", y)
            x = t if x is None else x + t
        t = x
        x = conv(f"{s}/Conv0", x)
        x = conv(f"{s}/Conv1_down", x, down=True)
        if arch == "resnet":
            x = (x + conv(f"{s}/Skip", t, down=True, bias=False)) / np.sqrt(2)
        if arch == "skip":
            y = np_down(y, k)
    if arch == "skip":
        x = x + conv("4x4/FromRGB", y)
    group, feats = kw.get("mbstd_group_size", None if ada else 4), kw.get("mbstd_num_features", 1)
    if (feats > 0) if ada else (group > 1):
        x = np_mbstd(x, group, feats)
    x = conv("4x4/Conv", x)
    x = np_bias_act(np_flatten(x) @ np_fan_scale(v["4x4/Dense0/weight"]), v["4x4/Dense0/bias"], "lrelu")
    out = x @ np_fan_scale(v["Output/weight"]) + v["Output/bias"]
    if not kw.get("label_size"):
        return out[:, :1]
    if not ada:
        return np.sum(out * labels, axis=1, keepdims=True)
    cmap = np_norm2(labels @ np_fan_scale(v["LabelEmbed/weight"]) + v["LabelEmbed/bias"])
    lrmul = kw.get("mapping_lrmul", 0.1)
    for i in range(kw.get("mapping_layers", 0)):
        cmap = np_bias_act(cmap @ np_fan_scale(v[f"Mapping{i}/weight"], lrmul=lrmul), v[f"Mapping{i}/bias"],
                           "lrelu", lrmul=lrmul)
    return np.sum(out * cmap, axis=1, keepdims=True) / np.sqrt(cmap.shape[1])


# ------------------------------------------------------------------------------------------------
# Helpers.


def own_values(net):
    """Own variables of a Network (not its components) as float64 numpy, by local name."""
    return {name: var.numpy().astype(np.float64) for name, var in net.module.own_vars.items()}


def randomise(net, seed, scale=0.5):
    """Give every variable but ``lod`` a random value (NVIDIA zero-inits biases and noise strengths,
    which would hide their paths), keeping the stored weights N(0, init)."""
    rng = np.random.RandomState(seed)
    nets = [net] + list(getattr(net, "components", {}).values())
    for n in nets:
        for name, var in n.module.own_vars.items():
            if name == "lod":
                continue
            value = rng.standard_normal(var.shape)
            if name.endswith("/weight") or name.endswith("mod_weight") or name.endswith("const") or \
                    name.startswith("noise"):
                value = value * np.std(var.numpy()) if np.std(var.numpy()) > 0 else value
            else:
                value = value * scale
            var.assign(value.astype(np.float32))
    return net


@functools.lru_cache(maxsize=None)
def fixture(name):
    G, D, Gs = load_network_pkl(str(FIXTURES / name / "network.pkl"))
    ref = dict(np.load(FIXTURES / name / "reference.npz"))
    return G, D, Gs, ref


def _inputs(n, size, res, seed=0, label_size=0):
    rng = np.random.RandomState(seed)
    z = rng.randn(n, size).astype(np.float32)
    images = rng.randn(n, 3, res, res).astype(np.float32)
    labels = np.eye(max(label_size, 1), dtype=np.float32)[rng.randint(0, max(label_size, 1), n)]
    return z, images, labels[:, :label_size]


# ------------------------------------------------------------------------------------------------
# The numpy passes reproduce NVIDIA's fixtures (so they can judge the uncovered paths).


@pytest.mark.parametrize("name", ["B_v2_skip_resnet_r32", "C_v2_orig_orig_r16", "G_ada_r32"])
def test_numpy_stylegan2_passes_reproduce_nvidia_fixtures(name):
    G, D, Gs, ref = fixture(name)
    ada = name.startswith("G_ada")
    syn, mapping = Gs.components.synthesis, Gs.components.mapping
    w = np_g2_mapping(own_values(mapping), mapping.static_kwargs, ref["z"].astype(np.float64), None, ada)
    assert_close(w, ref["gs_mapping_dlatents"][:, 0], "mapping")
    assert_close(np_g2_synthesis(own_values(syn), syn.static_kwargs, ref["gs_dlatents_psi1"].astype(np.float64)),
                 ref["gs_synthesis_psi1"], "synthesis")
    assert_close(np_d2(own_values(D), D.static_kwargs, ref["d_images8"].astype(np.float64), None, ada),
                 ref["d_scores_fixed8"], "D")


# ------------------------------------------------------------------------------------------------
# StyleGAN2 / ADA paths no fixture covers.

def _ids(extra):
    return ",".join(f"{k}={v}" for k, v in extra.items()) or "default"


TINY2 = dict(latent_size=16, dlatent_size=16, mapping_layers=2, mapping_fmaps=16, fmap_base=64, fmap_max=16)


@pytest.mark.parametrize("family", ["stylegan2", "stylegan2-ada"])
@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("extra", [{}, {"fused_modconv": True}, {"fused_modconv": False},
                                   {"conv_clamp": 0.5}, {"use_noise": False}, {"fmap_const": 8},
                                   {"resample_kernel": None}, {"resample_kernel": [1, 2, 1]},
                                   {"resample_kernel": [1, 2, 1], "fused_modconv": True}], ids=_ids)
def test_stylegan2_generator_architectures(family, architecture, extra):
    if family == "stylegan2" and set(extra) & {"conv_clamp", "use_noise", "fmap_const"}:
        pytest.skip("ADA-only kwarg")
    ada = family == "stylegan2-ada"
    G = randomise(Network.from_config(family, "G", 16, seed=3, architecture=architecture, **TINY2, **extra), 5)
    syn, mapping = G.components.synthesis, G.components.mapping
    z, _, _ = _inputs(3, 16, 16, seed=1)
    w = np_g2_mapping(own_values(mapping), mapping.static_kwargs, z.astype(np.float64), None, ada)
    wp = np.tile(w[:, None], [1, syn.module.num_layers, 1])
    ours = G.run(z, None, truncation_psi=1, randomize_noise=False)
    assert_close(ours, np_g2_synthesis(own_values(syn), syn.static_kwargs, wp), f"{family} {architecture} {extra}")


@pytest.mark.parametrize("family", ["stylegan2", "stylegan2-ada"])
@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("extra", [{}, {"mbstd_num_features": 2}, {"mbstd_group_size": 2},
                                   {"conv_clamp": 0.5}, {"fmap_min": 12}, {"resample_kernel": None},
                                   {"resample_kernel": [1, 2, 1]}], ids=_ids)
def test_stylegan2_discriminator_architectures(family, architecture, extra):
    if family == "stylegan2" and "conv_clamp" in extra:
        pytest.skip("ADA-only kwarg")
    ada = family == "stylegan2-ada"
    D = randomise(Network.from_config(family, "D", 16, seed=3, architecture=architecture,
                                      fmap_base=64, fmap_max=16, **extra), 6)
    _, images, _ = _inputs(8, 16, 16, seed=2)
    ref = np_d2(own_values(D), D.static_kwargs, images.astype(np.float64), None, ada)
    assert_close(D.run(images, None), ref, f"{family} {architecture} {extra}")


@pytest.mark.parametrize("family", ["stylegan2", "stylegan2-ada"])
def test_stylegan2_label_conditioning(family):
    ada = family == "stylegan2-ada"
    extra = dict(mapping_layers=2) if ada else {}
    G = randomise(Network.from_config(family, "G", 8, seed=1, label_size=5, **TINY2), 7)
    D = randomise(Network.from_config(family, "D", 8, seed=2, label_size=5, fmap_base=64, fmap_max=16,
                                      **extra), 8)
    z, images, labels = _inputs(4, 16, 8, seed=3, label_size=5)
    mapping = G.components.mapping
    for lab in (labels, None):
        np_lab = np.zeros([4, 5]) if lab is None else lab.astype(np.float64)
        w = np_g2_mapping(own_values(mapping), mapping.static_kwargs, z.astype(np.float64), np_lab, ada)
        assert_close(mapping.run(z, lab)[:, 0], w, f"mapping labels={lab is not None}")
        assert_close(D.run(images, lab), np_d2(own_values(D), D.static_kwargs, images.astype(np.float64),
                                               np_lab, ada), f"D labels={lab is not None}")


# --- StyleGAN v1 --------------------------------------------------------------------------------


def np_v1_act(name):
    return {"lrelu": np_lrelu, "relu": lambda x: np.maximum(x, 0)}[name]


def np_v1_weight(v, kw, name, gain=np.sqrt(2), lrmul=1.0):
    """v1 ``get_weight``: runtime weight = stored * gain/sqrt(fan_in) * lrmul (wscale) or stored * lrmul."""
    w = v[name]
    return np_fan_scale(w, gain, lrmul) if kw.get("use_wscale", True) else w * lrmul


def np_blur(x, taps):
    """v1 ``blur2d``: normalised outer(taps, taps), TF 'SAME' zero padding (the extra pixel of an
    even kernel after), per channel."""
    return np_upfirdn(x, np_kernel(taps)[::-1, ::-1], pad0=(len(taps) - 1) // 2, pad1=len(taps) // 2)


def np_nearest_up(x, factor=2):
    return x.repeat(factor, axis=2).repeat(factor, axis=3)


def np_avg_down(x, factor=2):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


def np_v1_mapping(v, kw, z, labels):
    x = z
    if kw.get("label_size"):
        x = np.concatenate([x, labels @ v["LabelConcat/weight"]], axis=1)
    if kw.get("normalize_latents", True):
        x = np_norm2(x)
    act, lrmul = np_v1_act(kw.get("mapping_nonlinearity", "lrelu")), kw.get("mapping_lrmul", 0.01)
    for i in range(kw.get("mapping_layers", 8)):
        x = act(x @ np_v1_weight(v, kw, f"Dense{i}/weight", lrmul=lrmul) + v[f"Dense{i}/bias"] * lrmul)
    return x


def np_v1_synthesis(v, kw, dlatents):
    """v1 ``G_synthesis`` at lod 0 with stored noise; fused up-conv = nearest up + flipped-kernel conv."""
    g = functools.partial(np_v1_weight, v, kw)
    act, r2 = np_v1_act(kw.get("nonlinearity", "lrelu")), int(np.log2(kw["resolution"]))
    blur, fused_scale = kw.get("blur_filter", [1, 2, 1]), kw.get("fused_scale", "auto")

    def epilogue(x, scope, idx):
        if kw.get("use_noise", True):
            x = x + v[f"noise{idx}"] * v[f"{scope}/Noise/weight"][None, :, None, None]
        x = act(x + v[f"{scope}/bias"][None, :, None, None])
        if kw.get("use_pixel_norm", False):
            x = np_norm2(x)
        if kw.get("use_instance_norm", True):
            x = x - x.mean(axis=(2, 3), keepdims=True)
            x = x / np.sqrt(np.mean(x ** 2, axis=(2, 3), keepdims=True) + 1e-8)
        if kw.get("use_styles", True):
            c = x.shape[1]
            s = dlatents[:, idx] @ g(f"{scope}/StyleMod/weight", 1.0) + v[f"{scope}/StyleMod/bias"]
            x = x * (s[:, :c, None, None] + 1) + s[:, c:, None, None]
        return x

    if kw.get("const_input_layer", True):
        x = epilogue(np.tile(v["4x4/Const/const"], [dlatents.shape[0], 1, 1, 1]), "4x4/Const", 0)
    else:
        x = dlatents[:, 0] @ g("4x4/Dense/weight", np.sqrt(2) / 4)
        x = epilogue(x.reshape(x.shape[0], -1, 4, 4), "4x4/Dense", 0)
    x = epilogue(np_conv(x, g("4x4/Conv/weight")), "4x4/Conv", 1)
    for res in range(3, r2 + 1):
        s = f"{2 ** res}x{2 ** res}"
        w = g(f"{s}/Conv0_up/weight")
        fused = 2 ** res >= 128 if fused_scale == "auto" else fused_scale
        x = np_conv(np_nearest_up(x), w[::-1, ::-1] if fused else w)
        if blur:
            x = np_blur(x, blur)
        x = epilogue(x, f"{s}/Conv0_up", 2 * res - 4)
        x = epilogue(np_conv(x, g(f"{s}/Conv1/weight")), f"{s}/Conv1", 2 * res - 3)
    return np_conv(x, g("ToRGB_lod0/weight", 1.0)) + v["ToRGB_lod0/bias"][None, :, None, None]


def np_d_basic(v, kw, images, labels):
    """v1 ``D_basic`` at lod 0; fused down-conv = conv then 2x2 average."""
    g = functools.partial(np_v1_weight, v, kw)
    act, r2, blur = np_v1_act(kw.get("nonlinearity", "lrelu")), int(np.log2(kw["resolution"])), \
        kw.get("blur_filter", [1, 2, 1])

    def bias(x, scope):
        b = v[f"{scope}/bias"]
        return x + (b[None, :, None, None] if x.ndim == 4 else b[None])

    x = act(bias(np_conv(images, g("FromRGB_lod0/weight")), "FromRGB_lod0"))
    for res in range(r2, 2, -1):
        s = f"{2 ** res}x{2 ** res}"
        x = act(bias(np_conv(x, g(f"{s}/Conv0/weight")), f"{s}/Conv0"))
        if blur:
            x = np_blur(x, blur)
        x = act(bias(np_avg_down(np_conv(x, g(f"{s}/Conv1_down/weight"))), f"{s}/Conv1_down"))
    if kw.get("mbstd_group_size", 4) > 1:
        x = np_mbstd(x, kw.get("mbstd_group_size", 4), kw.get("mbstd_num_features", 1))
    x = act(bias(np_conv(x, g("4x4/Conv/weight")), "4x4/Conv"))
    x = act(bias(np_flatten(x) @ g("4x4/Dense0/weight"), "4x4/Dense0"))
    x = bias(x @ g("4x4/Dense1/weight", 1.0), "4x4/Dense1")
    return np.sum(x * labels, axis=1, keepdims=True) if kw.get("label_size") else x


@pytest.mark.parametrize("name", ["A_v1_r32", "F_v1_r32_fused"])
def test_numpy_v1_passes_reproduce_nvidia_fixtures(name):
    G, D, Gs, ref = fixture(name)
    syn, mapping = Gs.components.synthesis, Gs.components.mapping
    w = np_v1_mapping(own_values(mapping), mapping.static_kwargs, ref["z"].astype(np.float64), None)
    assert_close(w, ref["gs_mapping_dlatents"][:, 0], "mapping")
    assert_close(np_v1_synthesis(own_values(syn), syn.static_kwargs, ref["gs_dlatents_psi1"].astype(np.float64)),
                 ref["gs_synthesis_psi1"], "synthesis")
    assert_close(np_d_basic(own_values(D), D.static_kwargs, ref["d_images8"].astype(np.float64), None),
                 ref["d_scores_fixed8"], "D")


TINY1 = dict(latent_size=16, dlatent_size=16, mapping_layers=2, mapping_fmaps=16, fmap_base=64, fmap_max=16)
V1_OPTIONS = [{}, {"nonlinearity": "relu", "mapping_nonlinearity": "relu"}, {"use_styles": False},
              {"const_input_layer": False}, {"use_noise": False}, {"use_pixel_norm": True},
              {"use_instance_norm": False}, {"blur_filter": None}, {"blur_filter": [1, 3, 3, 1]},
              {"use_wscale": False}, {"normalize_latents": False}, {"mapping_layers": 3},
              {"fused_scale": True}, {"fmap_decay": 0.5}]


@pytest.mark.parametrize("extra", V1_OPTIONS, ids=_ids)
def test_v1_generator_options(extra):
    G = randomise(Network.from_config("stylegan", "G", 16, seed=3, **dict(TINY1, **extra)), 5)
    syn, mapping = G.components.synthesis, G.components.mapping
    z, _, _ = _inputs(3, 16, 16, seed=1)
    w = np_v1_mapping(own_values(mapping), mapping.static_kwargs, z.astype(np.float64), None)
    wp = np.tile(w[:, None], [1, syn.module.num_styles, 1])
    assert_close(G.components.mapping.run(z, None)[:, 0], w, f"mapping {extra}")
    assert_close(G.run(z, None, truncation_psi=1, randomize_noise=False),
                 np_v1_synthesis(own_values(syn), syn.static_kwargs, wp), f"G {extra}")


D1_OPTIONS = [{}, {"nonlinearity": "relu"}, {"blur_filter": None}, {"use_wscale": False},
              {"mbstd_num_features": 2}, {"mbstd_group_size": 2}, {"mbstd_group_size": 0}, {"fused_scale": True}]


@pytest.mark.parametrize("extra", D1_OPTIONS, ids=_ids)
def test_v1_discriminator_options(extra):
    D = randomise(Network.from_config("stylegan", "D", 16, seed=3, fmap_base=64, fmap_max=16, **extra), 6)
    _, images, _ = _inputs(8, 16, 16, seed=2)
    assert_close(D.run(images, None), np_d_basic(own_values(D), D.static_kwargs, images.astype(np.float64), None),
                 f"D {extra}")


def test_v1_128px_switches_to_the_fused_paths_automatically():
    G = randomise(Network.from_config("stylegan", "G", 128, seed=3, **dict(TINY1, fmap_base=512, fmap_max=8)), 5)
    D = randomise(Network.from_config("stylegan", "D", 128, seed=4, fmap_base=512, fmap_max=8), 6)
    syn, mapping = G.components.synthesis, G.components.mapping
    z, images, _ = _inputs(2, 16, 128, seed=1)
    w = np_v1_mapping(own_values(mapping), mapping.static_kwargs, z.astype(np.float64), None)
    wp = np.tile(w[:, None], [1, syn.module.num_styles, 1])
    assert_close(G.run(z, None, truncation_psi=1, randomize_noise=False),
                 np_v1_synthesis(own_values(syn), syn.static_kwargs, wp), "G 128")
    assert_close(D.run(images, None), np_d_basic(own_values(D), D.static_kwargs, images.astype(np.float64), None),
                 "D 128")


def test_v1_label_conditioning_and_labels_none_as_zeros():
    """NVIDIA feeds zeros [N, label_size] for a None labels input, in ``run`` and ``get_output_for``."""
    G = randomise(Network.from_config("stylegan", "G", 8, seed=1, label_size=5, **TINY1), 7)
    D = randomise(Network.from_config("stylegan", "D", 8, seed=2, label_size=5, fmap_base=64, fmap_max=16), 8)
    z, images, labels = _inputs(4, 16, 8, seed=3, label_size=5)
    mapping = G.components.mapping
    for lab in (labels, None):
        np_lab = np.zeros([4, 5]) if lab is None else lab.astype(np.float64)
        w = np_v1_mapping(own_values(mapping), mapping.static_kwargs, z.astype(np.float64), np_lab)
        assert_close(mapping.run(z, lab)[:, 0], w, f"mapping labels={lab is not None}")
        assert_close(mapping.get_output_for(tf.constant(z), None if lab is None else tf.constant(lab))[:, 0], w,
                     f"mapping get_output_for labels={lab is not None}")
        ref = np_d_basic(own_values(D), D.static_kwargs, images.astype(np.float64), np_lab)
        assert_close(D.run(images, lab), ref, f"D labels={lab is not None}")
        assert_close(D.get_output_for(tf.constant(images), None if lab is None else tf.constant(lab)), ref,
                     f"D get_output_for labels={lab is not None}")


# ------------------------------------------------------------------------------------------------
# G_style / G_main kwargs: truncation, validation, training (all families).


def _generator(family, seed=3):
    G = Network.from_config(family, "G", 8, seed=seed, **TINY1)
    randomise(G, seed + 10)
    return G


def np_truncate(w, avg, psi, cutoff):
    coef = np.array([psi if cutoff is None or i < cutoff else 1.0 for i in range(w.shape[1])])
    return avg + (w - avg) * coef[None, :, None]


@pytest.mark.parametrize("family", ["stylegan", "stylegan2", "stylegan2-ada"])
@pytest.mark.parametrize("kwargs,psi,cutoff", [
    (dict(truncation_psi=0.6, truncation_cutoff=3), 0.6, 3),
    (dict(truncation_psi=0.6, truncation_cutoff=None), 0.6, "v1: off, v2: all"),
    (dict(truncation_psi=0.6, truncation_cutoff=0), 0.6, "v1: off, v2: none"),
    (dict(is_validation=True), None, None),
    (dict(is_validation=True, truncation_psi_val=0.4, truncation_cutoff_val=2), 0.4, 2),
    (dict(is_validation=True, truncation_psi_val=0.4), 0.4, "v1: off, v2: all"),
    (dict(truncation_psi=None), None, None),
])
def test_truncation_settings(family, kwargs, psi, cutoff):
    G = _generator(family)
    z, _, _ = _inputs(3, 16, 8, seed=4)
    w = G.components.mapping.run(z, None).astype(np.float64)
    avg = G.get_var("dlatent_avg").astype(np.float64)
    if isinstance(cutoff, str):  # NVIDIA's v1 truncates only when both psi and cutoff are set
        if family == "stylegan":
            psi = None
        else:
            cutoff = None if kwargs.get("truncation_cutoff", None) is None else 0
    want = w if psi is None else np_truncate(w, avg, psi, cutoff)
    images = G.run(z, None, randomize_noise=False, **kwargs)
    assert_close(images, G.components.synthesis.run(want.astype(np.float32), randomize_noise=False), str(kwargs))


@pytest.mark.parametrize("family", ["stylegan", "stylegan2", "stylegan2-ada"])
def test_training_updates_dlatent_avg_without_truncation(family):
    G = _generator(family)
    z, _, _ = _inputs(4, 16, 8, seed=5)
    w = G.components.mapping.run(z, None).astype(np.float64)
    avg = G.get_var("dlatent_avg").astype(np.float64)
    images = G.run(z, None, is_training=True, style_mixing_prob=None, dlatent_avg_beta=0.9, randomize_noise=False)
    want_avg = w[:, 0].mean(axis=0) + (avg - w[:, 0].mean(axis=0)) * 0.9
    assert_close(G.get_var("dlatent_avg"), want_avg, "dlatent_avg")
    assert_close(images, G.components.synthesis.run(w.astype(np.float32), randomize_noise=False), "no truncation")
    before = G.get_var("dlatent_avg")
    G.run(z, None, is_training=True, style_mixing_prob=None, dlatent_avg_beta=1, randomize_noise=False)
    np.testing.assert_array_equal(G.get_var("dlatent_avg"), before)  # beta 1 = frozen


@pytest.mark.parametrize("family", ["stylegan", "stylegan2", "stylegan2-ada"])
def test_style_mixing_takes_a_prefix_of_layers_from_the_first_latent(family):
    G = _generator(family)
    z, _, _ = _inputs(2, 16, 8, seed=6)
    w = G.components.mapping.run(z, None)
    cutoffs = set()
    for _ in range(12):
        _, mixed = G.run(z, None, is_training=True, style_mixing_prob=1.0, dlatent_avg_beta=None,
                         return_dlatents=True, randomize_noise=False)
        same = np.all(np.isclose(mixed, w), axis=(0, 2))
        cutoff = int(np.argmin(same))
        assert 1 <= cutoff < w.shape[1] and same[:cutoff].all() and not same[cutoff:].any()
        np.testing.assert_allclose(mixed[:, cutoff:], np.broadcast_to(mixed[:, -1:], mixed[:, cutoff:].shape))
        cutoffs.add(cutoff)
    assert len(cutoffs) > 1


# ------------------------------------------------------------------------------------------------
# Call-time kwargs: NVIDIA's Network passes every call kwarg to the build function, whose
# ``**_kwargs`` ignores the ones it does not use; so scripts may pass any kwarg of the family to any
# of its networks (e.g. a shared ``Gs_kwargs`` dict to the synthesis). A misspelt name stays an error.


@pytest.mark.parametrize("family", ["stylegan", "stylegan2", "stylegan2-ada"])
def test_family_kwargs_are_accepted_by_every_network_and_typos_are_errors(family):
    from stylegan_tl.errors import StyleGANTLError

    G = _generator(family)
    D = Network.from_config(family, "D", 8, seed=1, fmap_base=64, fmap_max=16)
    z, images, _ = _inputs(2, 16, 8, seed=7)
    w = G.components.mapping.run(z, None)
    shared = dict(truncation_psi=0.5, randomize_noise=False, is_validation=True)
    np.testing.assert_array_equal(G.components.synthesis.run(w, **shared),
                                  G.components.synthesis.run(w, randomize_noise=False))
    np.testing.assert_array_equal(G.components.mapping.run(z, None, **shared), w)
    np.testing.assert_array_equal(D.run(images, None, **shared), D.run(images, None))
    with pytest.raises(StyleGANTLError, match="truncaton_psi"):
        G.components.synthesis.run(w, truncaton_psi=0.5)
    with pytest.raises(StyleGANTLError, match="truncaton_psi"):
        G.run(z, None, truncaton_psi=0.5)


def test_ada_score_size_is_a_call_time_kwarg():
    """ADA's D_main returns ``Output[:, :score_size]``; score_size "can vary between evaluations"."""
    D = randomise(Network.from_config("stylegan2-ada", "D", 8, seed=1, score_max=5, fmap_base=64, fmap_max=16), 2)
    _, images, _ = _inputs(4, 16, 8, seed=8)
    five = D.run(images, None, score_size=5)
    assert five.shape == (4, 5)
    np.testing.assert_array_equal(D.run(images, None, score_size=3), five[:, :3])
    np.testing.assert_array_equal(D.run(images, None), five[:, :1])


@pytest.mark.parametrize("family", ["stylegan", "stylegan2"])
def test_style_mixing_cutoff_stays_below_the_layers_in_use_at_lod(family):
    """v1/v2 draw the mixing cutoff in [1, num_layers - 2*int(lod)); here lod 1 at 8 px leaves [1, 2)."""
    G = _generator(family)
    G.set_var("lod", np.float32(1))
    z, _, _ = _inputs(2, 16, 8, seed=9)
    w = G.components.mapping.run(z, None)
    for _ in range(6):
        _, mixed = G.run(z, None, is_training=True, style_mixing_prob=1.0, dlatent_avg_beta=None,
                         return_dlatents=True, randomize_noise=False)
        np.testing.assert_allclose(mixed[:, :1], w[:, :1])
        assert not np.isclose(mixed[:, 1:], w[:, 1:]).all(axis=2).any()
