"""Choosing between the reference (pure TF) and the custom (compiled) implementation.

``impl`` arguments accept ``'ref'``, ``'custom'`` (alias ``'cuda'``, NVIDIA's name) or ``'auto'``.
``'auto'`` is resolved through the environment variable ``STYLEGAN_TL_OPS`` (``ref``, ``custom`` or
``auto``, default ``auto``): in auto mode the custom op library is used when it builds and loads,
else the reference, with one warning per process.
"""

import os

import tensorflow as tf
from absl import logging

from ..errors import BuildError, StyleGANTLError

ENV_MODE = "STYLEGAN_TL_OPS"
MODES = ("ref", "custom", "auto")

_fallback_warned = False


def _check_mode(mode, origin):
    if mode not in MODES:
        raise StyleGANTLError(f"{origin}: impl must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


@tf.autograph.experimental.do_not_convert  # may build the library: plain Python, never a graph
def resolve_impl(impl):
    """Map an ``impl`` argument to ``'ref'`` or ``'custom'``.

    ``'custom'`` (explicit or forced by the environment) raises ``BuildError`` when the op library
    cannot be built or loaded; ``'auto'`` falls back to ``'ref'`` with one absl warning.
    """
    if impl == "cuda":  # NVIDIA's name for the compiled op
        impl = "custom"
    _check_mode(impl, "stylegan_tl.ops")
    if impl == "auto":
        impl = _check_mode(os.environ.get(ENV_MODE, "auto").strip().lower() or "auto",
                           f"environment variable {ENV_MODE}")
    if impl == "ref":
        return "ref"
    if impl == "custom":
        load_library()
        return "custom"
    return "custom" if _try_load_library() else "ref"


def load_library():
    """Return the loaded custom-op module (builds it on first use); raises BuildError."""
    # Imported here so that `python -m stylegan_tl.ops.build` does not find its own module
    # already imported by the package.
    from . import build
    return build.load_ops_library()


def _try_load_library():
    global _fallback_warned
    try:
        load_library()
        return True
    except BuildError as e:
        if not _fallback_warned:
            _fallback_warned = True
            logging.warning("stylegan_tl custom ops unavailable, using the pure-TF reference "
                            "(set %s=ref to silence): %s", ENV_MODE, e)
        return False
