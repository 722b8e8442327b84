"""Network.from_state checks a pickle's static kwargs and variable shapes before allocating anything."""

import collections
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

from stylegan_tl.errors import StyleGANTLError
from stylegan_tl.network import KNOWN_KWARGS, load_network_pkl
from stylegan_tl.pickle_io import NetworkState, write_network_pkl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mapping_pickle(path, variables=None, **static_kwargs):
    """A single-network StyleGAN2 ``G_mapping`` pickle with ``static_kwargs`` (no variables by default)."""
    state = NetworkState(name="G_mapping", version=4, build_func_name="G_mapping", static_kwargs=static_kwargs,
                         variables=collections.OrderedDict(variables or {}))
    return write_network_pkl(path, None, None, state)


def test_every_kwarg_the_architectures_accept_has_a_rule():
    names = set()
    for module in ("arch_v1", "arch_v2", "arch_ada"):
        mod = importlib.import_module(f"stylegan_tl.{module}")
        for obj in vars(mod).values():
            for attr in ("DEFAULTS", "_DEFAULTS"):
                defaults = getattr(obj, attr, None) if isinstance(obj, type) else None
                names |= set(defaults or {})
    assert names and names <= KNOWN_KWARGS, sorted(names - KNOWN_KWARGS)


@pytest.mark.parametrize("kwargs, expected", [
    ({"mapping_layers": "8"}, "static kwarg mapping_layers='8': expected an integer in [0, 64]"),
    ({"label_size": -5}, "static kwarg label_size=-5: expected an integer in [0, 10000]"),
    ({"mapping_layers": 400}, "static kwarg mapping_layers=400: expected an integer in [0, 64]"),
    ({"latent_size": 2 ** 40}, "static kwarg latent_size=1099511627776: expected an integer in [1, 2048]"),
    ({"mapping_lrmul": float("nan")}, "mapping_lrmul=nan: expected a finite number"),
    ({"normalize_latents": "yes"}, "normalize_latents='yes': expected True or False"),
    ({"mapping_nonlinearity": ["lrelu"]}, "mapping_nonlinearity=['lrelu']: expected one of"),
    ({"dlatent_broadcast": 2.5}, "dlatent_broadcast=2.5: expected an integer"),
])
def test_bad_static_kwargs_are_one_line_errors_naming_the_file(tmp_path, kwargs, expected):
    path = mapping_pickle(tmp_path / "bad.pkl", **kwargs)
    with pytest.raises(StyleGANTLError) as err:
        load_network_pkl(path)
    message = str(err.value)
    assert message.startswith(f"{path}: network 'G_mapping': ") and expected in message, message
    assert "\n" not in message


def test_a_variable_missing_from_the_pickle_stops_construction_at_once(tmp_path):
    # 64 mapping layers of 2048 features would be 2 GB; the pickle holds only the first weight.
    path = mapping_pickle(tmp_path / "wide.pkl", {"Dense0/weight": np.zeros((2048, 2048), np.float32)},
                          mapping_layers=64, latent_size=2048, mapping_fmaps=2048, dlatent_size=2048)
    code = ("import resource, sys\nimport tensorflow as tf\n"
            "from stylegan_tl.errors import StyleGANTLError\nfrom stylegan_tl.network import load_network_pkl\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    load_network_pkl(sys.argv[1])\nexcept StyleGANTLError as e:\n    print(e)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"))
    message, grown = proc.stdout.splitlines()
    assert "variables missing from the pickle: Dense0_bias" in message, proc.stderr[-2000:]
    assert int(grown) < 250 * 2 ** 20, f"peak RSS grew by {int(grown) / 2**20:.0f} MB"


def test_variable_shapes_are_checked_as_each_variable_is_created(tmp_path):
    path = mapping_pickle(tmp_path / "shape.pkl", {"Dense0/weight": np.zeros((3, 3), np.float32)},
                          mapping_layers=1, latent_size=8, dlatent_size=8)
    with pytest.raises(StyleGANTLError, match=r"variable 'Dense0/weight': shape \[3, 3\] does not match \[8, 8\]"):
        load_network_pkl(path)
