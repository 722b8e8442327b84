"""Read PyTorch state-dict files (``torch.save(model.state_dict(), path)``) without PyTorch.

Both layouts ``torch.save`` has written are read:

* legacy (torch < 1.6): five pickles in a row -- magic number, protocol version 1001, sys_info
  (byte order, type sizes), the state dict whose tensors name their storages by persistent id,
  the list of storage keys -- then each storage's raw bytes, in that list's order, each after an
  8-byte element count;
* zip (torch >= 1.6): ``<archive>/data.pkl`` holds the state dict, ``<archive>/data/<key>`` the
  raw bytes of each storage, ``<archive>/byteorder`` (optional) the byte order.

Security model (the same discipline as ``stylegan_tl.pickle_io``; this module imports neither it
nor PyTorch): pickles are run by a small interpreter of our own that knows only the opcodes a
state dict uses (protocols 0-5) and executes nothing from the file. Globals resolve through an
allow-list -- ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` /
``_rebuild_parameter`` and the ``torch.<Type>Storage`` names of plain numeric dtypes -- to inert
stand-ins: a REDUCE can only make an empty OrderedDict or record a tensor's (storage, offset,
shape, strides); persistent ids must be ``('storage', <Storage>, key, location, numel)`` tuples.
Memo indices, container nesting, dimensions, element counts and every declared byte count are
bounded (byte counts against the file's size) before anything is allocated. Every failure is a
one-line :class:`WeightsError` naming the file.

Public function: :func:`read_state_dict`.
"""

import collections
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from superres_tf.errors import WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_DIMS = 8          # tensor rank; state dicts hold at most 5-d (conv3d) weights
MAX_NESTING = 32      # containers inside containers (a state dict's _metadata needs 3)
MAX_MARKS = 64        # open MARKs at once
_MAX_LONG_BYTES = 16  # LONG1/LONG4 payloads; the legacy magic number needs 10

# torch storage type -> numpy dtype of one element (bfloat16 is widened to float32 on read).
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
}


class _Refused(Exception):
    """A problem found while reading; becomes ``WeightsError('<path>: <message>')``."""


# --------------------------------------------------------------------------------------------
# Inert stand-ins for the allowed globals and for what they build.


class _Global:
    """An allowed global: only its name is kept; the interpreter decides what REDUCE may do."""

    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __repr__(self):
        return f"{self.module}.{self.name}"


class _StorageRef:
    """A storage named by a persistent id: element dtype, key, element count."""

    __slots__ = ("type_name", "key", "numel")

    def __init__(self, type_name, key, numel):
        self.type_name, self.key, self.numel = type_name, key, numel


class _TensorRef:
    """What ``_rebuild_tensor_v2`` would build: a strided view of a storage (elements, not bytes)."""

    __slots__ = ("storage", "offset", "shape", "strides")

    def __init__(self, storage, offset, shape, strides):
        self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides


def _allowed_global(module, name):
    if (module, name) in (("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                          ("torch._utils", "_rebuild_parameter")):
        return _Global(module, name)
    if module == "torch" and name in STORAGE_DTYPES:
        return _Global(module, name)
    raise _Refused(f"refused global {module}.{name} (not part of a PyTorch state dict; nothing was executed)")


def _int_tuple(value, what, limit):
    if not (type(value) is tuple and len(value) <= limit and all(type(n) is int and n >= 0 for n in value)):
        raise _Refused(f"{what} must be a tuple of at most {limit} non-negative ints")
    return value


def _rebuild_tensor(args):
    """``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])``."""
    if type(args) is not tuple or len(args) not in (6, 7):
        raise _Refused("_rebuild_tensor_v2 needs 6 or 7 arguments")
    storage, offset, shape, strides, requires_grad, hooks = args[:6]
    if not isinstance(storage, _StorageRef):
        raise _Refused("_rebuild_tensor_v2: the first argument is not a storage")
    if type(offset) is not int or offset < 0:
        raise _Refused(f"_rebuild_tensor_v2: bad storage offset {offset!r}")
    shape = _int_tuple(shape, "a tensor shape", MAX_DIMS)
    strides = _int_tuple(strides, "tensor strides", MAX_DIMS)
    if len(strides) != len(shape) or type(requires_grad) is not bool:
        raise _Refused("_rebuild_tensor_v2: shape and strides differ in length, or requires_grad is not a bool")
    # Backward hooks: an empty OrderedDict, or None in files of older PyTorch versions.
    if (hooks is not None and (type(hooks) is not collections.OrderedDict or hooks)) or \
            (len(args) == 7 and type(args[6]) is not dict):
        raise _Refused("_rebuild_tensor_v2: tensors with backward hooks or non-dict metadata are refused")
    numel = math.prod(shape)
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides)) if numel else offset
    if numel > storage.numel or (numel and last >= storage.numel) or offset > storage.numel:
        raise _Refused(f"tensor of shape {list(shape)} at offset {offset} (strides {list(strides)}) "
                       f"does not fit its storage of {storage.numel} elements")
    return _TensorRef(storage, offset, shape, strides)


def _rebuild_parameter(args):
    """``_rebuild_parameter(tensor, requires_grad, hooks)`` -> the tensor itself."""
    if not (type(args) is tuple and len(args) == 3 and isinstance(args[0], _TensorRef)
            and type(args[1]) is bool and type(args[2]) is collections.OrderedDict and not args[2]):
        raise _Refused("_rebuild_parameter needs (tensor, requires_grad, empty hooks)")
    return args[0]


def _ordered_dict(args):
    """``OrderedDict()`` or, as older PyTorch versions pickled it, ``OrderedDict([[key, value], ...])``
    with string keys (the values are checked later, with the rest of the state dict)."""
    if args == ():
        return collections.OrderedDict()
    if not (type(args) is tuple and len(args) == 1 and type(args[0]) is list and all(
            type(item) in (list, tuple) and len(item) == 2 and type(item[0]) is str for item in args[0])):
        raise _Refused("OrderedDict called with arguments other than a list of (name, value) pairs")
    return collections.OrderedDict((key, value) for key, value in args[0])


def _reduce(func, args):
    if not isinstance(func, _Global):
        raise _Refused(f"REDUCE on a {type(func).__name__}, not an allowed global")
    if func.name == "OrderedDict":
        return _ordered_dict(args)
    if func.name == "_rebuild_tensor_v2":
        return _rebuild_tensor(args)
    if func.name == "_rebuild_parameter":
        return _rebuild_parameter(args)
    raise _Refused(f"{func!r} is not callable here")


# --------------------------------------------------------------------------------------------
# The pickle interpreter.


class _Pickle:
    """Runs one pickle from ``data[pos:]`` with only the opcodes a state dict needs.

    ``storage(pid)`` turns a persistent id into a value; None refuses persistent ids. Nothing from
    the stream is ever called: GLOBAL resolves to stand-ins, REDUCE goes through :func:`_reduce`.
    """

    def __init__(self, data, pos, storage=None):
        self.data, self.pos, self.storage = data, pos, storage
        self.stack, self.marks, self.memo = [], [], {}
        self.depth = {}      # id(container) -> nesting depth (1 = holds no container)
        self.inserted = set()  # ids of containers already inside another one (frozen from then on)
        self.keep = []        # keeps every container alive so that ids stay unique

    # -- reading the stream
    def take(self, count):
        if count > len(self.data) - self.pos:
            raise _Refused(f"truncated pickle (an item of {count} bytes at byte {self.pos} runs past the end)")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self):
        end = self.data.find(b"\n", self.pos, self.pos + 256)
        if end < 0:
            raise _Refused("truncated or overlong text line in the pickle")
        text = self.data[self.pos:end].decode("ascii", "replace")
        self.pos = end + 1
        return text

    # -- containers and their nesting
    def new(self, container):
        self.keep.append(container)
        self.depth[id(container)] = 1 + max((self.depth.get(id(item), 0) for item in
                                             (container if isinstance(container, tuple) else ())), default=0)
        if isinstance(container, tuple):
            self.inserted.update(id(item) for item in container if id(item) in self.depth)
        return container

    def insert(self, container, items):
        """Account for putting ``items`` into the (mutable) ``container``."""
        if id(container) in self.inserted:
            raise _Refused("a container is changed after it was put into another one")
        depth = self.depth[id(container)]
        for item in items:
            if id(item) in self.depth:
                depth = max(depth, self.depth[id(item)] + 1)
                self.inserted.add(id(item))
        if depth > MAX_NESTING:
            raise _Refused(f"containers nested too deeply (more than {MAX_NESTING} levels)")
        self.depth[id(container)] = depth

    def pop(self):
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise _Refused("pickle stack underflow")
        return self.stack.pop()

    def pop_mark(self):
        if not self.marks:
            raise _Refused("pickle has no MARK to pop to")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self, kind):
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise _Refused("pickle stack underflow")
        if type(self.stack[-1]) not in kind:
            raise _Refused(f"expected a {kind[0].__name__} on the stack, found a {type(self.stack[-1]).__name__}")
        return self.stack[-1]

    def memo_index(self, index):
        if index >= len(self.data):  # a writer numbers memo entries 0, 1, ...: one per opcode at most
            raise _Refused(f"memo index {index} is beyond the pickle's size")
        return index

    def put(self, index):
        if not self.stack:
            raise _Refused("pickle stack underflow")
        self.memo[self.memo_index(index)] = self.stack[-1]

    def get(self, index):
        if self.memo_index(index) not in self.memo:
            raise _Refused(f"memo index {index} is read before it is written")
        self.stack.append(self.memo[index])

    def set_items(self, mapping, items):
        if len(items) % 2:
            raise _Refused("SETITEMS with an odd number of items")
        self.insert(mapping, items)
        for key, value in zip(items[::2], items[1::2]):
            if type(key) not in (str, int, bool, type(None), float):
                raise _Refused(f"dict key of type {type(key).__name__}")
            mapping[key] = value

    def run(self):
        """Returns (object, position after STOP)."""
        while True:
            code = self.take(1)
            handler = _OPCODES.get(code)
            if handler is None:
                raise _Refused(f"pickle opcode {code!r} at byte {self.pos - 1} is not allowed in a state dict")
            if handler(self) is _STOP:
                if len(self.stack) != 1 or self.marks:
                    raise _Refused("pickle ends with a malformed stack")
                return self.stack[0], self.pos

    # -- opcode handlers (each returns None, or _STOP)
    def op_proto(self):
        if self.take(1)[0] > 5:
            raise _Refused("pickle protocol above 5")

    def op_frame(self):
        self.unpack("<Q")  # frames only group opcodes; their length is not needed

    def op_stop(self):
        return _STOP

    def op_mark(self):
        if len(self.marks) >= MAX_MARKS:
            raise _Refused(f"more than {MAX_MARKS} nested MARKs")
        self.marks.append(len(self.stack))

    def op_pop(self):
        self.pop()

    def op_pop_mark(self):
        self.pop_mark()

    def op_none(self):
        self.stack.append(None)

    def op_true(self):
        self.stack.append(True)

    def op_false(self):
        self.stack.append(False)

    def op_int(self):
        self.stack.append(self.unpack("<i"))

    def op_int1(self):
        self.stack.append(self.unpack("<B"))

    def op_int2(self):
        self.stack.append(self.unpack("<H"))

    def op_long1(self):
        self.stack.append(self.long_bytes(self.unpack("<B")))

    def op_long4(self):
        self.stack.append(self.long_bytes(self.unpack("<i")))

    def long_bytes(self, count):
        if not 0 <= count <= _MAX_LONG_BYTES:
            raise _Refused(f"integer of {count} bytes (at most {_MAX_LONG_BYTES} are allowed)")
        return int.from_bytes(self.take(count), "little", signed=True)

    def op_float(self):
        self.stack.append(self.unpack(">d"))

    def op_unicode(self, size_format):
        raw = self.take(self.unpack(size_format))
        try:
            self.stack.append(raw.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise _Refused("a pickled string is not valid UTF-8") from None

    def op_empty_dict(self):
        self.stack.append(self.new({}))

    def op_empty_list(self):
        self.stack.append(self.new([]))

    def op_dict(self):
        mapping = self.new({})
        self.set_items(mapping, self.pop_mark())
        self.stack.append(mapping)

    def op_list(self):
        new, items = self.pop_mark(), self.new([])
        self.insert(items, new)
        items.extend(new)
        self.stack.append(items)

    def op_tuple(self, count=None):
        items = self.pop_mark() if count is None else [self.pop() for _ in range(count)][::-1]
        self.stack.append(self.new(tuple(items)) if items else ())
        if self.depth.get(id(self.stack[-1]), 0) > MAX_NESTING:
            raise _Refused(f"containers nested too deeply (more than {MAX_NESTING} levels)")

    def op_append(self):
        item = self.pop()
        items = self.top((list,))
        self.insert(items, (item,))
        items.append(item)

    def op_appends(self):
        new = self.pop_mark()
        items = self.top((list,))
        self.insert(items, new)
        items.extend(new)

    def op_setitem(self):
        value, key = self.pop(), self.pop()
        self.set_items(self.top((dict, collections.OrderedDict)), [key, value])

    def op_setitems(self):
        items = self.pop_mark()
        self.set_items(self.top((dict, collections.OrderedDict)), items)

    def op_global(self):
        module, name = self.line(), self.line()
        self.stack.append(_allowed_global(module, name))

    def op_stack_global(self):
        name, module = self.pop(), self.pop()
        if type(module) is not str or type(name) is not str:
            raise _Refused("STACK_GLOBAL needs two strings")
        self.stack.append(_allowed_global(module, name))

    def op_reduce(self):
        args, func = self.pop(), self.pop()
        value = _reduce(func, args)
        if isinstance(value, collections.OrderedDict):
            self.new(value)
        self.stack.append(value)

    def op_build(self):
        state = self.pop()
        target = self.top((collections.OrderedDict,))
        # A state dict's BUILD sets its `_metadata` attribute (per-module versions): kept inert, unused.
        if type(state) is not dict or not all(type(key) is str for key in state):
            raise _Refused("BUILD with a state that is not a dict of attributes")
        self.insert(target, (state,))

    def op_persid(self):
        if self.storage is None:
            raise _Refused("persistent id outside the state dict's pickle")
        self.stack.append(self.storage(self.pop()))

    def op_put(self, size_format):
        self.put(self.unpack(size_format))

    def op_memoize(self):
        self.put(len(self.memo))

    def op_get(self, size_format):
        self.get(self.unpack(size_format))


_STOP = object()
_OPCODES = {
    b"\x80": _Pickle.op_proto, b"\x95": _Pickle.op_frame, b".": _Pickle.op_stop,
    b"(": _Pickle.op_mark, b"0": _Pickle.op_pop, b"1": _Pickle.op_pop_mark,
    b"N": _Pickle.op_none, b"\x88": _Pickle.op_true, b"\x89": _Pickle.op_false,
    b"J": _Pickle.op_int, b"K": _Pickle.op_int1, b"M": _Pickle.op_int2,
    b"\x8a": _Pickle.op_long1, b"\x8b": _Pickle.op_long4, b"G": _Pickle.op_float,
    b"X": lambda p: p.op_unicode("<I"), b"\x8c": lambda p: p.op_unicode("<B"),
    # Python 2's byte strings (files saved by PyTorch under Python 2, e.g. lpips' weights), read
    # as UTF-8 text as torch.load does by default.
    b"U": lambda p: p.op_unicode("<B"), b"T": lambda p: p.op_unicode("<I"),
    b"}": _Pickle.op_empty_dict, b"]": _Pickle.op_empty_list, b"d": _Pickle.op_dict,
    b"l": _Pickle.op_list, b")": lambda p: p.stack.append(()),
    b"t": _Pickle.op_tuple, b"\x85": lambda p: p.op_tuple(1), b"\x86": lambda p: p.op_tuple(2),
    b"\x87": lambda p: p.op_tuple(3),
    b"a": _Pickle.op_append, b"e": _Pickle.op_appends, b"s": _Pickle.op_setitem,
    b"u": _Pickle.op_setitems, b"c": _Pickle.op_global, b"\x93": _Pickle.op_stack_global,
    b"R": _Pickle.op_reduce, b"b": _Pickle.op_build, b"Q": _Pickle.op_persid,
    b"q": lambda p: p.op_put("<B"), b"r": lambda p: p.op_put("<I"), b"\x94": _Pickle.op_memoize,
    b"h": lambda p: p.op_get("<B"), b"j": lambda p: p.op_get("<I"),
}


# --------------------------------------------------------------------------------------------
# Storages and the two file layouts.


class _Storages:
    """Collects the storages that persistent ids name, checking that each key is used consistently."""

    def __init__(self, limit_bytes):
        self.refs, self.limit_bytes = {}, limit_bytes

    def __call__(self, pid):
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"):
            raise _Refused("a persistent id that is not ('storage', type, key, location, numel)")
        _, type_ref, key, location, numel = pid[:5]
        if not (isinstance(type_ref, _Global) and type_ref.name in STORAGE_DTYPES and type(key) is str
                and type(location) is str and type(numel) is int and numel >= 0):
            raise _Refused(f"malformed storage persistent id for key {key!r}"[:120])
        if len(pid) == 6 and pid[5] is not None:
            raise _Refused(f"storage {key!r}: views of storages (old torch) are not supported")
        size = numel * np.dtype(STORAGE_DTYPES[type_ref.name]).itemsize
        if size > self.limit_bytes:
            raise _Refused(f"storage {key!r} declares {size} bytes, more than the file holds")
        ref = self.refs.setdefault(key, _StorageRef(type_ref.name, key, numel))
        if (ref.type_name, ref.numel) != (type_ref.name, numel):
            raise _Refused(f"storage {key!r} is declared twice with different types or sizes")
        return ref


def _storage_array(raw, ref, byteorder):
    """Raw bytes of one storage -> 1-d native numpy array (bfloat16 widened to float32)."""
    dtype = np.dtype(STORAGE_DTYPES[ref.type_name]).newbyteorder(byteorder)
    if len(raw) != ref.numel * dtype.itemsize:
        raise _Refused(f"storage {ref.key!r} holds {len(raw)} bytes, expected {ref.numel * dtype.itemsize}")
    array = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))
    if ref.type_name == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _legacy_header(data):
    """The three small pickles before the state dict; returns (byte order, position after them)."""
    magic, pos = _Pickle(data, 0).run()
    if magic != LEGACY_MAGIC:
        raise _Refused("not a PyTorch file (wrong magic number)")
    protocol, pos = _Pickle(data, pos).run()
    if protocol != LEGACY_PROTOCOL:
        raise _Refused(f"legacy protocol version {protocol!r}, expected {LEGACY_PROTOCOL}")
    sys_info, pos = _Pickle(data, pos).run()
    if type(sys_info) is not dict or type(sys_info.get("little_endian")) is not bool:
        raise _Refused("malformed sys_info record")
    return ("<" if sys_info["little_endian"] else ">"), pos


def _read_legacy(data):
    """Legacy layout -> (state dict of _TensorRef, {key: storage array})."""
    byteorder, pos = _legacy_header(data)
    storages = _Storages(len(data))
    state, pos = _Pickle(data, pos, storages).run()
    keys, pos = _Pickle(data, pos).run()
    if type(keys) is not list or not all(type(k) is str for k in keys) or len(set(keys)) != len(keys):
        raise _Refused("the storage key list is not a list of distinct strings")
    if set(keys) != set(storages.refs):
        raise _Refused(f"the storage key list names {len(keys)} storages, the state dict uses {len(storages.refs)}")
    arrays, view = {}, memoryview(data)
    for key in keys:
        ref = storages.refs[key]
        if len(data) - pos < 8:
            raise _Refused(f"truncated file (storage {key!r} is missing)")
        count = struct.unpack(byteorder + "q", data[pos:pos + 8])[0]
        if count != ref.numel:
            raise _Refused(f"storage {key!r} holds {count} elements, the state dict says {ref.numel}")
        size = count * np.dtype(STORAGE_DTYPES[ref.type_name]).itemsize
        if size > len(data) - pos - 8:
            raise _Refused(f"truncated file (storage {key!r} needs {size} bytes, {len(data) - pos - 8} are left)")
        arrays[key] = _storage_array(view[pos + 8:pos + 8 + size], ref, byteorder)
        pos += 8 + size
    if pos != len(data):
        raise _Refused(f"{len(data) - pos} unexpected bytes after the last storage")
    return state, arrays


def _read_zip(path, file_size):
    """Zip layout -> (state dict of _TensorRef, {key: storage array})."""
    with zipfile.ZipFile(path) as archive:
        records = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in records if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            kind = "a TorchScript archive" if any(n.endswith("/constants.pkl") for n in records) else "a zip file"
            raise _Refused(f"{kind} without exactly one <archive>/data.pkl: not a torch.save state dict")
        prefix = pickles[0][:-len("data.pkl")]

        def read(name):
            info = records.get(name)
            if info is None:
                raise _Refused(f"record {name} is missing")
            if info.file_size > file_size:
                raise _Refused(f"record {name} declares {info.file_size} bytes, more than the file holds")
            return archive.read(info)

        order = records.get(prefix + "byteorder")
        byteorder = {b"little": "<", b"big": ">"}.get(read(order.filename) if order else b"little")
        if byteorder is None:
            raise _Refused("unknown byte order record")
        storages = _Storages(file_size)
        state, _ = _Pickle(read(pickles[0]), 0, storages).run()
        arrays = {key: _storage_array(read(prefix + "data/" + key), ref, byteorder)
                  for key, ref in storages.refs.items()}
    return state, arrays


def _tensor_array(tensor, arrays):
    """A strided view of its storage -> a C-contiguous copy."""
    storage = arrays[tensor.storage.key]
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[tensor.offset:], shape=tensor.shape,
                                           strides=[s * itemsize for s in tensor.strides], writeable=False)
    return np.array(view, order="C")


def read_state_dict(path):
    """Read a ``torch.save``-d state dict (legacy or zip layout) without PyTorch.

    Args:
      path: the ``.pth``/``.pt`` file.

    Returns:
      ``collections.OrderedDict`` name -> C-contiguous numpy array with the tensor's shape and
      values (float16 stays float16; bfloat16 becomes float32), in the file's order.

    Raises:
      WeightsError: one line naming the file, for anything unreadable, refused or inconsistent.
    """
    path = os.fspath(path)
    try:
        if not os.path.isfile(path):
            raise _Refused("no such file" if not os.path.exists(path) else "not a regular file")
        file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            state, arrays = _read_zip(path, file_size)
        elif head[:1] == b"\x80":
            with open(path, "rb") as f:
                state, arrays = _read_legacy(f.read())
        else:
            raise _Refused(f"not a PyTorch file (it starts with {head!r})")
        if type(state) not in (dict, collections.OrderedDict):
            raise _Refused(f"holds a {type(state).__name__}, not a state dict")
        result = collections.OrderedDict()
        for name, tensor in state.items():
            if type(name) is not str or not isinstance(tensor, _TensorRef):
                raise _Refused(f"entry {str(name)[:60]!r} is a {type(tensor).__name__}, not a tensor")
            result[name] = _tensor_array(tensor, arrays)
        return result
    except _Refused as error:
        raise WeightsError(f"{path}: {error}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, ValueError) as error:  # damaged archives and unreadable files
        message = " ".join(str(error).split())[:120]
        raise WeightsError(f"{path}: cannot read as a PyTorch file ({type(error).__name__}: {message})") from None
