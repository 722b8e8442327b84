"""How the project writes files: atomically, and the two formats both trainers write.

Shared by ``stylegan_tl``, ``superres_tf`` and ``run_pipeline.py``; dependency-free (numpy and the
standard library; TensorFlow only inside the TensorBoard writers), see docs/architecture.md.

* :func:`atomic_write` / :func:`write_bytes` / :func:`atomic_path`: the content goes to a hidden
  temp file beside the target (``.<name>.<random>.tmp``: no reader's glob such as ``*.pkl`` or
  ``training-state-*.npz`` ever sees it), is fsynced and renamed over the target; on any failure
  (disk full, an exception in the writer, Ctrl-C) the temp file is removed and the target is left
  as it was. :func:`new_folder` does the same for a folder (SavedModels).
* :func:`save_arrays` / :func:`load_arrays`: named numpy arrays plus an optional JSON ``meta``
  entry in one ``.npz`` (training states and checkpoints).
* :func:`write_scalar` / :func:`write_image`: TensorBoard events through ``tf.summary.write`` with
  the scalars/images plugin metadata (``tf.summary.scalar``/``image`` need the ``tensorboard``
  package, which TensorFlow no longer installs; viewing the events does).

Every writer takes ``error``: the caller's project exception class, raised with one line naming
the file when it cannot be written.
"""

import contextlib
import json
import os
import shutil
import tempfile

import numpy as np


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, error, mode=None, suffix=".tmp"):
    """Yield a hidden temp path beside ``path`` (``.<name>.<random><suffix>``) for a writer that
    needs a file name (Keras wants ``suffix='.keras'``, video encoders ``'.mp4'``); when the block
    succeeds the file is fsynced and renamed to ``path``.

    The file gets ``mode``, by default the usual permissions (0o666 minus the umask). An OSError in
    the block or in the rename (disk full, unwritable folder) becomes ``error`` naming ``path``; any
    other exception propagates; in both cases the temp file is removed.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name[:80]}.", suffix=suffix)
        os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)
        os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise error(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path, error, mode=None):
    """Yield a binary file object whose content replaces ``path`` when the block succeeds (see
    :func:`atomic_path`; the object's ``name`` is the temp path, for writers that need one, e.g.
    ``tf.io.TFRecordWriter``)."""
    with atomic_path(path, error, mode) as tmp, open(tmp, "wb") as f:
        yield f


def write_bytes(path, data: bytes, error):
    """Write ``data`` to ``path`` with :func:`atomic_write`, creating its folder first."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
        raise error(f"{path}: cannot write ({e.strerror}: {e.filename})") from None
    with atomic_write(path, error) as f:
        f.write(data)
    return path


def check_new_folder(outdir, error) -> str:
    """Refuse an ``outdir`` that exists and is not an empty folder; create its parent. Returns the
    hidden temporary folder beside it that :func:`new_folder` fills."""
    if os.path.exists(outdir) and (not os.path.isdir(outdir) or os.listdir(outdir)):
        raise error(f"{outdir}: already exists and is not an empty folder (choose a new --outdir)")
    parent = os.path.dirname(os.path.abspath(outdir))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise error(f"{outdir}: cannot create the output folder ({e.strerror})") from None
    return os.path.join(parent, f".{os.path.basename(os.path.abspath(outdir))}.tmp{os.getpid()}")


@contextlib.contextmanager
def new_folder(outdir, error):
    """Yield a temporary folder path (not yet created) that becomes the new folder ``outdir`` when
    the block succeeds; removed otherwise. See :func:`check_new_folder`."""
    tmp = check_new_folder(outdir, error)
    try:
        yield tmp
        if os.path.isdir(outdir):
            os.rmdir(outdir)  # empty, checked above
        os.replace(tmp, outdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # ours; gone already when renamed


def save_arrays(path, arrays: dict, error, meta=None):
    """Write named numpy ``arrays`` (plus ``meta``, a JSON-able dict, if given) as one ``.npz``,
    atomically."""
    extra = {} if meta is None else {"__meta__": np.array(json.dumps(meta))}
    with atomic_write(path, error) as f:
        np.savez(f, **extra, **arrays)


def load_arrays(path):
    """Inverse of :func:`save_arrays`: ``(arrays dict, meta dict or None)``."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "__meta__"}
        meta = json.loads(str(f["__meta__"])) if "__meta__" in f.files else None
    return arrays, meta


def _plugin(name):
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=name))


def write_scalar(tag, value, step):
    """A TensorBoard scalar on the default summary writer."""
    import tensorflow as tf

    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=_plugin("scalars"))


def write_image(tag, image, step):
    """A TensorBoard image (uint8 HWC, 1 or 3 channels, or HW) on the default summary writer."""
    import tensorflow as tf

    image = np.asarray(image, np.uint8)
    image = image if image.ndim == 3 else image[..., None]
    height, width = image.shape[:2]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), tf.io.encode_png(image)])
    tf.summary.write(tag, tensor, step=step, metadata=_plugin("images"))
