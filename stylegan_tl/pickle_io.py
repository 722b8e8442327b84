"""Read and write NVIDIA's TF StyleGAN network pickles without TensorFlow and without executing them.

NVIDIA pickles (StyleGAN v1, StyleGAN2, StyleGAN2-ADA TF) hold a tuple ``(G, D, Gs)`` of
``dnnlib.tflib.network.Network`` objects whose pickled state is a plain dict (version, name,
static_kwargs, components, build_module_src, build_func_name, variables, and for ADA input/output
shapes and names). :func:`read_network_pkl` turns each into a :class:`NetworkState`;
:func:`write_network_pkl` writes states back in NVIDIA's layout. This module imports no TensorFlow.

Security model
--------------
Unpickling runs whatever callables a pickle names, so an ordinary ``pickle.load`` of a downloaded
file is arbitrary code execution (and NVIDIA's own ``Network.__setstate__`` ``exec``s the embedded
``build_module_src``). Our reader:

* resolves globals through an allow-list and nothing else: ``dnnlib.tflib.network.Network``,
  ``dnnlib.util.EasyDict`` / ``dnnlib.EasyDict``, and numpy's ``_reconstruct``, ``scalar``,
  ``ndarray``, ``dtype`` (plus ``_frombuffer``, numpy's protocol-5 array form) under both
  ``numpy.core`` and ``numpy._core``. Any other global -- including one reached through an EXT
  opcode or nested deep inside ``variables`` -- is refused before anything is called, with an error
  naming it. Persistent ids are refused by the standard unpickler.
* never hands numpy the pickle's data directly: the allowed names map to small stand-ins that accept
  only plain numeric dtypes (bool, int, uint, float, complex; no object, structured or sub-array
  dtypes), check every array's byte count against its shape, and build the array themselves with
  ``np.frombuffer``. So a hostile REDUCE or BUILD on an allowed name can neither create an
  object array nor make numpy read memory it does not own.
* creates the stand-ins afresh for every load, so a BUILD opcode aimed at one of them cannot
  change a later load.
* keeps ``build_module_src`` as an inert string: nothing here ever executes it.
* validates the resulting state (types of every key, version in 2..5, variables as unique
  ``(str, numeric array)`` pairs, static kwargs made of plain data) and reports any problem as a
  one-line :class:`NetworkPickleError` naming the file.

Resource limits (a small hostile file must not cost much time or memory): only regular files are
read; the opcode stream is scanned before anything is unpickled (:func:`_scan`), refusing EXT
opcodes (the copyreg registry can hand out cached objects without ``find_class``), memo indices out
of sequence (the unpickler sizes its memo table to the largest index) and nesting deeper than
``_MAX_DEPTH`` (hashing a deeply nested tuple overflows the C stack). The arrays of one file may
hold at most as many bytes as the file (one bytes object shared by many arrays is refused), every
dimension is bounded before the shape is multiplied out, the stand-in classes cannot be modified
by BUILD, and validation visits shared values once and refuses values whose shared references
expand to more than ``_MAX_PLAIN_ITEMS`` items or refer to themselves.

Writing uses a pickler that can emit exactly five globals (the Network class path and numpy's
``_reconstruct``, ``ndarray``, ``dtype``, ``scalar`` under their numpy-1.x names, as NVIDIA's files
do), so anything else in a state fails to write instead of producing a file NVIDIA's loaders would
choke on.
"""

import collections
import copyreg
import dataclasses
import io
import itertools
import math
import os
import pickle
import pickletools
import re
import reprlib
import stat
import sys
import types
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .atomic import atomic_write
from .errors import NetworkPickleError

try:  # numpy >= 2: the real home of the reconstruction helpers (numpy.core.* warns when touched).
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray

SUPPORTED_VERSIONS = (2, 3, 4, 5)
_REQUIRED_KEYS = ("version", "name", "static_kwargs", "build_module_src", "build_func_name", "variables")
# NVIDIA's Network.__getstate__ key order; version 5 (ADA) appends _ADA_IO_KEYS.
_STATE_KEYS = ("version", "name", "static_kwargs", "components", "build_module_src", "build_func_name", "variables")
_ADA_IO_KEYS = ("input_shapes", "output_shapes", "input_names", "output_names")
_NUMERIC_KINDS = "biufc"
_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"
_MAX_DEPTH = 100            # nesting levels of the pickled structure (NVIDIA's files: about 12)
_MAX_NDIM = 32              # dimensions of one array
_MAX_PLAIN_ITEMS = 100_000  # items of one static_kwargs / extra value with shared references expanded


@dataclasses.dataclass
class NetworkState:
    """The pickled state of one NVIDIA ``Network``.

    Attributes:
        name: network name, e.g. ``'G'``, ``'Gs'``, ``'G_synthesis'``.
        version: state version (3 StyleGAN v1, 4 StyleGAN2, 5 StyleGAN2-ADA TF).
        build_func_name: e.g. ``'G_style'``, ``'G_main'``, ``'D_stylegan2'``.
        static_kwargs: constructor kwargs as a plain dict.
        variables: local name -> numpy array, in TF creation order; scalars are 0-d arrays.
        components: sub-network states (``'mapping'``, ``'synthesis'``) for generators.
        build_module_src: the embedded Python source, kept verbatim and never executed.
        extra: any other state keys, kept verbatim (ADA's input/output shapes and names).
    """

    name: str
    version: int
    build_func_name: str
    static_kwargs: Dict[str, Any]
    variables: "collections.OrderedDict[str, np.ndarray]"
    components: Dict[str, "NetworkState"] = dataclasses.field(default_factory=dict)
    build_module_src: str = ""
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Reading: stand-ins for the allowed globals.


class _NetworkStub:
    """Stand-in for ``dnnlib.tflib.network.Network``: keeps the pickled state, runs nothing."""

    def __setstate__(self, state):
        self.state = state


class _EasyDict(dict):
    """Stand-in for ``dnnlib.EasyDict`` (a dict subclass); converted to a plain dict on load."""


class _PendingDType:
    """Stand-in for ``numpy.dtype(spec, align, copy)``: only plain numeric dtypes, byte order from BUILD."""

    __slots__ = ("dtype",)

    def __init__(self, spec, align=False, copy=True):
        del align, copy  # numpy's own arguments; irrelevant for the numeric dtypes we accept
        if not isinstance(spec, str) or not re.fullmatch(f"[{_NUMERIC_KINDS}][0-9]+", spec):
            raise NetworkPickleError(f"refused numpy dtype {spec!r} (only plain numeric dtypes are allowed)")
        try:
            self.dtype = np.dtype(spec)
        except TypeError:
            raise NetworkPickleError(f"refused numpy dtype {spec!r}") from None

    def __setstate__(self, state):
        """numpy's dtype state is ``(3 or 4, byteorder, None, None, None, elsize, alignment, flags[, None])``."""
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                and state[8:] in ((), (None,))):
            raise NetworkPickleError(f"refused numpy dtype state {_short(state)}")
        if state[1] in "<>" and state[1] != _NATIVE_ORDER:
            self.dtype = self.dtype.newbyteorder(state[1])


def _real_dtype(dtype) -> np.dtype:
    if not isinstance(dtype, _PendingDType):
        raise NetworkPickleError(f"expected a numpy dtype, got {_short(dtype)}")
    return dtype.dtype


def _as_bytes(data):
    if isinstance(data, str):  # Python 2 pickles, read with encoding='latin1' like NVIDIA does
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise NetworkPickleError(f"numpy data: expected raw bytes, got {type(data).__name__}")
    return data


class _ArrayBudget:
    """The array bytes one file may still produce: every array's data comes from the file, so all
    arrays together hold at most the file's size (a bytes object shared by many arrays is refused)."""

    __slots__ = ("file_size", "left")

    def __init__(self, file_size: int):
        self.file_size = self.left = file_size

    def take(self, nbytes: int):
        if nbytes > self.left:
            raise NetworkPickleError(f"array data of {nbytes} bytes exceeds what the file can hold "
                                     f"({self.left} bytes left; shared array data?)")
        self.left -= nbytes


def _array_from_bytes(data, dtype, shape, fortran, budget: _ArrayBudget) -> np.ndarray:
    """Build an array from its raw bytes after checking the byte count against dtype and shape."""
    dtype = _real_dtype(dtype)
    if not (isinstance(shape, tuple) and len(shape) <= _MAX_NDIM
            and all(type(n) is int and 0 <= n <= budget.file_size for n in shape)):
        raise NetworkPickleError(f"refused array shape {_short(shape)}")
    data = _as_bytes(data)
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise NetworkPickleError(f"array of shape {list(shape)} {dtype}: {len(data)} data bytes do not match")
    budget.take(len(data))
    order = "F" if fortran else "C"
    return np.frombuffer(data, dtype).reshape(shape, order=order).copy(order="K")


class _PendingArray:
    """What ``_reconstruct(ndarray, (0,), b'b')`` gives; BUILD supplies ``(1, shape, dtype, fortran, bytes)``."""

    __slots__ = ("array", "budget")

    def __init__(self, budget: _ArrayBudget):
        self.array, self.budget = None, budget

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if self.array is not None or not (isinstance(state, tuple) and len(state) == 4):
            raise NetworkPickleError(f"refused numpy array state {_short(state)}")
        shape, dtype, fortran, data = state
        self.array = _array_from_bytes(data, dtype, shape, bool(fortran), self.budget)


class _Sealed(type):
    """Metaclass of the stand-in classes: a pickle's BUILD on the class itself cannot change it."""

    def __setattr__(cls, name, value):
        raise NetworkPickleError(f"refused to modify the class {cls.__name__} (set {_short(name, 40)})")


def _allowed_globals(budget: _ArrayBudget) -> Dict[Tuple[str, str], Any]:
    """The allow-list, as fresh objects for one load (see the module docstring)."""
    ndarray = object()  # only ever passed to _reconstruct; not callable

    def reconstruct(subtype, shape, typecode):
        if subtype is not ndarray or shape != (0,):
            raise NetworkPickleError(f"refused numpy _reconstruct arguments {_short((subtype, shape, typecode))}")
        return _PendingArray(budget)

    def scalar(dtype, data):
        return _array_from_bytes(data, dtype, (), False, budget)[()]

    def frombuffer(buffer, dtype, shape, order):
        return _array_from_bytes(buffer, dtype, shape, order == "F", budget)

    def dtype(spec, align=False, copy=True):
        return _PendingDType(spec, align, copy)

    easydict = _Sealed("EasyDict", (_EasyDict,), {})
    allowed = {
        ("dnnlib.tflib.network", "Network"): _Sealed("Network", (_NetworkStub,), {}),
        ("dnnlib.util", "EasyDict"): easydict,
        ("dnnlib", "EasyDict"): easydict,
        ("numpy", "ndarray"): ndarray,
        ("numpy", "dtype"): dtype,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals; arrays share one :class:`_ArrayBudget`."""

    def __init__(self, file, budget: _ArrayBudget):
        super().__init__(file, encoding="latin1")
        self._allowed = _allowed_globals(budget)

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module.split(".")[0] in ("torch", "torch_utils"):
            raise NetworkPickleError(
                f"refused global {module}.{name}: this is a PyTorch stylegan2-ada-pytorch pickle, not a TF one")
        raise NetworkPickleError(
            f"refused global {module}.{name} (not part of a StyleGAN TF network pickle; nothing was executed)")


class _ShortRepr(reprlib.Repr):
    """reprlib with huge integers shown by size (``repr`` refuses ints of more than 4300 digits)."""

    def repr_int(self, x, level):
        return repr(x) if x.bit_length() <= 64 else f"<{x.bit_length()}-bit integer>"


_SHORT_REPR = _ShortRepr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 3, 200, 200


def _short(obj, limit=80) -> str:
    """A one-line, bounded repr for error messages (bounded work for deep, shared or huge values)."""
    try:
        text = obj[:4 * limit] if isinstance(obj, str) else _SHORT_REPR.repr(obj)
    except Exception:  # noqa: BLE001 - a hostile object's repr may fail in any way
        text = f"<a {type(obj).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# Reading: load, then validate and convert.


_MEMO_STORES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_LOADS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_IN_PLACE = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})


def _scan(reader, size: int):
    """Check a pickle's opcode stream (``reader``, a file of ``size`` bytes) before it is unpickled.

    Simulates the unpickler's stack with the nesting depth of each value (exact for tuples and
    frozensets, the only hashable containers). Raises NetworkPickleError for an EXT opcode, a frame
    longer than the file, a memo index beyond the next free one (CPython's pickler numbers them 0, 1,
    2, ...) and nesting deeper than ``_MAX_DEPTH``; ValueError (or IndexError) for a malformed stream.
    """
    stack, marks, memo = [], [], bytearray()  # memo: index -> depth + 1 (0: never stored)
    for op, arg, pos in pickletools.genops(reader):
        name = op.name
        if name == "FRAME" and arg > size - pos:
            raise NetworkPickleError(f"damaged or hostile pickle (a frame of {arg} bytes at offset {pos})")
        if name.startswith("EXT"):
            raise NetworkPickleError(f"refused {name} opcode (an object of the copyreg extension registry; "
                                     "nothing was executed)")
        if name in _MEMO_STORES:
            index = len(memo) if name == "MEMOIZE" else arg
            if index > len(memo):
                raise NetworkPickleError(f"damaged or hostile pickle (memo index {_short(index)} out of sequence)")
            memo[index:index + 1] = bytes([stack[-1] + 1])
        elif name in _MEMO_LOADS:
            if arg >= len(memo) or not memo[arg]:
                raise ValueError(f"memo index {arg} read before it was stored")
            stack.append(memo[arg] - 1)
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "POP" and marks and marks[-1] == len(stack):
            marks.pop()
        elif name == "DUP":
            stack.append(stack[-1])
        else:
            before = op.stack_before
            if pickletools.markobject in before:
                start = marks.pop() - before.index(pickletools.markobject)
            else:
                start = len(stack) - len(before)
            if start < 0:
                raise ValueError("stack underflow")
            popped = stack[start:]
            del stack[start:]
            depth = (max(popped[0], 1 + max(popped[1:], default=0)) if name in _IN_PLACE
                     else 1 + max(popped, default=-1))
            if depth > _MAX_DEPTH:
                raise NetworkPickleError(f"damaged or hostile pickle (nested too deeply: more than "
                                         f"{_MAX_DEPTH} levels)")
            stack.extend([depth] * len(op.stack_after))


class _ClampedReader:
    """Reads of a file clamped to the bytes left in it, so a hostile length cannot allocate more."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def read(self, n=-1):
        left = self.size - self.f.tell()
        return self.f.read(left if n is None or n < 0 else min(n, left))

    def readline(self):
        return self.f.readline()

    def tell(self):
        return self.f.tell()


def _open_regular_file(path: str):
    """``(binary file, size)`` of ``path``; folders, FIFOs and devices are refused without reading."""
    try:
        f = open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK))
    except FileNotFoundError:
        raise NetworkPickleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NetworkPickleError(f"{path}: is a directory, not a network pickle") from None
    except OSError as e:
        raise NetworkPickleError(f"{path}: cannot read ({e.strerror or e})") from None
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise NetworkPickleError(f"{path}: not a regular file")
    return f, st.st_size


def _load(path: str):
    f, size = _open_regular_file(path)
    with f:
        head = f.read(4)
        if not head:
            raise NetworkPickleError(f"{path}: empty file")
        if head == b"PK\x03\x04":
            raise NetworkPickleError(
                f"{path}: a zip archive (a PyTorch torch.save checkpoint?), not a TF network pickle")
        try:
            f.seek(0)
            _scan(_ClampedReader(f, size), size)
            f.seek(0)
            return _RestrictedUnpickler(f, _ArrayBudget(size)).load()
        except NetworkPickleError as e:
            raise NetworkPickleError(f"{path}: {e}") from None
        except (RecursionError, MemoryError) as e:
            raise NetworkPickleError(f"{path}: damaged or hostile pickle ({type(e).__name__})") from None
        except Exception as e:  # any other failure of the scan or the unpickler: a malformed stream
            if not head.startswith(b"\x80"):  # protocol >= 2 pickles start with PROTO
                raise NetworkPickleError(f"{path}: not a pickle file (it starts with {head!r})") from None
            text = str(e)
            if isinstance(e, EOFError) or any(w in text for w in ("truncated", "but only", "exhausted")):
                raise NetworkPickleError(f"{path}: truncated pickle (the data ends early)") from None
            raise NetworkPickleError(f"{path}: damaged pickle ({type(e).__name__}: {_short(text)})") from None


_SCALARS = (bool, int, float, complex, str, bytes)


class _PlainData:
    """Checks that values are plain data and converts them: EasyDicts become dicts, arrays are built.

    Each shared object is converted once (memoised by id), a value that contains itself is refused,
    and so is one whose shared references expand to more than ``_MAX_PLAIN_ITEMS`` items, so that
    later traversals of the result (repr, kwargs checks) stay cheap.
    """

    def __init__(self):
        self._seen = {}  # id(container) -> (converted, expanded item count); None while converting

    def convert(self, value, where: str):
        """``value`` converted; raises NetworkPickleError naming ``where``."""
        return self._convert(value, where)[0]

    def _convert(self, value, where):
        if isinstance(value, int) and value.bit_length() > 64:
            raise NetworkPickleError(f"{where}: unexpected {value.bit_length()}-bit integer")
        if value is None or isinstance(value, _SCALARS):
            return value, 1
        if isinstance(value, _PendingArray):
            value = value.array
        if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in _NUMERIC_KINDS:
            return value, 1
        if not (type(value) in (list, tuple) or isinstance(value, dict)):
            raise NetworkPickleError(f"{where}: unexpected {type(value).__name__} value {_short(value)}")
        key = id(value)
        if key in self._seen:
            if self._seen[key] is None:
                raise NetworkPickleError(f"{where}: a value that contains itself")
            return self._seen[key]
        self._seen[key] = None
        size, items = 1, []
        pairs = dict.items(value) if isinstance(value, dict) else enumerate(value)
        for k, v in pairs:
            if isinstance(value, dict):
                self._convert(k, f"{where} (a dict key)")
                if isinstance(k, (list, tuple, dict)):
                    raise NetworkPickleError(f"{where}: unexpected dict key {_short(k)}")
            converted, count = self._convert(v, f"{where}.{_short(k, 40)}" if isinstance(value, dict)
                                             else f"{where}[{k}]")
            items.append((k, converted))
            size += count
            if size > _MAX_PLAIN_ITEMS:
                raise NetworkPickleError(f"{where}: more than {_MAX_PLAIN_ITEMS} items once shared "
                                         "references are expanded")
        result = dict(items) if isinstance(value, dict) else type(value)(v for _, v in items)
        self._seen[key] = (result, size)
        return result, size


def _variables(raw, where: str) -> "collections.OrderedDict[str, np.ndarray]":
    if not isinstance(raw, (list, tuple)):
        raise NetworkPickleError(f"{where}: 'variables' is a {type(raw).__name__}, expected a list")
    out = collections.OrderedDict()
    for i, pair in enumerate(raw):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise NetworkPickleError(f"{where}: variables[{i}] is not a (name, array) pair")
        name, value = pair
        value = value.array if isinstance(value, _PendingArray) else value
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in _NUMERIC_KINDS:
            raise NetworkPickleError(f"{where}: variable {name!r} is {_short(value)}, not a numeric numpy array")
        if name in out:
            raise NetworkPickleError(f"{where}: variable {name!r} appears twice")
        value = np.asarray(value)
        out[name] = value if value.dtype.isnative else value.astype(value.dtype.newbyteorder("="))
    return out


class _StateReader:
    """Validates unpickled Network stand-ins and converts them to NetworkStates (one per file)."""

    def __init__(self):
        self.plain = _PlainData()
        self.networks = set()  # ids of the stand-ins converted so far: each may appear once

    def to_state(self, stub, where: str) -> NetworkState:
        """One Network stand-in (and, recursively, its components) as a NetworkState."""
        state = getattr(stub, "state", None) if isinstance(stub, _NetworkStub) else None
        if not isinstance(state, dict):
            raise NetworkPickleError(f"{where}: expected a dnnlib.tflib.network.Network with a state dict")
        if id(stub) in self.networks:
            raise NetworkPickleError(f"{where}: the same network appears twice (a shared reference)")
        self.networks.add(id(stub))
        state = dict(dict.items(state))
        version = state.get("version")
        if type(version) is not int or version not in SUPPORTED_VERSIONS:
            shown = _short(repr(version) if isinstance(version, str) else version)
            raise NetworkPickleError(f"{where}: unknown network pickle version {shown} "
                                     f"(known: {', '.join(map(str, SUPPORTED_VERSIONS))})")
        missing = [k for k in _REQUIRED_KEYS if k not in state]
        if missing:
            raise NetworkPickleError(f"{where}: network state lacks {', '.join(missing)}")
        for key in ("name", "build_func_name", "build_module_src"):
            if not isinstance(state[key], str):
                raise NetworkPickleError(f"{where}: '{key}' is a {type(state[key]).__name__}, expected a string")
        where = f"{where} ({_short(state['name'], 40)})"
        for key in ("static_kwargs", "components"):
            value = state.get(key, {})
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in dict.keys(value)):
                raise NetworkPickleError(f"{where}: '{key}' is not a dict with string keys")
        extra = {k: self.plain.convert(v, f"{where} {_short(k, 40)}") for k, v in state.items()
                 if k not in _STATE_KEYS}
        return NetworkState(
            name=state["name"],
            version=version,
            build_func_name=state["build_func_name"],
            static_kwargs=self.plain.convert(dict(dict.items(state["static_kwargs"])), f"{where} static_kwargs"),
            variables=_variables(state["variables"], where),
            components={k: self.to_state(v, f"{where} component {k!r}")
                        for k, v in dict.items(state.get("components", {}))},
            build_module_src=state["build_module_src"],
            extra=extra,
        )


def _is_discriminator(state: NetworkState) -> bool:
    return state.build_func_name.startswith("D")


def read_network_pkl(path) -> Tuple[Optional[NetworkState], Optional[NetworkState], Optional[NetworkState]]:
    """Read an NVIDIA TF network pickle safely (nothing in it is executed).

    Args:
        path: a local file.
    Returns:
        ``(G, D, Gs)`` NetworkStates. A pickle of a single network gives ``(None, None, state)``
        for a generator and ``(None, state, None)`` for a discriminator.
    Raises:
        NetworkPickleError: one line naming the file: missing, empty, truncated, not a pickle,
        a pickle of something else, a PyTorch pickle, an unknown version, a refused global.
    """
    path = os.fspath(path)
    obj = _load(path)
    reader = _StateReader()
    try:
        if isinstance(obj, _NetworkStub):
            state = reader.to_state(obj, path)
            return (None, state, None) if _is_discriminator(state) else (None, None, state)
        if isinstance(obj, (tuple, list)) and len(obj) == 3 and all(isinstance(o, _NetworkStub) for o in obj):
            return tuple(reader.to_state(o, f"{path}: {role}") for o, role in zip(obj, ("G", "D", "Gs")))
        if isinstance(obj, dict) and all(k in obj for k in ("G", "D", "G_ema")):
            raise NetworkPickleError(f"{path}: this is a PyTorch stylegan2-ada-pytorch pickle, not a TF one")
        raise NetworkPickleError(f"{path}: not a StyleGAN network pickle (it holds {_describe(obj)}; "
                                 "expected a (G, D, Gs) tuple of dnnlib.tflib.network.Network objects)")
    except RecursionError:
        raise NetworkPickleError(f"{path}: damaged or hostile pickle (nested too deeply)") from None


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = sorted(_short(k, 30) for k in itertools.islice(dict.keys(obj), 20))
        return f"a dict with keys {_short(keys, 60)}"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)} {_short(sorted({type(o).__name__ for o in obj}), 60)}"
    return f"a {type(obj).__name__}"


# --------------------------------------------------------------------------------------------
# Family detection and variable helpers.

_FAMILY_FUNCS = {
    "stylegan": {"G_style", "G_mapping", "G_synthesis", "D_basic"},
    "stylegan2": {"G_main", "G_mapping", "G_synthesis_stylegan2", "D_stylegan2"},
    "stylegan2-ada": {"G_main", "G_mapping", "G_synthesis", "D_main"},
}
_UNSUPPORTED_FUNCS = {"G_synthesis_stylegan_revised", "D_stylegan"}


def _build_funcs(state: NetworkState) -> set:
    funcs = {state.build_func_name}
    for comp in state.components.values():
        funcs |= _build_funcs(comp)
    return funcs


def detect_family(state: NetworkState) -> str:
    """``'stylegan'`` (v1), ``'stylegan2'`` or ``'stylegan2-ada'`` (TF) from build functions and version.

    StyleGAN2 config-a pickles hold v1 networks (``G_style``) with version 4: they are 'stylegan'.
    Raises NetworkPickleError for StyleGAN2 configs B-D and any other network.
    """
    funcs = _build_funcs(state)
    what = f"network {state.name!r} ({state.build_func_name}, pickle version {state.version})"
    if funcs & _UNSUPPORTED_FUNCS:
        raise NetworkPickleError(
            f"{what} uses {', '.join(sorted(funcs & _UNSUPPORTED_FUNCS))} (StyleGAN2 configs B-D), which is not "
            "supported; use a config-A, E or F network")
    if state.version == 5:
        family = "stylegan2-ada"
    elif funcs & {"G_style", "D_basic"} or funcs == {"G_synthesis"} or (funcs == {"G_mapping"} and state.version < 4):
        family = "stylegan"
    else:
        family = "stylegan2"
    if not funcs <= _FAMILY_FUNCS[family]:
        unknown = ", ".join(sorted(funcs - _FAMILY_FUNCS[family]))
        raise NetworkPickleError(f"{what}: unknown build function(s) {unknown}")
    return family


def is_trainable(local_name: str) -> bool:
    """NVIDIA's trainable flag from a variable's local name: noise inputs, ``lod`` and ``dlatent_avg`` are not."""
    return not (local_name in ("lod", "dlatent_avg") or re.fullmatch(r"noise[0-9]+", local_name))


def named_variables(state: NetworkState) -> "collections.OrderedDict[str, np.ndarray]":
    """NVIDIA full names -> arrays, like ``Network.vars``: own variables, then ``<component name>/<name>``."""
    out = collections.OrderedDict(state.variables)
    for comp in state.components.values():
        out.update((f"{comp.name}/{k}", v) for k, v in named_variables(comp).items())
    return out


# --------------------------------------------------------------------------------------------
# Writing.


class _NetworkOut:
    """Pickles as ``dnnlib.tflib.network.Network``: NEWOBJ with no arguments, then BUILD with the state."""

    __slots__ = ("state",)

    def __init__(self, state: dict):
        self.state = state

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (_NetworkOut,), self.state


def _nvidia_global(obj) -> Optional[Tuple[str, str]]:
    """The (module, name) NVIDIA's pickles use for ``obj``, or None if ``obj`` is not one of the five."""
    if obj is _NetworkOut:
        return "dnnlib.tflib.network", "Network"
    if any(obj is o for o in (np.ndarray, np.dtype, _np_multiarray._reconstruct, _np_multiarray.scalar)):
        # numpy-1.x module names, as in NVIDIA's files; numpy 2 still resolves them when loading.
        return obj.__module__.replace("numpy._core", "numpy.core"), obj.__name__
    return None


class _NvidiaPickler(pickle._Pickler):  # the Python pickler: save_global can be overridden
    """Writes only the five globals of NVIDIA's pickles (see :func:`_nvidia_global`)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_global(self, obj, name=None):
        found = _nvidia_global(obj)
        if found is None:
            raise NetworkPickleError(f"cannot write {_short(obj)}: NVIDIA network pickles hold only "
                                     "Networks, numpy arrays and plain data")
        module, name = found
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("utf-8"))
        self.memoize(obj)

    dispatch[types.FunctionType] = save_global


def _nvidia_value(name: str, value, where: str):
    """A variable as NVIDIA pickles it: an ndarray, or a numpy scalar for 0-d values (``lod``)."""
    value = value if isinstance(value, np.ndarray) else np.asarray(value)
    if value.dtype.kind not in _NUMERIC_KINDS:
        raise NetworkPickleError(f"{where}: variable {name!r} has dtype {value.dtype}, expected a numeric one")
    return value[()] if value.ndim == 0 else value


def _component_order(key: str):
    return ("synthesis", "mapping").index(key) if key in ("synthesis", "mapping") else 2


def _nvidia_state(state: NetworkState, where: str) -> _NetworkOut:
    """NetworkState -> the object NVIDIA's ``Network.__getstate__`` would have pickled."""
    if not isinstance(state, NetworkState):
        raise NetworkPickleError(f"{where}: expected a NetworkState, got {type(state).__name__}")
    if state.version not in SUPPORTED_VERSIONS:
        raise NetworkPickleError(f"{where}: unknown network pickle version {state.version!r}")
    where = f"{where} ({state.name})"
    out = {
        "version": state.version,
        "name": state.name,
        "static_kwargs": dict(state.static_kwargs),
        "components": {k: _nvidia_state(state.components[k], f"{where} component {k!r}")
                       for k in sorted(state.components, key=_component_order)},
        "build_module_src": state.build_module_src,
        "build_func_name": state.build_func_name,
        "variables": [(k, _nvidia_value(k, v, where)) for k, v in state.variables.items()],
    }
    out.update((k, state.extra[k]) for k in _ADA_IO_KEYS if k in state.extra)
    out.update((k, v) for k, v in state.extra.items() if k not in out)
    return _NetworkOut(out)


def write_network_pkl(path, G: Optional[NetworkState], D: Optional[NetworkState], Gs: Optional[NetworkState],
                      protocol: Optional[int] = None) -> str:
    """Write network states as an NVIDIA pickle, atomically (:func:`stylegan_tl.atomic.atomic_write`).

    Args:
        path: output file.
        G, D, Gs: NetworkStates. All three give NVIDIA's ``(G, D, Gs)`` tuple, which every NVIDIA
            tool reads. Exactly one (the others None) gives a single-network pickle, which
            :func:`read_network_pkl` reads back as ``(None, None, Gs)`` / ``(None, D, None)``.
        protocol: 3 or 4 (2 would need a ``_codecs.encode`` global for bytes). Default as NVIDIA:
            3 if any state is version 5 (ADA's ``pickle.dump`` default), else 4
            (``pickle.HIGHEST_PROTOCOL`` of the Python 3.6/3.7 NVIDIA used).
    Returns:
        ``path``.
    """
    path = os.fspath(path)
    given = [(n, role) for n, role in zip((G, D, Gs), ("G", "D", "Gs")) if n is not None]
    if len(given) not in (1, 3):
        raise NetworkPickleError(f"{path}: write_network_pkl needs G, D and Gs, or exactly one network")
    nets = [_nvidia_state(n, f"{path}: {role}") for n, role in given]
    if protocol is None:
        protocol = 3 if any(n.version >= 5 for n, _ in given) else 4
    if protocol not in (3, 4):
        raise NetworkPickleError(f"{path}: pickle protocol {protocol!r} (write 3 or 4, as NVIDIA did)")
    try:
        with atomic_write(path) as f:
            _NvidiaPickler(f, protocol).dump(tuple(nets) if len(nets) == 3 else nets[0])
    except NetworkPickleError as e:
        raise NetworkPickleError(f"{path}: {e}") from None
    except (pickle.PicklingError, TypeError, ValueError) as e:
        raise NetworkPickleError(f"{path}: cannot write ({e})") from None
    return path
