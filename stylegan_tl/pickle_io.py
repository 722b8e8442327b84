"""Read and write NVIDIA's TF StyleGAN network pickles without TensorFlow and without executing them.

NVIDIA pickles hold a tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects whose pickled
state is a plain dict. We read them with a restricted unpickler that resolves only an allow-list of
globals and turns each ``Network`` into a :class:`NetworkState`. This module imports no TensorFlow.
"""

import collections
import dataclasses
import pickle
from typing import Any, Dict, Optional

import numpy as np

from .errors import NetworkPickleError


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


class _NetworkStub:
    """Stand-in for ``dnnlib.tflib.network.Network``: BUILD stores the state dict in ``__dict__``."""


_ALLOWED_GLOBALS = {
    ("dnnlib.tflib.network", "Network"): _NetworkStub,
    ("numpy.core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise NetworkPickleError(f"refused global {module}.{name}") from None


def _to_state(stub: _NetworkStub) -> NetworkState:
    d = dict(stub.__dict__)
    variables = collections.OrderedDict((str(k), np.asarray(v)) for k, v in d.pop("variables"))
    components = {k: _to_state(v) for k, v in dict(d.pop("components", {})).items()}
    return NetworkState(
        name=d.pop("name"),
        version=int(d.pop("version")),
        build_func_name=d.pop("build_func_name"),
        static_kwargs=dict(d.pop("static_kwargs")),
        variables=variables,
        components=components,
        build_module_src=d.pop("build_module_src", ""),
        extra=d,
    )


def read_network_pkl(path: str):
    """Read an NVIDIA network pickle. Returns ``(G, D, Gs)`` NetworkStates (preliminary version)."""
    with open(path, "rb") as f:
        obj = _RestrictedUnpickler(f, encoding="latin1").load()
    if isinstance(obj, _NetworkStub):
        return _to_state(obj)
    return tuple(_to_state(o) for o in obj)
