"""Atomic file writes for stylegan_tl: :func:`superres_tf.files.atomic_write` raising StyleGANTLError.

The project's one atomic writer (hidden temp file beside the target, fsync, rename, nothing left
behind on failure) lives in :mod:`superres_tf.files`; this binds it to this package's exception.
No TensorFlow import.
"""

from superres_tf import files

from .errors import StyleGANTLError


def atomic_write(path, mode=None):
    """Yield a binary file object whose content replaces ``path`` when the block succeeds (see
    :func:`superres_tf.files.atomic_write`); a failed write is a StyleGANTLError naming ``path``."""
    return files.atomic_write(path, StyleGANTLError, mode)
