"""Small hostile pickles must end in one ``error:`` line naming the file, in seconds, in bounded memory.

Each file is built here, on the fly, and read by ``read_network_pkl`` in a child process (a crash,
hang or memory blow-up there cannot take the test run with it). The child reports its message, the
time the read took and how much its peak RSS grew.
"""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from test_hostile_pickles import Call, dumps_nvidia, net

try:
    from numpy._core import multiarray as np_multiarray
except ImportError:
    from numpy.core import multiarray as np_multiarray

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHILD = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a safety net for the test machine
from stylegan_tl.errors import NetworkPickleError
from stylegan_tl.pickle_io import read_network_pkl
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.time()
try:
    read_network_pkl(sys.argv[1])
    message = 'loaded'
except NetworkPickleError as e:
    message = 'error: ' + str(e)
print(message)
print(time.time() - start)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def read_in_child(path, timeout=30):
    """(message, seconds, peak RSS growth in bytes) of ``read_network_pkl(path)`` in a fresh process."""
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], cwd=REPO, capture_output=True,
                              text=True, timeout=timeout,
                              env=dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {path} did not finish in {timeout} s")
    assert proc.returncode == 0, f"the reader crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    message, seconds, grown = proc.stdout.splitlines()
    return message, float(seconds), int(grown)


def dag(depth):
    """A list DAG: level i holds level i-1 twice (2**depth leaves, depth pickle memo references)."""
    node = []
    for _ in range(depth):
        node = [node, node]
    return node


def array_call(shape, data, dtype="f4"):
    """Pickles as numpy's ``_reconstruct`` + BUILD of an array (the shape and data are not checked)."""
    return Call(np_multiarray._reconstruct, np.ndarray, (0,), b"b",
                state=(1, shape, np.dtype(dtype), False, data))


def component_dag(depth):
    """Networks whose two components are the same network, ``depth`` levels deep."""
    node = net(name="leaf")
    for _ in range(depth):
        node = net(components={"mapping": node, "synthesis": node})
    return node


PLACEHOLDER = "RAW-OPCODES-GO-HERE"


def with_raw(network, opcodes: bytes) -> bytes:
    """A protocol-3 pickle of ``network`` with the string PLACEHOLDER replaced by raw ``opcodes``."""
    data = dumps_nvidia(network, protocol=3)  # protocol 3: no frames, so bytes can be spliced in
    return data.replace(b"X" + struct.pack("<I", len(PLACEHOLDER)) + PLACEHOLDER.encode(), opcodes)


# name -> (builder() -> pickle bytes, text the one-line error must contain)
CASES = {
    # 5: memo index 2**26 in a 9-byte pickle (the unpickler sizes its memo table to the index)
    "huge memo index": (lambda: b"\x80\x02Nr" + struct.pack("<I", 1 << 26) + b".", "memo index"),
    "huge memo index 2**31": (lambda: b"\x80\x02Nr" + struct.pack("<I", 1 << 31) + b".", "memo index"),
    # 6: a 300,000-deep tuple used as a dict key (hashing it overflows the C stack)
    "deep tuple dict key": (lambda: b"\x80\x02}" + b")" + b"\x85" * 300_000 + b"Ns.", "nested too deeply"),
    # 7: one 1 MB bytes object memo-referenced by 600 arrays
    "shared array data": (lambda: dumps_nvidia(net(variables=[
        (f"v{i}", array_call((1 << 18,), DATA_1MB)) for i in range(600)])), "array data"),
    # 8: a shared-reference DAG in static_kwargs and in components
    "static_kwargs DAG": (lambda: dumps_nvidia(net(static_kwargs={"x": dag(60)})), "shared references"),
    "components DAG": (lambda: dumps_nvidia(component_dag(20)), "appears twice"),
    # 9: a huge-int shape (math.prod over huge ints takes minutes)
    "huge-int shape": (lambda: dumps_nvidia(net(variables=[
        ("w", array_call((1 << 16_000,) * 1500 + (0,), b""))])), "refused array shape"),
    # 14: values whose repr raises or recurses
    "5000-digit version": (lambda: dumps_nvidia(net(version=10 ** 5000)), "unknown network pickle version"),
    "big-int dict key": (lambda: dumps_nvidia(net(static_kwargs={"a": {10 ** 5000: 1}})), "static_kwargs"),
    "deep tuple key of a dict": (lambda: b"\x80\x02}" + b")" + b"\x85" * 5000 + b"Ns.", "nested too deeply"),
    # 14: BUILD on the EasyDict class (sets __iter__), then an instance of it as static_kwargs
    "EasyDict class rebuilt": (lambda: with_raw(net(static_kwargs=PLACEHOLDER), b"cdnnlib.util\nEasyDict\n"
                                                b"N}X\x08\x00\x00\x00__iter__K\x01s\x86b)R"), "EasyDict"),
}
DATA_1MB = bytes(1 << 20)


@pytest.mark.parametrize("case", sorted(CASES))
def test_small_hostile_pickle_is_refused_quickly_in_bounded_memory(tmp_path, case):
    build, expected = CASES[case]
    path = tmp_path / "hostile.pkl"
    path.write_bytes(build())
    message, seconds, grown = read_in_child(path)
    assert message.startswith(f"error: {path}") and expected in message, message
    assert "\n" not in message and len(message) < 1000
    assert seconds < 5, f"{seconds:.1f} s"
    assert grown < 64 * (1 << 20) + 4 * path.stat().st_size, f"peak RSS grew by {grown / 2**20:.0f} MB"


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_only_regular_files_are_read(tmp_path, kind):
    from stylegan_tl.errors import NetworkPickleError
    from stylegan_tl.pickle_io import read_network_pkl
    from stylegan_tl.pretrained import resolve_network_pkl
    path = tmp_path / "net.pkl"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    else:
        path = "/dev/zero"  # reading it never ends
    for read in (read_network_pkl, resolve_network_pkl):
        with pytest.raises(NetworkPickleError, match=f"^{path}: not a regular file$"):
            read(path)
