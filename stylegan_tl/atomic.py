"""Atomic file writes for stylegan_tl: a hidden temp file beside the target, fsync, rename.

The temp file is named ``.<name>.<random>.tmp``: hidden and not ending in the target's suffix, so
no reader's glob (``training-state-*.npz``, ``*.pkl``, ``*.tfrecords``, ``dataset-*.npy``) ever sees
a half-written file. On any failure (disk full, an exception in the writer, Ctrl-C) the temp file is
removed and the target is left as it was. No TensorFlow import.
"""

import contextlib
import os
import tempfile

from .errors import StyleGANTLError


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode=None):
    """Yield a binary file object whose content replaces ``path`` when the block succeeds.

    The file gets ``mode``, by default the usual permissions (0o666 minus the umask). Its ``name``
    is the temp path (for writers that need a path, e.g. ``tf.io.TFRecordWriter``). An OSError in the block or
    in the rename (disk full, unwritable folder) becomes a StyleGANTLError naming ``path``; any other
    exception propagates; in both cases the temp file is removed.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name[:80]}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise StyleGANTLError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
