"""Hostile pickles: the safe reader executes nothing and names what it refused.

Every corpus entry is first loaded with plain ``pickle.loads`` to prove it really runs its payload
(a marker file appears), then with ``read_network_pkl``, which must refuse it and leave no trace.
"""

import contextlib
import copyreg
import os
import pickle
import random
import struct
import subprocess
import sys
import types

import numpy as np
import pytest
from numpy.testing._private.utils import runstring

from conftest import FIXTURES
from stylegan_tl import pickle_io
from stylegan_tl.errors import NetworkPickleError
from stylegan_tl.pickle_io import read_network_pkl

try:
    from numpy._core import multiarray as np_multiarray
except ImportError:
    from numpy.core import multiarray as np_multiarray


class Net:
    """Pickles like ``dnnlib.tflib.network.Network`` (NEWOBJ + BUILD with a state dict) under dumps_nvidia."""

    def __init__(self, **state):
        self.state = state

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (Net,), self.state


Net.__module__, Net.__qualname__ = "dnnlib.tflib.network", "Network"


@contextlib.contextmanager
def fake_dnnlib():
    """Make ``dnnlib.tflib.network.Network`` importable (as ``Net``) for the duration."""
    modules = {name: types.ModuleType(name) for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    modules["dnnlib.tflib.network"].Network = Net
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def dumps_nvidia(obj, protocol=4) -> bytes:
    """``pickle.dumps`` where ``Net`` objects become ``dnnlib.tflib.network.Network`` objects."""
    with fake_dnnlib():
        return pickle.dumps(obj, protocol)


def net(**changes) -> Net:
    """A small valid version-4 D network state, with ``changes`` applied."""
    state = dict(version=4, name="D", static_kwargs={"resolution": 4}, components={},
                 build_module_src="# src\n", build_func_name="D_stylegan2",
                 variables=[("Output/weight", np.ones((2, 1), np.float32))])
    state.update(changes)
    return Net(**state)


class Call:
    """Pickles as ``func(*args)`` (a REDUCE opcode), as a hostile file would."""

    def __init__(self, func, *args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _touch_cmd(marker):
    return f"touch {marker}"


def _open_code(marker):
    return f"open({str(marker)!r}, 'w').close()"


# name -> (builder(marker) -> pickle bytes, text the error must contain)
CORPUS = {
    "os.system GLOBAL protocol 0": (
        lambda m: f"cos\nsystem\n(V{_touch_cmd(m)}\ntR.".encode(), "os.system"),
    "posix.system GLOBAL": (lambda m: pickle.dumps(Call(os.system, _touch_cmd(m)), 3), "posix.system"),
    "posix.system STACK_GLOBAL": (lambda m: pickle.dumps(Call(os.system, _touch_cmd(m)), 4), "posix.system"),
    "builtins.eval GLOBAL": (lambda m: pickle.dumps(Call(eval, _open_code(m)), 3), "builtins.eval"),
    "builtins.eval STACK_GLOBAL": (lambda m: pickle.dumps(Call(eval, _open_code(m)), 4), "builtins.eval"),
    "builtins.exec GLOBAL": (lambda m: pickle.dumps(Call(exec, _open_code(m)), 3), "builtins.exec"),
    "builtins.exec STACK_GLOBAL": (lambda m: pickle.dumps(Call(exec, _open_code(m)), 4), "builtins.exec"),
    "subprocess.Popen": (lambda m: pickle.dumps(Call(subprocess.Popen, ["touch", str(m)]), 4), "subprocess.Popen"),
    "numpy.testing runstring": (
        lambda m: pickle.dumps(Call(runstring, _open_code(m), {}), 4), "numpy.testing._private.utils.runstring"),
    "payload in a Network's variables": (
        lambda m: dumps_nvidia((net(), net(variables=[("w", Call(os.system, _touch_cmd(m)))]), net())),
        "posix.system"),
    "payload in static_kwargs of a component": (
        lambda m: dumps_nvidia(net(components={"mapping": net(static_kwargs={"x": Call(eval, _open_code(m))})})),
        "builtins.eval"),
    "payload inside an object array variable": (
        lambda m: dumps_nvidia(net(variables=[("w", np.array([Call(os.system, _touch_cmd(m))], dtype=object))])),
        "refused numpy dtype 'O8'"),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_pickle_runs_nothing(tmp_path, case):
    build, expected = CORPUS[case]
    marker = tmp_path / "pwned"
    data = build(marker)
    with fake_dnnlib():
        result = pickle.loads(data)  # the unsafe way: proves the payload is live
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert marker.exists(), "corpus entry did not run its payload under plain pickle"
    marker.unlink()

    path = tmp_path / "hostile.pkl"
    path.write_bytes(data)
    with pytest.raises(NetworkPickleError) as err:
        read_network_pkl(path)
    assert expected in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_ext_opcodes_are_refused_even_when_the_extension_cache_holds_the_object(tmp_path):
    # After one ordinary load of an EXT opcode, the unpickler serves the registered object from
    # copyreg's cache without calling find_class: the reader refuses EXT opcodes outright.
    marker = tmp_path / "pwned"
    code = 0xF1
    copyreg.add_extension("posix", "system", code)
    try:
        data = pickle.dumps(Call(os.system, _touch_cmd(marker)), 2)
        assert pickle.EXT1 + bytes([code]) in data
        assert pickle.loads(pickle.EXT1 + bytes([code]) + b".") is os.system  # fills the cache
        path = tmp_path / "ext.pkl"
        path.write_bytes(data)
        with pytest.raises(NetworkPickleError, match="refused EXT1 opcode") as err:
            read_network_pkl(path)
        assert str(err.value).startswith(str(path))
    finally:
        copyreg.remove_extension("posix", "system", code)
    assert not marker.exists()


def test_build_module_src_is_kept_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    src = f"import os\nos.system({_touch_cmd(marker)!r})\n"
    path = tmp_path / "src.pkl"
    path.write_bytes(dumps_nvidia((net(build_module_src=src), net(build_module_src=src), net())))
    G, D, Gs = read_network_pkl(path)
    assert G.build_module_src == src and D.build_module_src == src
    assert not marker.exists()
    exec(compile(src, "src", "exec"), {})  # what NVIDIA's Network.__setstate__ would do
    assert marker.exists()


@pytest.mark.parametrize("value, expected", [
    (np.array([1, 2], dtype=object), "refused numpy dtype 'O8'"),
    (Call(np.dtype, "f4", False, True, state=(3, "<", None, ("a",), {"a": (np.dtype("f4"), 0)}, 4, 1, 0)),
     "refused numpy dtype state"),
    (Call(np_multiarray._reconstruct, np.ndarray, (0,), b"b",
          state=(1, (10 ** 12,), np.dtype("f4"), False, b"1234")), "refused array shape"),
    (Call(np_multiarray._reconstruct, np.ndarray, (0,), b"b",
          state=(1, (3,), np.dtype("f4"), False, b"1234")), "data bytes do not match"),
    (Call(np_multiarray._reconstruct, np.dtype, (0,), b"b"), "refused numpy _reconstruct arguments"),
    (Call(np_multiarray.scalar, np.dtype("f4"), b"12"), "data bytes do not match"),
    (Call(np.ndarray, (10 ** 12,)), "not callable"),
    (np.zeros(1, dtype=[("re", "f8"), ("im", "f8")]), "refused numpy dtype 'V16'"),
    ("a string", "not a numeric numpy array"),
])
def test_numpy_reconstruction_is_checked(tmp_path, value, expected):
    path = tmp_path / "numpy.pkl"
    path.write_bytes(dumps_nvidia(net(variables=[("w", value)])))
    with pytest.raises(NetworkPickleError, match=expected):
        read_network_pkl(path)


def test_build_cannot_modify_an_allowed_class(tmp_path):
    # Push the EasyDict class itself, then BUILD with a slot state: setattr(cls, 'injected', 1).
    data = b"\x80\x02cdnnlib.util\nEasyDict\nN}X\x08\x00\x00\x00injectedK\x01s\x86b."
    path = tmp_path / "build.pkl"
    path.write_bytes(data)
    with pytest.raises(NetworkPickleError, match="refused to modify the class EasyDict"):
        read_network_pkl(path)
    assert not hasattr(pickle_io._EasyDict, "injected")
    with open(path, "rb") as f:
        assert not hasattr(pickle_io._RestrictedUnpickler(f, pickle_io._ArrayBudget(0)).find_class("dnnlib.util", "EasyDict"), "injected")


def test_persistent_ids_are_refused(tmp_path):
    path = tmp_path / "persid.pkl"
    path.write_bytes(b"\x80\x02X\x03\x00\x00\x00abcQ.")
    with pytest.raises(NetworkPickleError, match="damaged pickle"):
        read_network_pkl(path)


def test_deep_nesting_is_an_error_not_a_crash(tmp_path):
    placeholder = "NESTED-PLACEHOLDER"
    data = dumps_nvidia(net(static_kwargs={"k": placeholder}), protocol=3)  # no frames
    depth = 50_000
    nested = b"]" * depth + b"a" * (depth - 1)
    data = data.replace(b"X" + struct.pack("<I", len(placeholder)) + placeholder.encode(), nested)
    path = tmp_path / "deep.pkl"
    path.write_bytes(data)
    with pytest.raises(NetworkPickleError, match="nested too deeply"):
        read_network_pkl(path)


def test_corrupted_bytes_give_only_network_pickle_errors(tmp_path):
    original = (FIXTURES / "C_v2_orig_orig_r16" / "network.pkl").read_bytes()
    rng = random.Random(0)
    path = tmp_path / "fuzz.pkl"
    outcomes = set()
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(20000)] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            read_network_pkl(path)
            outcomes.add("loaded")
        except NetworkPickleError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            outcomes.add("refused")
    assert "refused" in outcomes
