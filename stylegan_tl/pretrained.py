"""Official NVIDIA checkpoints by short name, URL download into a cache. (Placeholder: being written.)"""

import os

from .errors import NetworkPickleError


def resolve_network_pkl(spec: str) -> str:
    """Return a local path for a path, URL or official short name (placeholder: paths only)."""
    if os.path.isfile(spec):
        return spec
    raise NetworkPickleError(f"{spec}: no such file")
