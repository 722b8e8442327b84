"""Building the custom-op library: cache reuse across processes, the file lock, fallback with one
warning when the compiler is broken, the STYLEGAN_TL_OPS switch, and an nvcc compile check."""

import hashlib
import os
import stat
import subprocess
import sys

import pytest

from stylegan_tl.errors import StyleGANTLError
from stylegan_tl.ops import build, impl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code_or_args, env_overrides, timeout=600):
    """Run python in a fresh process from the repo root; return CompletedProcess (text)."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **env_overrides)
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def fresh_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("stylegan_tl_cache"))


@pytest.mark.slow
def test_parallel_builds_compile_once_and_later_loads_reuse_the_cache(fresh_cache):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2",
               STYLEGAN_TL_CACHE=fresh_cache)
    procs = [subprocess.Popen([sys.executable, "-m", "stylegan_tl.ops.build"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    states = sorted(out.split(":")[0] for out, _ in outputs)
    assert states == ["built", "cached"], outputs  # the lock made the second one wait and reuse
    libs = [f for f in os.listdir(os.path.join(fresh_cache, "ops")) if f.endswith(".so")]
    assert len(libs) == 1 and not [f for f in os.listdir(os.path.join(fresh_cache, "ops"))
                                   if f.startswith(".")]  # no temp files left behind
    library = os.path.join(fresh_cache, "ops", libs[0])
    with open(library, "rb") as f:  # the SHA-256 checked before every load, recorded at the build
        assert open(library + ".sha256").read() == f"{hashlib.sha256(f.read()).hexdigest()}  {libs[0]}\n"
    mtime = os.path.getmtime(os.path.join(fresh_cache, "ops", libs[0]))
    again = _python(["-m", "stylegan_tl.ops.build"], {"STYLEGAN_TL_CACHE": fresh_cache})
    assert again.returncode == 0 and again.stdout.startswith("cached:"), again.stdout
    assert os.path.getmtime(os.path.join(fresh_cache, "ops", libs[0])) == mtime


def test_broken_compiler_falls_back_to_reference_with_one_warning(tmp_path):
    code = ("import numpy as np, tensorflow as tf\n"
            "from stylegan_tl import ops\n"
            "x = tf.constant(np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4))\n"
            "a = ops.upsample_2d(x)\n"
            "b = ops.fused_bias_act(x, act='lrelu')\n"
            "r = ops.upsample_2d(x, impl='ref')\n"
            "print('same', bool(np.allclose(a.numpy(), r.numpy())))\n"
            "try:\n"
            "    ops.upsample_2d(x, impl='custom')\n"
            "except Exception as e:\n"
            "    print('custom:', type(e).__name__, str(e).splitlines()[0])\n")
    res = _python(code, {"STYLEGAN_TL_CACHE": str(tmp_path),
                         "STYLEGAN_TL_CXX": "/nonexistent/g++"})
    assert res.returncode == 0, res.stderr
    assert "same True" in res.stdout
    assert "custom: BuildError" in res.stdout and "/nonexistent/g++" in res.stdout
    assert res.stderr.count("custom ops unavailable") == 1, res.stderr


def test_env_switch_ref_never_builds(tmp_path):
    code = ("from stylegan_tl import ops\n"
            "print(ops.upsample_2d([[[[1.0, 2.0], [3.0, 4.0]]]]).shape)\n")
    res = _python(code, {"STYLEGAN_TL_CACHE": str(tmp_path), "STYLEGAN_TL_OPS": "ref",
                         "STYLEGAN_TL_CXX": "/nonexistent/g++"})
    assert res.returncode == 0 and "(1, 1, 4, 4)" in res.stdout, res.stderr
    assert "unavailable" not in res.stderr
    assert not [f for f in os.listdir(tmp_path / "ops") if f.endswith(".so")] \
        if (tmp_path / "ops").exists() else True


def test_env_switch_values(monkeypatch):
    monkeypatch.setenv("STYLEGAN_TL_OPS", "ref")
    assert impl.resolve_impl("auto") == "ref"
    assert impl.resolve_impl("custom") == "custom"  # an explicit argument wins
    monkeypatch.setenv("STYLEGAN_TL_OPS", "bogus")
    with pytest.raises(StyleGANTLError, match="STYLEGAN_TL_OPS"):
        impl.resolve_impl("auto")


def test_build_cli_reports_errors_without_traceback(tmp_path):
    res = _python(["-m", "stylegan_tl.ops.build"], {"STYLEGAN_TL_CACHE": str(tmp_path),
                                                    "STYLEGAN_TL_CXX": "/nonexistent/g++"})
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "/nonexistent/g++" in last, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.skipif(build.find_nvcc() is None, reason="nvcc not found")
def test_cuda_sources_compile_with_nvcc(tmp_path):
    report = build.check_cuda_sources(str(tmp_path))
    compiled = [name for names, _ in report for name in names]
    assert set(compiled) == set(build.CUDA_SOURCES) | set(build.CPP_SOURCES)


def test_include_shim_points_third_party_gpus_at_the_toolkit(tmp_path, monkeypatch):
    toolkit = tmp_path / "cuda"
    (toolkit / "bin").mkdir(parents=True)
    (toolkit / "include").mkdir()
    (toolkit / "bin" / "nvcc").write_text("")
    (toolkit / "include" / "cuda_runtime.h").write_text("// fake\n")
    tf_include = tmp_path / "tf_include"
    tf_include.mkdir()
    monkeypatch.setattr(build.tf.sysconfig, "get_include", lambda: str(tf_include))
    monkeypatch.setenv("STYLEGAN_TL_CACHE", str(tmp_path / "cache"))
    shim = build.cuda_include_shim(str(toolkit / "bin" / "nvcc"))
    assert (shim / "third_party/gpus/cuda/include/cuda_runtime.h").read_text() == "// fake\n"
    (tf_include / "third_party/gpus/cuda/include").mkdir(parents=True)
    (tf_include / "third_party/gpus/cuda/include/cuda_runtime.h").write_text("")
    assert build.cuda_include_shim(str(toolkit / "bin" / "nvcc")) is None  # wheel has them


# ---------------------------------------------------------------------------------------------
# A shared cache must not let another user's library be loaded (its constructor would run here).

_EVIL_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void pwn(void) {
    FILE *f = fopen(getenv("PWN_MARKER"), "w");
    if (f) { fputs("constructor ran", f); fclose(f); }
}
"""
_LOAD = """
import os, sys
from stylegan_tl.ops import build
if sys.argv[1] == "someone else's":
    owner = os.stat(sys.argv[2]).st_uid
    os.getuid = lambda: owner + 1  # this process plays another user than the folder's owner
try:
    build.load_ops_library()
    print("loaded")
except build.BuildError as e:
    print("error:", e)
"""


def _planted_library(cache):
    """Compile a library whose constructor writes $PWN_MARKER and plant it under the cached name."""
    ops_dir = cache / "ops"
    ops_dir.mkdir(parents=True)
    workdir = "/a-build-folder-that-appears-nowhere-else"
    commands, _ = build._commands(workdir, None)
    library = ops_dir / f"{build.LIB_NAME}_{build._cache_key(commands, workdir, None)}.so"
    source = cache / "evil.c"
    source.write_text(_EVIL_C)
    subprocess.run(["g++", "-shared", "-fPIC", "-x", "c", str(source), "-o", str(library)], check=True)
    return ops_dir, library


@pytest.mark.parametrize("case", ["world-writable", "someone else's", "changed after the build"])
def test_a_library_another_user_could_have_planted_is_never_loaded(tmp_path, case):
    ops_dir, library = _planted_library(tmp_path / "cache")
    if case == "world-writable":
        os.chmod(ops_dir, 0o777)  # e.g. created first by another user of a shared STYLEGAN_TL_CACHE
        expected = "it is writable by group or others (mode 777)"
    elif case == "someone else's":
        expected = "not to you"
    else:
        (ops_dir / (library.name + ".sha256")).write_text("0" * 64 + "  " + library.name + "\n")
        expected = "differs from the SHA-256 recorded when it was built"
    marker = tmp_path / "pwned"
    res = _python(["-c", _LOAD, case, str(ops_dir)], {"STYLEGAN_TL_CACHE": str(tmp_path / "cache"),
                                                      "STYLEGAN_TL_CUDA": "0", "PWN_MARKER": str(marker)},
                  timeout=300)
    assert not marker.exists(), "the planted library was loaded"
    assert res.stdout.startswith("error: ") and expected in res.stdout, res.stdout + res.stderr[-2000:]
    assert str(ops_dir if case != "changed after the build" else library) in res.stdout


def test_an_op_cache_that_cannot_be_created_is_a_build_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("STYLEGAN_TL_CACHE", str(tmp_path / "file"))
    with pytest.raises(StyleGANTLError, match="cannot create the custom-op cache folder .*STYLEGAN_TL_OPS=ref"):
        build.cache_dir()
    monkeypatch.setenv("STYLEGAN_TL_CACHE", str(tmp_path / "mine"))
    assert stat.S_IMODE(os.stat(build.cache_dir()).st_mode) & 0o022 == 0
