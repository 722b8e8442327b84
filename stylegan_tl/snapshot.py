"""Files of a training run: snapshot names, the training-state file, image grids (all atomic).

A run directory holds, per snapshot, ``network-snapshot-<kimg:06d>.pkl`` (G, D, Gs in NVIDIA's
format) and ``fakes<kimg:06d>.png`` (a grid of fixed seeds), plus one ``training-state-<kimg:06d>.npz``
beside the newest snapshot: optimizer slots, ``pl_mean``, the ADA state, the image counter and the
step counter, keyed by variable name, with a JSON ``meta`` entry naming its snapshot. Only the newest
state file is kept (they are as large as the optimizer). :func:`latest_state` finds where to
continue after an interruption. Files are written with :func:`stylegan_tl.atomic.atomic_write`
(hidden temp names), and only names of exactly these forms are read or removed.
"""

import json
import os
import re
import zipfile

import numpy as np
from PIL import Image

from .atomic import atomic_write

SNAPSHOT_FMT = "network-snapshot-{:06d}.pkl"
STATE_FMT = "training-state-{:06d}.npz"
GRID_FMT = "fakes{:06d}.png"
_STATE_NAME = re.compile(r"training-state-[0-9]{6,}\.npz")


def snapshot_name(nimg: int) -> str:
    """``network-snapshot-<kimg:06d>.pkl`` for an image counter (kimg rounded down, as NVIDIA)."""
    return SNAPSHOT_FMT.format(int(nimg) // 1000)


def save_state(path: str, arrays: dict, meta: dict):
    """Write numpy ``arrays`` plus a JSON ``meta`` dict to ``path`` (.npz), atomically.

    Raises StyleGANTLError naming ``path`` when it cannot be written (e.g. disk full); nothing is
    left behind then.
    """
    with atomic_write(path) as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)


def load_state(path: str):
    """Inverse of :func:`save_state`: returns (arrays dict, meta dict)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "__meta__"}
        meta = json.loads(str(f["__meta__"]))
    return arrays, meta


def _state_files(run_dir: str) -> list:
    """Paths of the ``training-state-<kimg>.npz`` files in ``run_dir`` (that exact form only)."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    return [os.path.join(run_dir, n) for n in sorted(names) if _STATE_NAME.fullmatch(n)]


def latest_state(run_dir: str):
    """The newest ``training-state-<kimg>.npz`` in ``run_dir`` whose snapshot pickle exists.

    Unreadable state files (truncated, not a zip, bad meta) are skipped. Returns (state path,
    snapshot pkl path, meta) or None.
    """
    best = None
    for path in _state_files(run_dir):
        try:
            _, meta = load_state(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue  # unreadable: ignore, an older snapshot may still do
        if not (isinstance(meta, dict) and isinstance(meta.get("snapshot"), str)
                and isinstance(meta.get("nimg"), (int, float)) and not isinstance(meta["nimg"], bool)):
            continue
        pkl = os.path.join(run_dir, os.path.basename(meta["snapshot"]))
        if os.path.isfile(pkl) and (best is None or meta["nimg"] > best[2]["nimg"]):
            best = (path, pkl, meta)
    return best


def state_for_pickle(pkl_path: str):
    """The training state saved beside ``pkl_path`` for exactly that snapshot, or None."""
    found = latest_state(os.path.dirname(os.path.abspath(pkl_path)))
    if found and os.path.samefile(found[1], pkl_path):
        return found
    return None


def remove_older_states(run_dir: str, keep: str):
    """Delete the run's other ``training-state-<kimg>.npz`` files (they are superseded by ``keep``)."""
    for path in _state_files(run_dir):
        if os.path.abspath(path) != os.path.abspath(keep):
            os.remove(path)


def grid_shape(num_images: int, resolution: int):
    """(columns, rows) of the snapshot grid: about 1920x1080 px, between 4x2 and 16x8 tiles."""
    cols = int(np.clip(1920 // resolution, 4, 16))
    rows = int(np.clip(1080 // resolution, 2, 8))
    return cols, min(rows, max(1, num_images // cols))


def write_grid(path: str, images_uint8: np.ndarray, cols: int):
    """Tile uint8 NCHW images ``[N, C, H, W]`` into a PNG with ``cols`` columns, atomically."""
    n, c, h, w = images_uint8.shape
    rows = -(-n // cols)
    canvas = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, img in enumerate(images_uint8):
        r, k = divmod(i, cols)
        canvas[r * h:(r + 1) * h, k * w:(k + 1) * w] = img.transpose(1, 2, 0)
    with atomic_write(path) as f:
        Image.fromarray(canvas[..., 0] if c == 1 else canvas).save(f, format="PNG")
    return canvas


# ----------------------------------------------------------------------------------------------
# TensorBoard events, written with core TF (the ``tensorboard`` package is only needed to view them).


def _plugin_metadata(plugin: str):
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin
    return meta


def summary_scalar(tag: str, value: float, step: int):
    """A TensorBoard scalar on the default summary writer."""
    import tensorflow as tf

    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=_plugin_metadata("scalars"))


def summary_image(tag: str, image_hwc: np.ndarray, step: int):
    """A TensorBoard image (uint8 HWC, 1 or 3 channels) on the default summary writer."""
    import tensorflow as tf

    png = tf.io.encode_png(image_hwc if image_hwc.ndim == 3 else image_hwc[..., None])
    h, w = image_hwc.shape[:2]
    tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h)), png])
    tf.summary.write(tag, tensor, step=step, metadata=_plugin_metadata("images"))
