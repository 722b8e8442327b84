"""Dump inputs and outputs of the TensorFlow CPU kernels of stylegan_tl's custom ops for cuda_check.

Usage: ``python bench/cuda_check/dump_cpu_goldens.py OUTDIR`` (run from the repository root; needs
TensorFlow and builds the custom-op library like the package does). Writes ``OUTDIR/manifest.txt``
(format in cuda_check.cu) and one raw little-endian array per input/output: fused_bias_act for every
activation in forward and both gradient modes, upfirdn_2d for StyleGAN2's resampling configurations
and their gradient (adjoint) configurations, each in float32 and float16, all on the CPU.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from stylegan_tl.ops.fused_bias_act import ACTIVATIONS  # noqa: E402
from stylegan_tl.ops.impl import load_library  # noqa: E402

# name: (kernel h, kernel w, up, down, pad0, pad1, minor), pads and factors on both axes.
UPFIRDN = {
    "up2k4": (4, 4, 2, 1, 2, 1, 8), "down2k4": (4, 4, 1, 2, 1, 1, 8), "fir4": (4, 4, 1, 1, 2, 2, 16),
    "sym6x12": (1, 12, 2, 1, 6, 5, 3), "k7": (7, 7, 1, 1, 3, 3, 5), "up4k8": (8, 8, 4, 1, 5, 2, 2),
    "down4crop": (5, 5, 1, 4, -1, 2, 4),
}


def _out_size(size, up, down, pad0, pad1, taps):
    return (size * up + pad0 + pad1 - taps) // down + 1


def _write(outdir, name, suffix, array, dtype):
    np.ascontiguousarray(array, dtype=dtype).tofile(outdir / f"{name}.{suffix}")


def dump(outdir: pathlib.Path):
    lib = load_library()
    rng = np.random.default_rng(5)
    lines = []
    for dtype in (np.float32, np.float16):
        tag = np.dtype(dtype).name
        for act, spec in ACTIVATIONS.items():
            for grad in (0, 1, 2):
                name = f"fba_{tag}_{act}_g{grad}"
                x = rng.normal(0, 1.5, (3, 17, 5, 7)).astype(dtype)
                b = rng.normal(0, 0.5, 17).astype(dtype)
                ref = rng.normal(0, 1.5, x.shape).astype(dtype) if grad else np.zeros(0, dtype)
                clamp = 0.7 if grad == 1 else -1.0
                with tf.device("/CPU:0"):
                    y = lib.stylegan_tl_fused_bias_act(x=x, b=b, xref=ref, grad=grad, axis=1, act=spec.code,
                                                       alpha=0.2, gain=spec.def_gain, clamp=clamp).numpy()
                for suffix, array in (("x", x), ("b", b), ("ref", ref), ("y", y)):
                    _write(outdir, name, suffix, array, dtype)
                lines.append(f"fba {name} {tag} {x.size} 17 35 {grad} {spec.code} 0.2 {spec.def_gain!r} {clamp}")
        for case, (kh, kw, up, down, p0, p1, minor) in UPFIRDN.items():
            forward = (13, 11, up, down, p0, p1)
            out_h, out_w = _out_size(13, up, down, p0, p1, kh), _out_size(11, up, down, p0, p1, kw)
            # The gradient configuration (ops/custom.py): up <-> down, flipped kernel, derived pads.
            gy0, gx0 = kh - 1 - p0, kw - 1 - p0
            adjoint = (out_h, out_w, down, up, (gy0, 13 * up - out_h * down - gy0 + kh - 1),
                       (gx0, 11 * up - out_w * down - gx0 + kw - 1))
            k = rng.normal(0, 0.3, (kh, kw)).astype(np.float32)
            for label, (in_h, in_w, u, d, pads_y, pads_x), kernel in (
                    ("fwd", (forward[0], forward[1], up, down, (p0, p1), (p0, p1)), k),
                    ("grad", adjoint, k[::-1, ::-1])):
                name = f"upfirdn_{tag}_{case}_{label}"
                x = rng.normal(0, 1, (5, in_h, in_w, minor)).astype(dtype)
                with tf.device("/CPU:0"):
                    y = lib.stylegan_tl_upfirdn2d(x=x, k=np.ascontiguousarray(kernel), upx=u, upy=u, downx=d,
                                                  downy=d, padx0=pads_x[0], padx1=pads_x[1], pady0=pads_y[0],
                                                  pady1=pads_y[1]).numpy()
                _write(outdir, name, "x", x, dtype)
                _write(outdir, name, "k", kernel, np.float32)
                _write(outdir, name, "y", y, dtype)
                lines.append(f"upfirdn {name} {tag} 5 {in_h} {in_w} {minor} {kh} {kw} {u} {u} {d} {d} "
                             f"{pads_x[0]} {pads_x[1]} {pads_y[0]} {pads_y[1]}")
    (outdir / "manifest.txt").write_text("\n".join(lines) + "\n")
    return len(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTDIR")
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    print(f"{dump(out)} cases written to {out}")
