"""Run a script in a fresh Python that cannot import this repository's packages (for SavedModels).

``run_plain_tf(script, cwd)`` starts ``python -I`` (isolated: no PYTHONPATH, no current folder on
sys.path) in ``cwd``; the script is prefixed with a check that neither ``stylegan_tl`` nor
``superres_tf`` is importable and suffixed with a check that neither was imported.
"""

import os
import subprocess
import sys
import textwrap

_PROLOGUE = """
import importlib.util, sys
assert importlib.util.find_spec("stylegan_tl") is None and importlib.util.find_spec("superres_tf") is None
"""
_EPILOGUE = """
assert not [m for m in sys.modules if m.split(".")[0] in ("stylegan_tl", "superres_tf")]
"""


def run_plain_tf(script, cwd):
    """Run ``script`` (Python source) as described above; returns the CompletedProcess."""
    source = _PROLOGUE + textwrap.dedent(script) + _EPILOGUE
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run([sys.executable, "-I", "-c", source], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
