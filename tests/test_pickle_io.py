"""read_network_pkl / write_network_pkl / detect_family on NVIDIA's reference pickles (tests/fixtures)."""

import dataclasses
import json
import os
import pickle
import pickletools
import stat
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from conftest import FIXTURES
from stylegan_tl.errors import NetworkPickleError
from stylegan_tl.pickle_io import (NetworkState, detect_family, is_trainable, named_variables, read_network_pkl,
                                   write_network_pkl)
from test_hostile_pickles import Net, dumps_nvidia, net

CONFIGS = sorted(p.name for p in FIXTURES.iterdir() if (p / "network.pkl").exists())
FAMILY = {"A_v1_r32": "stylegan", "B_v2_skip_resnet_r32": "stylegan2", "C_v2_orig_orig_r16": "stylegan2",
          "F_v1_r32_fused": "stylegan", "G_ada_r32": "stylegan2-ada"}
NVIDIA_GLOBALS = {("dnnlib.tflib.network", "Network"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar")}


def load(config):
    return read_network_pkl(FIXTURES / config / "network.pkl")


def reference(config):
    return json.loads((FIXTURES / config / "reference.json").read_text())


def pickle_globals(data: bytes) -> set:
    """(module, name) of every GLOBAL / STACK_GLOBAL in a pickle, following the memo for strings."""
    found, memo, pushed = set(), {}, []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            pushed.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1]
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = pushed[-1]
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            pushed.append(memo[arg])
        elif op.name != "FRAME":
            if op.name == "STACK_GLOBAL":
                found.add(tuple(pushed[-2:]))
            elif op.name == "GLOBAL":
                found.add(tuple(arg.split(" ")))
            pushed.append(None)  # some other value (or none): not a string
    return found


def assert_states_equal(a: NetworkState, b: NetworkState):
    for field in dataclasses.fields(NetworkState):
        if field.name not in ("variables", "components"):
            assert getattr(a, field.name) == getattr(b, field.name), field.name
    assert list(a.variables) == list(b.variables)
    for name, value in a.variables.items():
        other = b.variables[name]
        assert value.dtype == other.dtype and value.shape == other.shape and value.tobytes() == other.tobytes()
    assert list(a.components) == list(b.components)
    for key in a.components:
        assert_states_equal(a.components[key], b.components[key])


# ---------------------------------------------------------------------------------------------
# Reading the reference pickles


@pytest.mark.parametrize("config", CONFIGS)
def test_variables_match_reference_json(config):
    ref = reference(config)["networks"]

    def check(state, net_ref):
        assert state.name == net_ref["name"] and state.build_func_name == net_ref["build_func_name"]
        assert state.static_kwargs == net_ref["static_kwargs"]
        assert [v[0] for v in net_ref["own_vars"]] == list(state.variables)
        for name, shape, trainable, dtype, total, mean_abs in net_ref["own_vars"]:
            value = state.variables[name]
            assert isinstance(value, np.ndarray) and list(value.shape) == shape and value.dtype == dtype
            assert is_trainable(name) == trainable, name
            assert value.astype(np.float64).sum() == pytest.approx(total, rel=1e-9, abs=1e-9)
            assert np.abs(value.astype(np.float64)).mean() == pytest.approx(mean_abs, rel=1e-9)
        trainables = sum(v.size for k, v in named_variables(state).items() if is_trainable(k.split("/")[-1]))
        assert trainables == net_ref["num_trainable_params"]
        assert set(state.components) == set(net_ref.get("components", {}))
        for key, comp in state.components.items():
            check(comp, net_ref["components"][key])

    for state, role in zip(load(config), ("G", "D", "Gs")):
        check(state, ref[role])


@pytest.mark.parametrize("config", CONFIGS)
def test_family_version_and_extras(config):
    G, D, Gs = load(config)
    assert {detect_family(G), detect_family(D), detect_family(Gs)} == {FAMILY[config]}
    assert G.version == reference(config)["files"]["network.pkl"]["state_version"]
    if FAMILY[config] == "stylegan2-ada":
        assert Gs.extra["input_names"] == ["latents_in", "labels_in"]
        assert D.extra["output_shapes"] == [[None, 1]]
    else:
        assert Gs.extra == {}
    assert Gs.build_module_src == "# source omitted from this fixture\n"


def test_scalars_are_0d_float32_arrays():
    G, D, Gs = load("A_v1_r32")
    lod = Gs.components["synthesis"].variables["lod"]
    assert isinstance(lod, np.ndarray) and lod.shape == () and lod.dtype == np.float32


def test_named_variables_use_nvidia_full_names():
    _, _, Gs = load("B_v2_skip_resnet_r32")
    names = list(named_variables(Gs))
    assert names[:2] == ["lod", "dlatent_avg"]
    assert "G_mapping/Dense0/weight" in names and "G_synthesis/4x4/Conv/weight" in names
    assert names.index("G_synthesis/noise0") < names.index("G_mapping/Dense0/weight")  # synthesis first, like NVIDIA


def test_reading_emits_no_numpy_deprecation_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for config in CONFIGS:
            load(config)


def test_pickle_io_imports_no_tensorflow():
    code = "import stylegan_tl.pickle_io, stylegan_tl.pretrained, sys; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=FIXTURES.parent.parent)


def test_single_network_pickles(tmp_path):
    path = tmp_path / "one.pkl"
    path.write_bytes(dumps_nvidia(net()))
    assert read_network_pkl(path)[0] is None and read_network_pkl(path)[1].name == "D"
    path.write_bytes(dumps_nvidia(net(name="Gs", build_func_name="G_main")))
    G, D, Gs = read_network_pkl(path)
    assert G is None and D is None and Gs.name == "Gs"


def test_version2_state_without_components(tmp_path):
    old = net(version=2)
    del old.state["components"]  # NVIDIA's loaders default it to {}
    path = tmp_path / "v2.pkl"
    path.write_bytes(dumps_nvidia(old))
    D = read_network_pkl(path)[1]
    assert D.version == 2 and D.components == {}
    assert read_network_pkl(write_network_pkl(tmp_path / "out.pkl", None, D, None))[1].components == {}


def test_protocol5_pickles_from_modern_numpy_load(tmp_path):
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "p5.pkl"
    path.write_bytes(dumps_nvidia(net(variables=[("w", weight), ("lod", np.float32(0.5))]), protocol=5))
    assert (b"numpy._core" in path.read_bytes()) == np.__version__.startswith("2")
    D = read_network_pkl(path)[1]
    assert np.array_equal(D.variables["w"], weight) and D.variables["lod"] == 0.5


def test_big_endian_arrays_load_as_native(tmp_path):
    path = tmp_path / "be.pkl"
    path.write_bytes(dumps_nvidia(net(variables=[("w", np.arange(3, dtype=">f4"))])))
    w = read_network_pkl(path)[1].variables["w"]
    assert w.dtype == np.float32 and w.dtype.isnative and list(w) == [0, 1, 2]


def test_easydict_static_kwargs_become_plain_dicts(tmp_path):
    data = dumps_nvidia(net(static_kwargs={"resolution": 4}))
    data = data.replace(b"}", b"cdnnlib.util\nEasyDict\n)\x81", 1)  # first EMPTY_DICT (the state) -> EasyDict()
    path = tmp_path / "easydict.pkl"
    path.write_bytes(data)
    D = read_network_pkl(path)[1]
    assert type(D.static_kwargs) is dict and D.static_kwargs == {"resolution": 4}


# ---------------------------------------------------------------------------------------------
# Errors: one line, naming the file


def _torch_like_pickle():
    """What stylegan2-ada-pytorch writes: a dict whose networks are rebuilt by torch_utils.persistence."""
    return (b"\x80\x02}q\x00X\x01\x00\x00\x00Gq\x01ctorch_utils.persistence\n_reconstruct_persistent_obj\n"
            b"q\x02}q\x03\x85q\x04Rq\x05s.")


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    (b"", "empty file"),
    (b"hello, this is text\n", "not a pickle"),
    (b"\x89PNG\r\n\x1a\n", "not a pickle"),
    (b"PK\x03\x04rest-of-zip", "PyTorch torch.save checkpoint"),
    (pickle.dumps({"a": 1}), "not a StyleGAN network pickle (it holds a dict"),
    (pickle.dumps([1, 2, 3]), "not a StyleGAN network pickle (it holds a list"),
    (_torch_like_pickle(), "this is a PyTorch stylegan2-ada-pytorch pickle, not a TF one"),
    (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n.", "this is a PyTorch stylegan2-ada-pytorch pickle"),
    (dumps_nvidia(net(version=6)), "unknown network pickle version 6"),
    (dumps_nvidia(net(version="4")), "unknown network pickle version '4'"),
    (dumps_nvidia(net(version=True)), "unknown network pickle version True"),
    (dumps_nvidia((net(), net())), "it holds a tuple of 2"),
    (dumps_nvidia(Net(version=4, name="D")), "lacks static_kwargs, build_module_src, build_func_name, variables"),
    (dumps_nvidia(net(name=3)), "'name' is a int"),
    (dumps_nvidia(net(static_kwargs=[1])), "'static_kwargs' is not a dict"),
    (dumps_nvidia(net(components={"mapping": 5})), "expected a dnnlib.tflib.network.Network"),
    (dumps_nvidia(net(variables={"w": 1})), "'variables' is a dict, expected a list"),
    (dumps_nvidia(net(variables=[("w",)])), "variables[0] is not a (name, array) pair"),
    (dumps_nvidia(net(variables=[("w", np.ones(1)), ("w", np.ones(1))])), "variable 'w' appears twice"),
    (dumps_nvidia(net(static_kwargs={"x": {1, 2}})), "unexpected set value"),
])
def test_read_errors(tmp_path, content, expected):
    path = tmp_path / "bad.pkl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(NetworkPickleError) as err:
        read_network_pkl(path)
    message = str(err.value)
    assert expected in message and message.startswith(str(path)) and "\n" not in message


def test_truncated_fixture(tmp_path):
    data = (FIXTURES / "C_v2_orig_orig_r16" / "network.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    for cut in (len(data) // 2, len(data) - 1, 100):
        path.write_bytes(data[:cut])
        with pytest.raises(NetworkPickleError, match="truncated"):
            read_network_pkl(path)


def test_directory_is_an_error(tmp_path):
    with pytest.raises(NetworkPickleError, match="is a directory"):
        read_network_pkl(tmp_path)


# ---------------------------------------------------------------------------------------------
# detect_family


def _state(build_func_name, version=4, **components):
    return NetworkState(name="G", version=version, build_func_name=build_func_name, static_kwargs={},
                        variables={}, components=components)


@pytest.mark.parametrize("state, family", [
    (_state("G_style", 4, synthesis=_state("G_synthesis"), mapping=_state("G_mapping")), "stylegan"),  # config-a
    (_state("D_basic", 3), "stylegan"),
    (_state("G_synthesis", 4), "stylegan"),
    (_state("G_main", 4, synthesis=_state("G_synthesis_stylegan2")), "stylegan2"),
    (_state("G_main", 5, synthesis=_state("G_synthesis", 5)), "stylegan2-ada"),
])
def test_detect_family(state, family):
    assert detect_family(state) == family


@pytest.mark.parametrize("state, expected", [
    (_state("G_main", 4, synthesis=_state("G_synthesis_stylegan_revised")), "G_synthesis_stylegan_revised"),
    (_state("D_stylegan", 4), "D_stylegan (StyleGAN2 configs B-D)"),
    (_state("G_paper", 2), "unknown build function(s) G_paper"),
    (_state("D_main", 4), "unknown build function(s) D_main"),
])
def test_detect_family_errors(state, expected):
    with pytest.raises(NetworkPickleError) as err:
        detect_family(state)
    assert expected in str(err.value)


# ---------------------------------------------------------------------------------------------
# Writing


@pytest.mark.parametrize("config", CONFIGS)
def test_round_trip_is_byte_identical(tmp_path, config):
    original = FIXTURES / config / "network.pkl"
    out = tmp_path / "out.pkl"
    assert write_network_pkl(out, *read_network_pkl(original)) == str(out)
    for a, b in zip(read_network_pkl(original), read_network_pkl(out)):
        assert_states_equal(a, b)
    if np.__version__.startswith("2"):  # numpy 1.x names its helpers differently: same content, other bytes
        assert out.read_bytes() == original.read_bytes()


def test_written_pickles_get_the_usual_permissions(tmp_path):
    out = tmp_path / "out.pkl"
    old_mask = os.umask(0o022)
    try:
        write_network_pkl(out, *load(CONFIGS[0]))
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's owner-only 0o600


@pytest.mark.parametrize("config", CONFIGS)
def test_written_pickles_use_only_nvidia_globals_and_protocol(tmp_path, config):
    out = tmp_path / "out.pkl"
    write_network_pkl(out, *load(config))
    data = out.read_bytes()
    assert pickle_globals(pickle.dumps((print, [np.sum]), 4)) == {("builtins", "print"), ("numpy", "sum")}
    assert pickle_globals(data) == NVIDIA_GLOBALS
    assert data[1] == (3 if FAMILY[config] == "stylegan2-ada" else 4)


NVIDIA_LIKE_LOADER = '''
import numpy as np

class Network:
    """Checks a state the way NVIDIA's Network.__setstate__ does before it rebuilds the graph."""

    def __setstate__(self, state):
        assert state["version"] in [2, 3, 4, 5], state["version"]
        for key in ("name", "static_kwargs", "components", "build_module_src", "build_func_name", "variables"):
            assert key in state, key
        assert isinstance(state["static_kwargs"], dict) and isinstance(state["build_module_src"], str)
        assert isinstance(state["components"], dict) and isinstance(state["variables"], list)
        assert all(isinstance(c, Network) for c in state["components"].values())
        for name, value in state["variables"]:
            assert isinstance(name, str) and isinstance(value, (np.ndarray, np.generic)), name
            assert (value.ndim == 0) == isinstance(value, np.generic), name  # scalars as TF's session.run gives them
        self.state = state
'''


def test_our_pickles_load_in_an_nvidia_like_loader(tmp_path):
    """Plain pickle.load(encoding='latin1') with a stand-in dnnlib, in a process without stylegan_tl."""
    package = tmp_path / "dnnlib" / "tflib"
    package.mkdir(parents=True)
    (tmp_path / "dnnlib" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "network.py").write_text(NVIDIA_LIKE_LOADER)
    paths, sums = [], []
    for config in CONFIGS:
        G, D, Gs = load(config)
        Gs.variables["dlatent_avg"] += 1  # a fine-tuned snapshot
        paths.append(write_network_pkl(tmp_path / f"{config}.pkl", G, D, Gs))
        sums.append(repr(float(Gs.variables["dlatent_avg"].sum())))
    script = textwrap.dedent("""
        import pickle, sys, warnings
        warnings.simplefilter("error")
        for path in sys.argv[1:]:
            with open(path, "rb") as f:
                G, D, Gs = pickle.load(f, encoding="latin1")
            assert Gs.state["components"]["synthesis"].state["name"] == "G_synthesis"
            print(repr(float(dict(Gs.state["variables"])["dlatent_avg"].sum())))
        assert not any(m.startswith("stylegan_tl") for m in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script, *paths], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == sums


def test_write_single_network_and_component_order(tmp_path):
    _, D, Gs = load("C_v2_orig_orig_r16")
    Gs.components = {"mapping": Gs.components["mapping"], "synthesis": Gs.components["synthesis"]}
    Gs.build_module_src = "# our own source\n"
    path = write_network_pkl(tmp_path / "gs.pkl", None, None, Gs)
    G2, D2, Gs2 = read_network_pkl(path)
    assert G2 is None and D2 is None
    assert list(Gs2.components) == ["synthesis", "mapping"]  # NVIDIA's order
    assert Gs2.build_module_src == "# our own source\n"
    assert read_network_pkl(write_network_pkl(tmp_path / "d.pkl", None, D, None))[1].name == "D"


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.static_kwargs.update(f=print), "NVIDIA network pickles hold only"),
    (lambda s: s.variables.update(w=np.array([None])), "variable 'w' has dtype object"),
    (lambda s: setattr(s, "version", 7), "unknown network pickle version 7"),
])
def test_write_errors_leave_existing_file_untouched(tmp_path, change, expected):
    _, D, _ = load("C_v2_orig_orig_r16")
    path = tmp_path / "keep.pkl"
    path.write_bytes(b"precious")
    change(D)
    with pytest.raises(NetworkPickleError) as err:
        write_network_pkl(path, None, D, None)
    assert expected in str(err.value) and str(path) in str(err.value)
    assert path.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.pkl"]


def test_write_needs_one_or_three_networks(tmp_path):
    G, D, _ = load("C_v2_orig_orig_r16")
    with pytest.raises(NetworkPickleError, match="needs G, D and Gs, or exactly one network"):
        write_network_pkl(tmp_path / "x.pkl", G, D, None)
    with pytest.raises(NetworkPickleError, match="protocol 5"):
        write_network_pkl(tmp_path / "x.pkl", None, D, None, protocol=5)
