"""Files of a training run: snapshot names, the training-state file, image grids (all atomic).

A run directory holds, per snapshot, ``network-snapshot-<kimg:06d>.pkl`` (G, D, Gs in NVIDIA's
format) and ``fakes<kimg:06d>.png`` (a grid of fixed seeds), plus one ``training-state-<kimg:06d>.npz``
beside the newest snapshot: optimizer slots, ``pl_mean``, the ADA state, the image counter and the
step counter, keyed by variable name, with a JSON ``meta`` entry naming its snapshot. Only the newest
state file is kept (they are as large as the optimizer). :func:`latest_state` finds where to
continue after an interruption. Files are written atomically (hidden temp names, see
:mod:`superres_tf.files`), and only names of exactly these forms are read or removed. TensorBoard
events go through :func:`superres_tf.files.write_scalar` / ``write_image``.
"""

import os
import re
import zipfile

import numpy as np
from superres_tf import files
from superres_tf.images import image_grid

from .atomic import write_image
from .errors import StyleGANTLError

SNAPSHOT_FMT = "network-snapshot-{:06d}.pkl"
STATE_FMT = "training-state-{:06d}.npz"
GRID_FMT = "fakes{:06d}.png"
_STATE_NAME = re.compile(r"training-state-[0-9]{6,}\.npz")


def snapshot_name(nimg: int) -> str:
    """``network-snapshot-<kimg:06d>.pkl`` for an image counter (kimg rounded down, as NVIDIA)."""
    return SNAPSHOT_FMT.format(int(nimg) // 1000)


def save_state(path: str, arrays: dict, meta: dict):
    """Write numpy ``arrays`` plus a JSON ``meta`` dict to ``path`` (.npz), atomically
    (:func:`superres_tf.files.save_arrays`).

    Raises StyleGANTLError naming ``path`` when it cannot be written (e.g. disk full); nothing is
    left behind then.
    """
    files.save_arrays(path, arrays, StyleGANTLError, meta)


def load_state(path: str):
    """Inverse of :func:`save_state`: returns (arrays dict, meta dict); KeyError without meta."""
    arrays, meta = files.load_arrays(path)
    if meta is None:
        raise KeyError(f"{path}: no meta entry")
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
    """Tile uint8 NCHW images ``[N, C, H, W]`` into a PNG with ``cols`` columns
    (:func:`superres_tf.images.image_grid`), written atomically (:func:`.atomic.write_image`);
    returns the grid (uint8 HWC)."""
    grid = image_grid(images_uint8.transpose(0, 2, 3, 1), cols)
    write_image(path, grid)
    return grid
