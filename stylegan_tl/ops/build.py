"""Builds the custom-op library (work in progress: not available yet)."""

from ..errors import BuildError


def load_ops_library():
    raise BuildError("stylegan_tl custom ops are not implemented yet")
