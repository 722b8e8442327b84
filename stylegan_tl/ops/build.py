"""Build (on first use) and load the custom-op library ``stylegan_tl_ops.so``.

The C++ sources in ``kernels/`` are compiled with the flags TensorFlow reports
(``tf.sysconfig.get_compile_flags()/get_link_flags()``: C++17 and TF's ABI flag). The CUDA
sources are added when TensorFlow is a CUDA build, ``nvcc`` is found and TensorFlow sees a GPU
(override with ``STYLEGAN_TL_CUDA=0|1``). The library is cached in ``$STYLEGAN_TL_CACHE/ops`` or
``~/.cache/stylegan_tl/ops`` under a name keyed by a hash of the sources, the compile commands,
the compiler versions and the TensorFlow version; it is compiled into a temporary directory and
renamed into place under a file lock, so parallel processes neither collide nor see a partial file.

Loading a library runs its code, so the cache must be private: the ``ops`` folder and the library
must belong to the current user and not be writable by group or others (else BuildError, and the
pure-TF reference is used in the default mode), and the library's SHA-256, recorded at build time
in ``<library>.sha256``, is checked before every load (a library without the record is rebuilt).

Environment variables: ``STYLEGAN_TL_CACHE`` (cache root), ``STYLEGAN_TL_CXX`` (C++ compiler,
default ``g++``), ``STYLEGAN_TL_NVCC`` (nvcc, default from PATH or ``$CUDA_HOME/bin``),
``STYLEGAN_TL_CUDA`` (``1``/``0`` force the CUDA kernels on/off), ``STYLEGAN_TL_CUDA_ARCH``
(e.g. ``80,90``: GPU architectures to compile for).

Command line: ``python -m stylegan_tl.ops.build [--force] [--cuda_check]`` (``--cuda-check`` is also accepted).
"""

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time

import tensorflow as tf
from absl import logging

from ..atomic import atomic_write
from ..errors import BuildError

ENV_CACHE = "STYLEGAN_TL_CACHE"
ENV_CXX = "STYLEGAN_TL_CXX"
ENV_NVCC = "STYLEGAN_TL_NVCC"
ENV_CUDA = "STYLEGAN_TL_CUDA"
ENV_CUDA_ARCH = "STYLEGAN_TL_CUDA_ARCH"

LIB_NAME = "stylegan_tl_ops"
KERNEL_DIR = pathlib.Path(__file__).resolve().parent / "kernels"
CPP_SOURCES = ("fused_bias_act.cc", "upfirdn_2d.cc")
CUDA_SOURCES = ("cuda_common.cu", "fused_bias_act.cu", "upfirdn_2d.cu")
_CACHE_TAG = "stylegan_tl-ops-1"
# -fno-trapping-math lets the compiler evaluate both sides of a select (vectorized activations).
_CXX_FLAGS = ["-shared", "-fPIC", "-O3", "-DNDEBUG", "-fno-trapping-math", "-fno-math-errno", "-w"]
_NVCC_FLAGS = ["-c", "--std=c++17", "-O3", "-DNDEBUG", "-Xcompiler", "-fPIC"]


@dataclasses.dataclass
class BuildResult:
    """What ``build_library`` produced."""
    path: pathlib.Path   # the cached .so
    cached: bool         # True when an existing library was reused (nothing compiled)
    seconds: float       # wall time of this call
    cuda: bool           # True when the CUDA kernels are in the library
    cuda_note: str       # why CUDA kernels are (not) included


def _check_private(path):
    """Raise BuildError unless ``path`` belongs to this user and is not writable by group or others."""
    st = os.stat(path)
    if st.st_uid != os.getuid():
        problem = f"it belongs to user id {st.st_uid}, not to you (user id {os.getuid()})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    else:
        return
    raise BuildError(f"{path}: refusing to use the custom-op cache: {problem}, so another user could replace "
                     f"the library this process would load; set {ENV_CACHE} to a folder of your own (or chmod go-w it "
                     "if it is yours)")


def cache_dir():
    """Directory holding the built libraries: created on demand, and refused (BuildError) unless it
    belongs to this user and is not writable by group or others."""
    root = os.environ.get(ENV_CACHE)
    path = pathlib.Path(root) / "ops" if root else pathlib.Path.home() / ".cache/stylegan_tl/ops"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as e:
        raise BuildError(f"{path}: cannot create the custom-op cache folder ({e.strerror}); set {ENV_CACHE} "
                         "to a writable folder, or STYLEGAN_TL_OPS=ref") from None
    _check_private(path)
    return path


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(library):
    """True when ``library`` matches the SHA-256 recorded at its build; False when there is no record.

    Raises BuildError when the library (or its record) is not private or the hash differs.
    """
    record = pathlib.Path(f"{library}.sha256")
    if not record.exists():  # built before records existed (or the record was removed): rebuild it
        return False
    _check_private(library)
    _check_private(record)
    if record.read_text(encoding="ascii", errors="replace").split()[:1] != [_sha256(library)]:
        raise BuildError(f"{library}: differs from the SHA-256 recorded when it was built ({record}); it was "
                         "changed after the build: delete it or run python -m stylegan_tl.ops.build --force")
    return True


def _run(cmd, what):
    """Run a compiler command; raise BuildError with the command and its output on failure."""
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise BuildError(f"{what}: cannot run {cmd[0]!r} ({e.strerror}); set {ENV_CXX} / "
                         f"{ENV_NVCC} or STYLEGAN_TL_OPS=ref. Command: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        raise BuildError(f"{what}: compiler failed with exit code {proc.returncode}. "
                         f"Command: {' '.join(cmd)}\n{proc.stdout[-6000:]}")
    return proc.stdout


def _tool_version(exe, what):
    """The ``--version`` text of a compiler (part of the cache key)."""
    return _run([exe, "--version"], f"{what} version check").strip()


def find_nvcc():
    """Path of nvcc (``$STYLEGAN_TL_NVCC``, PATH, ``$CUDA_HOME/bin``) or None."""
    if os.environ.get(ENV_NVCC):
        return os.environ[ENV_NVCC]
    found = shutil.which("nvcc")
    if found:
        return found
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = pathlib.Path(home) / "bin" / "nvcc"
    return str(candidate) if candidate.exists() else None


def cuda_include_shim(nvcc):
    """Directory to add with -I so that ``third_party/gpus/cuda/include/...`` resolves.

    TF's headers include CUDA headers through that path when ``GOOGLE_CUDA`` is set. Recent pip
    wheels ship them inside ``tensorflow/include``; otherwise a symlink tree in the cache points
    it at the CUDA toolkit found next to ``nvcc``.
    """
    tf_include = pathlib.Path(tf.sysconfig.get_include())
    if (tf_include / "third_party/gpus/cuda/include/cuda_runtime.h").exists():
        return None
    toolkit_include = pathlib.Path(nvcc).resolve().parent.parent / "include"
    if not (toolkit_include / "cuda_runtime.h").exists():
        raise BuildError(f"{toolkit_include}: no cuda_runtime.h for TF's third_party/gpus include")
    shim = cache_dir() / "include_shim"
    link = shim / "third_party/gpus/cuda/include"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.parent / f".include.{os.getpid()}"
        os.symlink(toolkit_include, tmp)
        os.replace(tmp, link)
    return shim


def cuda_archs(nvcc):
    """GPU architectures (e.g. ``['80', '90']``): env, else visible GPUs, else TF's build list."""
    if os.environ.get(ENV_CUDA_ARCH):
        return [a.strip() for a in os.environ[ENV_CUDA_ARCH].replace(";", ",").split(",")
                if a.strip()]
    archs = set()
    for gpu in tf.config.list_physical_devices("GPU"):
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if cc:
            archs.add(f"{cc[0]}{cc[1]}")
    if not archs:
        built = tf.sysconfig.get_build_info().get("cuda_compute_capabilities", [])
        archs = {a.split("_")[-1] for a in built}
    supported = _run([nvcc, "--list-gpu-arch"], "nvcc --list-gpu-arch").split()
    supported = {a.split("_")[-1] for a in supported}
    usable = sorted(archs & supported) if supported else sorted(archs)
    if not usable:
        raise BuildError(f"{nvcc}: supports none of the GPU architectures {sorted(archs)}; "
                         f"set {ENV_CUDA_ARCH}")
    return usable


def _gencode_flags(archs):
    flags = []
    for arch in archs:
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    top = archs[-1]
    return flags + ["-gencode", f"arch=compute_{top},code=compute_{top}"]


def cuda_decision():
    """Return ``(nvcc or None, note)``: whether the library gets CUDA kernels, and why."""
    forced = os.environ.get(ENV_CUDA, "").strip()
    if forced == "0":
        return None, f"CUDA kernels disabled by {ENV_CUDA}=0"
    nvcc = find_nvcc()
    if nvcc is None:
        return None, "no nvcc found (PATH, $CUDA_HOME/bin)"
    if not tf.test.is_built_with_cuda():
        return None, "TensorFlow is not a CUDA build"
    if forced != "1" and not tf.config.list_physical_devices("GPU"):
        return None, f"TensorFlow sees no GPU (set {ENV_CUDA}=1 to build them anyway)"
    match = re.search(r"release (\d+\.\d+)", _tool_version(nvcc, "nvcc"))
    nvcc_cuda = match.group(1) if match else "?"
    tf_cuda = tf.sysconfig.get_build_info().get("cuda_version", "?")
    if nvcc_cuda.split(".")[0] != tf_cuda.split(".")[0]:
        logging.warning("nvcc is CUDA %s but TensorFlow was built with CUDA %s; if the ops fail on "
                        "the GPU, put a matching toolkit's nvcc first on PATH or set %s",
                        nvcc_cuda, tf_cuda, ENV_NVCC)
    return nvcc, f"CUDA kernels built with {nvcc} (CUDA {nvcc_cuda})"


def _commands(workdir, nvcc, check_only=False):
    """Compile commands (list of argv) producing ``workdir/LIB_NAME.so``.

    ``check_only`` compiles the host sources without optimisation (a faster syntax check).
    """
    cflags = tf.sysconfig.get_compile_flags()
    lflags = tf.sysconfig.get_link_flags()
    cxx = os.environ.get(ENV_CXX) or "g++"
    commands, objects, defines = [], [], []
    if nvcc:
        shim = cuda_include_shim(nvcc)
        arch_flags = _gencode_flags(cuda_archs(nvcc))
        host = ["-ccbin", os.environ[ENV_CXX]] if os.environ.get(ENV_CXX) else []
        for src in CUDA_SOURCES:
            obj = str(pathlib.Path(workdir) / f"{src}.o")
            commands.append([nvcc, *_NVCC_FLAGS, *arch_flags, *host, str(KERNEL_DIR / src),
                             "-o", obj])
            objects.append(obj)
        # TF's headers include "third_party/gpus/cuda/include/..."; Eigen includes
        # <cuda_runtime.h> directly: both must resolve.
        cuda_root = pathlib.Path(shim or tf.sysconfig.get_include())
        defines = ["-DGOOGLE_CUDA=1", f"-I{cuda_root}",
                   f"-I{cuda_root / 'third_party/gpus/cuda/include'}"]
    out = str(pathlib.Path(workdir) / f"{LIB_NAME}.so")
    cxx_flags = [f for f in _CXX_FLAGS if f != "-O3"] + ["-O0"] if check_only else _CXX_FLAGS
    commands.append([cxx, *cxx_flags, *cflags, *defines,
                     *[str(KERNEL_DIR / s) for s in CPP_SOURCES], *objects, "-o", out, *lflags])
    return commands, out


def _cache_key(commands, workdir, nvcc):
    h = hashlib.sha256()
    h.update(_CACHE_TAG.encode())
    h.update(tf.__version__.encode())
    for path in sorted(KERNEL_DIR.iterdir()):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    for cmd in commands:
        h.update(" ".join(cmd).replace(str(workdir), "<tmp>").encode())
    h.update(_tool_version(commands[-1][0], "C++ compiler").encode())
    if nvcc:
        h.update(_tool_version(nvcc, "nvcc").encode())
    return h.hexdigest()[:20]


@contextlib.contextmanager
def _file_lock(path):
    """Exclusive lock on ``path`` (fcntl); a no-op where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_library(force=False):
    """Build the library unless cached (``force`` rebuilds); return a ``BuildResult``."""
    start = time.time()
    nvcc, cuda_note = cuda_decision()
    cache = cache_dir()
    workdir = tempfile.mkdtemp(prefix=f".{LIB_NAME}.", dir=cache)
    try:
        commands, out = _commands(workdir, nvcc)
        key = _cache_key(commands, workdir, nvcc)
        final = cache / f"{LIB_NAME}_{key}.so"
        with _file_lock(cache / f"{LIB_NAME}_{key}.lock"):
            if final.exists() and not force and _verified(final):
                return BuildResult(final, True, time.time() - start, nvcc is not None, cuda_note)
            logging.info("Compiling stylegan_tl custom ops into %s (%s) ...", final, cuda_note)
            for cmd in commands:
                _run(cmd, f"building {final.name}")
            os.chmod(out, 0o755)
            os.replace(out, final)
            with atomic_write(f"{final}.sha256", mode=0o644) as f:
                f.write(f"{_sha256(final)}  {final.name}\n".encode("ascii"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return BuildResult(final, False, time.time() - start, nvcc is not None, cuda_note)


_loaded = None      # (module, BuildResult) once loaded
_load_error = None  # the BuildError of a failed attempt (not retried in this process)
_load_lock = threading.Lock()


def load_ops_library():
    """Build on first use and load the op library; return the module (raises BuildError).

    The outcome is memoised per process, including failures.
    """
    global _loaded, _load_error
    with _load_lock:
        if _loaded is None and _load_error is None:
            try:
                result = build_library()
                try:
                    module = tf.load_op_library(str(result.path))
                except Exception as e:  # noqa: BLE001 - TF raises NotFoundError and others
                    raise BuildError(f"{result.path}: cannot be loaded: {e}") from None
                _loaded = (module, result)
            except BuildError as e:
                _load_error = e
    if _load_error is not None:
        raise _load_error
    return _loaded[0]


def loaded_build():
    """The ``BuildResult`` of the library loaded in this process, or None."""
    return _loaded[1] if _loaded else None


def check_cuda_sources(outdir=None):
    """Compile every CUDA source with nvcc and the host sources with ``GOOGLE_CUDA=1``.

    Nothing is loaded (this checks that the GPU code compiles on hosts without a GPU).
    Returns a list of ``(source names, seconds)``; raises BuildError when nvcc is missing or a
    compile fails.
    """
    nvcc = find_nvcc()
    if nvcc is None:
        raise BuildError("--cuda_check: no nvcc found (PATH, $CUDA_HOME/bin, $STYLEGAN_TL_NVCC)")
    with tempfile.TemporaryDirectory(dir=outdir) as workdir:
        commands, _ = _commands(workdir, nvcc, check_only=True)
        report = []
        for cmd in commands:
            start = time.time()
            names = [pathlib.Path(a).name for a in cmd if a.endswith((".cu", ".cc"))]
            _run(cmd, f"CUDA compile check of {', '.join(names)}")
            report.append((names, time.time() - start))
    return report


def _build(force, cuda_check):
    """Build (or find) and load the library; with ``cuda_check`` also compile the CUDA sources.
    Yields the lines to print."""
    result = build_library(force=force)
    tf.load_op_library(str(result.path))
    state = "cached" if result.cached else "built"
    yield (f"{state}: {result.path} in {result.seconds:.1f} s; CPU kernels: fused_bias_act, "
           f"upfirdn_2d; CUDA: {result.cuda_note}")
    if cuda_check:
        for names, seconds in check_cuda_sources():
            yield f"cuda-check: compiled {', '.join(names)} in {seconds:.1f} s"


def main(argv=None):
    """The command line (``argv`` without the program name; default ``sys.argv[1:]``); returns the
    exit code (a BuildError exits 1)."""
    from absl import flags
    from superres_tf import conventions

    flag_values = flags.FlagValues()
    flags.DEFINE_bool("force", False, "rebuild even when cached", flag_values=flag_values)
    flags.DEFINE_bool("cuda_check", False, "also compile the CUDA sources with nvcc (no GPU needed, not loaded)",
                      flag_values=flag_values)
    return conventions.main(sys.argv[1:] if argv is None else argv, flag_values,
                            lambda: _build(flag_values.force, flag_values.cuda_check),
                            "python -m stylegan_tl.ops.build [--force] [--cuda_check]",
                            aliases={"--cuda-check": "--cuda_check"})


if __name__ == "__main__":
    sys.exit(main())
