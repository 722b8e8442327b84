"""Atomic file writes for stylegan_tl: :func:`superres_tf.files.atomic_write` and
:func:`superres_tf.images.write_image` raising StyleGANTLError.

The project's one atomic writer (hidden temp file beside the target, fsync, rename, nothing left
behind on failure) lives in :mod:`superres_tf.files`, its one image writer in
:mod:`superres_tf.images`; this binds them to this package's exception. No TensorFlow import.
"""

from superres_tf import files, images

from .errors import StyleGANTLError


def atomic_write(path, mode=None):
    """Yield a binary file object whose content replaces ``path`` when the block succeeds (see
    :func:`superres_tf.files.atomic_write`); a failed write is a StyleGANTLError naming ``path``."""
    return files.atomic_write(path, StyleGANTLError, mode)


def write_image(path, array):
    """Write uint8 HWC ``array`` (C = 1 or 3) to ``path`` atomically, format from the suffix (the
    PNGs of generate, project and the snapshot grids; see :func:`superres_tf.images.write_image`);
    a failed write is a StyleGANTLError naming ``path``. Returns ``path``."""
    return images.write_image(path, array, error=StyleGANTLError)
