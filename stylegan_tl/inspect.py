"""Summary of an NVIDIA network pickle: family, resolution, parameter counts, static kwargs, variables.

Usage::

    python -m stylegan_tl.inspect PKL_OR_URL_OR_NAME [--novars]     # (--no-vars is also accepted)

Reads the pickle with the safe reader of :mod:`stylegan_tl.pickle_io` (nothing in it is executed)
and imports no TensorFlow. Errors print ``error: <message>`` and exit with status 2.
"""

import sys

import numpy as np
from absl import flags
from superres_tf import conventions

from .errors import StyleGANTLError
from .pickle_io import NetworkPickleError, detect_family, is_trainable, named_variables, read_network_pkl
from .pretrained import resolve_network_pkl


def _count(state, trainable_only: bool) -> int:
    """Number of parameters of a network and its components (NVIDIA's trainables only, or all)."""
    return sum(int(np.size(v)) for k, v in named_variables(state).items()
               if is_trainable(k.split("/")[-1]) or not trainable_only)


def _family(states) -> str:
    try:
        families = {detect_family(s) for s in states}
    except NetworkPickleError as e:
        return f"unsupported ({e})"
    return ", ".join(sorted(families))


def _networks(state, prefix=""):
    """(label, state) for a network and, recursively, its components."""
    yield prefix + state.name, state
    for comp in state.components.values():
        yield from _networks(comp, f"{prefix}{state.name}/")


def describe(spec, show_vars: bool = True) -> str:
    """The summary text for a path, URL or official name (see :func:`stylegan_tl.pretrained.resolve_network_pkl`)."""
    path = resolve_network_pkl(spec)
    roles = [(role, s) for role, s in zip(("G", "D", "Gs"), read_network_pkl(path)) if s is not None]
    states = [s for _, s in roles]
    first = states[-1]
    lines = [
        f"file:       {path}",
        f"family:     {_family(states)} (pickle version {', '.join(sorted({str(s.version) for s in states}))})",
        f"resolution: {first.static_kwargs.get('resolution', '1024 (default)')}",
        "",
        f"{'network':<8}{'build function':<50}{'trainable':>12}{'all vars':>12}",
    ]
    for role, s in roles:
        funcs = s.build_func_name + "".join(f", {c.build_func_name}" for c in s.components.values())
        lines.append(f"{role:<8}{funcs:<50}{_count(s, True):>12,}{_count(s, False):>12,}")
    lines += ["", "static kwargs (as pickled; missing ones take the build function's defaults):"]
    for _, s in roles:
        for label, net in _networks(s):
            lines.append(f"  {label}: " + ", ".join(f"{k}={v!r}" for k, v in net.static_kwargs.items()))
    if show_vars:
        for role, s in roles:
            lines += ["", f"variables of {role} ({s.name}):", f"  {'name':<48}{'shape':<22}trainable"]
            for name, value in named_variables(s).items():
                shape = str(list(np.shape(value)))
                lines.append(f"  {name:<48}{shape:<22}{'yes' if is_trainable(name.split('/')[-1]) else 'no'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """The command line (``argv`` without the program name; default ``sys.argv[1:]``); returns the exit code."""
    flag_values = flags.FlagValues()
    flags.DEFINE_bool("vars", True, "print the variable tables (--novars: omit them)", flag_values=flag_values)
    return conventions.main(sys.argv[1:] if argv is None else argv, flag_values,
                            lambda spec: [describe(spec, show_vars=flag_values.vars)],
                            "python -m stylegan_tl.inspect PKL [--novars]", num_args=1,
                            aliases={"--no-vars": "--novars"})


if __name__ == "__main__":
    sys.exit(main())
