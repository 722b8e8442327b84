"""Fidelity: every array NVIDIA's own TF code produced for the fixtures is reproduced by our public API.

Each fixture directory in ``tests/fixtures/`` holds ``network.pkl`` (G, D, Gs), ``reference.npz`` and
``reference.json``; ``reference.json['arrays'][key]['call']`` says which call made each array (see
``tests/fixtures/README.md``). For every array we make the same call through the public API
(``load_network_pkl``, ``Gs.run``, ``Gs.components.mapping.run``, ``Gs.components.synthesis.run``,
``D.run``, ``G.run``; the truncated W+ through ``Gs.run(..., return_dlatents=True)``) with the same
inputs (taken from the npz) and kwargs, and require

    max|ours - ref| <= 1e-4 * max(1, max|ref|)        (no clipping: random weights exceed [-1, 1])

Progressive-growing arrays (``*_lod<v>``, in F's npz and A's ``reference_lod`` sidecar) are made with
the ``lod`` variables assigned (``Gs.vars['lod']``, ``Gs.vars['G_synthesis/lod']``, ``D.vars['lod']``)
and reset to 0 afterwards. Each array is its own test id: ``<config>/<key>``.
"""

import functools
import json
import pathlib
import re

import numpy as np
import pytest

from conftest import FIXTURES

TOLERANCE = 1e-4


def _reference_sets():
    """Yield (set_id, fixture_dir, json_name, npz_name) for every reference file pair."""
    for fixture_dir in sorted(p for p in pathlib.Path(FIXTURES).iterdir() if p.is_dir()):
        for stem, suffix in (("reference", ""), ("reference_lod", "-lod")):
            if (fixture_dir / f"{stem}.json").is_file():
                yield fixture_dir.name + suffix, fixture_dir, f"{stem}.json", f"{stem}.npz"


def _cases():
    cases = []
    for set_id, fixture_dir, json_name, npz_name in _reference_sets():
        with open(fixture_dir / json_name) as f:
            arrays = json.load(f)["arrays"]
        for key in arrays:
            cases.append(pytest.param(fixture_dir, json_name, npz_name, key, id=f"{set_id}/{key}"))
    return cases


@functools.lru_cache(maxsize=None)
def _networks(fixture_dir):
    """(G, D, Gs) loaded once per fixture through the public loader."""
    from stylegan_tl import load_network_pkl

    return load_network_pkl(str(fixture_dir / "network.pkl"))


@functools.lru_cache(maxsize=None)
def _reference(fixture_dir, json_name, npz_name):
    with open(fixture_dir / json_name) as f:
        meta = json.load(f)
    meta["_files"] = (json_name, npz_name)
    with np.load(fixture_dir / npz_name) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return meta, arrays


class _lod_set:
    """Context manager: assign value to the given lod variables, reset them to 0 on exit."""

    def __init__(self, variables, value):
        self.variables, self.value = variables, value

    def __enter__(self):
        for v in self.variables:
            v.assign(self.value)

    def __exit__(self, *exc):
        for v in self.variables:
            v.assign(0.0)


def _positional_args(call, inputs, arrays):
    """Positional inputs of a ``X.run(a, None, kw=...)`` call string: npz arrays or None."""
    start = call.index("(") + 1
    names = iter(inputs)
    args = []
    for token in (t.strip() for t in call[start:call.index(")", start)].split(",")):
        if "=" in token:
            break
        args.append(None if token == "None" else arrays[next(names)])
    return args


def _truncated_dlatents(Gs, z, kwargs):
    """W+ after truncation, as fed to the synthesis network ([N, num_layers, w_dim])."""
    return Gs.run(z, None, return_dlatents=True, **kwargs)[1]


_RUN = re.compile(r"^(Gs|G|D)((?:\.components\.(?:mapping|synthesis))?)\.run\(")
_LOD_G = re.compile(r"with Gs vars 'lod' and 'G_synthesis/lod' set to ([0-9.]+)")
_LOD_D = re.compile(r"with D var 'lod' set to ([0-9.]+)")
_INPUT = re.compile(r"^np\.random\.RandomState\((\d+)\)\.randn\(")
_MIX = re.compile(r"^np\.stack\(\[concat\((\w+)\[0, :k\], \w+\[1, k:\]\) for k in \[([0-9, ]+)\]\]\)")


def _compute(fixture_dir, meta, arrays, key):
    """Make the call that ``meta['arrays'][key]['call']`` names, through the public API."""
    entry = meta["arrays"][key]
    call, kwargs, inputs = entry["call"], dict(entry.get("kwargs") or {}), entry.get("inputs") or []
    m = _INPUT.match(call)
    if m:  # an input array: check we regenerate it from its seed
        return np.random.RandomState(int(m.group(1))).randn(*entry["shape"]).astype(np.float32)
    G, D, Gs = _networks(fixture_dir)
    nets = {"G": G, "D": D, "Gs": Gs}
    m = _MIX.match(call)
    if m:  # style mixing of OUR truncated W+ of two samples at the cutoffs listed
        w = _computed(fixture_dir, meta["_files"], m.group(1))
        ks = [int(k) for k in m.group(2).split(",")]
        return np.stack([np.concatenate([w[0, :k], w[1, k:]]) for k in ks])
    m = re.match(r"^Gs\.get_var\('(\w+)'\)$", call)
    if m:
        return Gs.vars[m.group(1)].numpy()
    if call.startswith("tensor ") and "G_synthesis/dlatents_in" in call and "Gs.get_output_for" in call:
        return _truncated_dlatents(Gs, arrays[inputs[0]], kwargs)
    m = _RUN.match(call)
    if m:
        net = nets[m.group(1)]
        if m.group(2):
            net = getattr(net.components, m.group(2).rsplit(".", 1)[1])
        args = _positional_args(call, inputs, arrays)
        lod_vars, lod = [], 0.0
        lod_g, lod_d = _LOD_G.search(call), _LOD_D.search(call)
        if lod_g:
            lod_vars, lod = [Gs.vars["lod"], Gs.vars["G_synthesis/lod"]], float(lod_g.group(1))
        elif lod_d:
            lod_vars, lod = [D.vars["lod"]], float(lod_d.group(1))
        with _lod_set(lod_vars, lod):
            return net.run(*args, **kwargs)
    raise AssertionError(f"{key}: unrecognised reference call {call!r}")


@functools.lru_cache(maxsize=None)
def _computed(fixture_dir, files, key):
    """Our value of one reference array (cached: style mixing reuses the truncated W+)."""
    meta, arrays = _reference(fixture_dir, *files)
    return np.asarray(_compute(fixture_dir, meta, arrays, key))


@pytest.mark.parametrize("fixture_dir,json_name,npz_name,key", _cases())
def test_reference_array(fixture_dir, json_name, npz_name, key):
    meta, arrays = _reference(fixture_dir, json_name, npz_name)
    ref = arrays[key]
    ours = _computed(fixture_dir, (json_name, npz_name), key)
    assert ours.shape == ref.shape, f"{key}: shape {ours.shape} != reference {ref.shape}"
    assert np.all(np.isfinite(ours)), f"{key}: non-finite values"
    err = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    bound = TOLERANCE * max(1.0, float(np.max(np.abs(ref))))
    assert err <= bound, f"{key}: max|ours - ref| = {err:.3g} > {bound:.3g} (call: {meta['arrays'][key]['call']})"
