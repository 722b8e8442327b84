"""Subprocess helpers of the tests: a package's command line, and plain TensorFlow without the package.

``run_module(module, *args)`` runs ``python -m module args`` with the repository on PYTHONPATH;
``error_lines(result)`` gives its ``error:`` lines (TensorFlow may log other lines to stderr) and
checks that no traceback was printed.

``run_plain_tf(script, cwd)`` starts ``python -I`` (isolated: no PYTHONPATH, no current folder on
sys.path) in ``cwd``; the script is prefixed with a check that neither ``stylegan_tl`` nor
``superres_tf`` is importable and suffixed with a check that neither was imported.
"""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROLOGUE = """
import importlib.util, sys
assert importlib.util.find_spec("stylegan_tl") is None and importlib.util.find_spec("superres_tf") is None
"""
_EPILOGUE = """
assert not [m for m in sys.modules if m.split(".")[0] in ("stylegan_tl", "superres_tf")]
"""


def run_module(module, *args):
    """``python -m module *args`` from the repository; returns the CompletedProcess (text)."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          timeout=600)


def error_lines(result):
    """The ``error:`` lines of a command's stderr; fails the test if a traceback was printed."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def run_plain_tf(script, cwd):
    """Run ``script`` (Python source) as described above; returns the CompletedProcess."""
    source = _PROLOGUE + textwrap.dedent(script) + _EPILOGUE
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run([sys.executable, "-I", "-c", source], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
