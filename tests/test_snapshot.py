"""Run-folder files: atomic writes that leave nothing behind on failure, and a resume that skips junk."""

import os
import subprocess
import sys

import numpy as np

from stylegan_tl import snapshot as snap_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_resume_skips_leftover_temp_and_damaged_state_files(tmp_path):
    (tmp_path / "network-snapshot-000004.pkl").write_bytes(b"pkl")
    good = tmp_path / "training-state-000004.npz"
    snap_files.save_state(str(good), {"w": np.ones(3, np.float32)}, {"nimg": 4000, "snapshot": "network-snapshot-000004.pkl"})
    # What an interrupted or disk-full write of an older version left behind, and a damaged file.
    (tmp_path / "training-state-000008.npz.tmp1234.npz").write_bytes(b"PK\x03\x04 half a zip")
    (tmp_path / "training-state-000012.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "training-state-000016.npz").write_bytes(b"")
    found = snap_files.latest_state(str(tmp_path))
    assert found is not None and found[0] == str(good) and found[2]["nimg"] == 4000
    snap_files.remove_older_states(str(tmp_path), keep=str(good))
    assert (tmp_path / "training-state-000008.npz.tmp1234.npz").exists()  # not ours by name: kept


def test_disk_full_leaves_no_partial_files(tmp_path):
    # RLIMIT_FSIZE makes writes beyond 64 kB fail with EFBIG, as a full disk fails them with ENOSPC.
    code = (
        "import resource, signal, sys, numpy as np\n"
        "from stylegan_tl import snapshot\nfrom stylegan_tl.errors import StyleGANTLError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "folder = sys.argv[1]\n"
        "for write in (lambda: snapshot.save_state(folder + '/training-state-000001.npz',\n"
        "                                          {'w': np.ones(100000, np.float32)}, {'nimg': 1000}),\n"
        "              lambda: snapshot.write_grid(folder + '/fakes000001.png',\n"
        "                                          np.random.RandomState(0).randint(0, 255, (8, 3, 128, 128)).astype(np.uint8), 4)):\n"
        "    try:\n        write()\n        print('written')\n"
        "    except StyleGANTLError as e:\n        print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stderr[-2000:]
    assert lines[0].startswith(f"{tmp_path}/training-state-000001.npz: cannot write (File too large")
    assert lines[1].startswith(f"{tmp_path}/fakes000001.png: cannot write (File too large")
    assert os.listdir(tmp_path) == []
    assert snap_files.latest_state(str(tmp_path)) is None
