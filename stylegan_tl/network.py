"""``Network``: NVIDIA-like facade (``run``, ``components``, ``vars``, ``clone``, ...) over the TF2 modules.

Everything public is NCHW float32 like NVIDIA's ``dnnlib.tflib.Network``; the architecture modules
(``arch_v1``, ``arch_v2``, ``arch_ada``) compute in NHWC inside. See ``docs/networks.md``.

Example::

    G, D, Gs = load_network_pkl('network.pkl')          # path, URL or official short name
    images = Gs.run(z, None, truncation_psi=0.7, randomize_noise=False, minibatch_size=8,
                    output_transform=dict(func=convert_images_to_uint8, nchw_to_nhwc=True))
"""

import collections
import contextlib
import copy
import importlib
import math

import numpy as np
import tensorflow as tf
from superres_tf.conventions import StatusLine

from . import pickle_io, pretrained
from .errors import StyleGANTLError
from .ops import ACTIVATIONS

FAMILIES = ("stylegan", "stylegan2", "stylegan2-ada")
_ARCH_MODULES = {"stylegan": "arch_v1", "stylegan2": "arch_v2", "stylegan2-ada": "arch_ada"}
_VERSIONS = {"stylegan": 3, "stylegan2": 4, "stylegan2-ada": 5}
_TOP_FUNCS = {("stylegan", "G"): "G_style", ("stylegan", "D"): "D_basic",
              ("stylegan2", "G"): "G_main", ("stylegan2", "D"): "D_stylegan2",
              ("stylegan2-ada", "G"): "G_main", ("stylegan2-ada", "D"): "D_main"}
_SYNTHESIS_FUNCS = {"stylegan": "G_synthesis", "stylegan2": "G_synthesis_stylegan2", "stylegan2-ada": "G_synthesis"}
# Named arguments of NVIDIA's top-level generators; every other G kwarg is forwarded to the components.
_G_OWN_KWARGS = frozenset({
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val", "dlatent_avg_beta",
    "style_mixing_prob", "is_training", "is_validation", "return_dlatents", "is_template_graph", "components",
    "mapping_func", "synthesis_func"})
PLACEHOLDER_SRC = ("# Network built by stylegan_tl (no NVIDIA source embedded). NVIDIA's own loader re-executes\n"
                   "# this source, so only pickles that came from NVIDIA's code load there.\n")


def _arch_class(family, build_func_name):
    """The tf.Module class for NVIDIA build function ``build_func_name`` of ``family`` (lazy import)."""
    if family not in _ARCH_MODULES:
        raise StyleGANTLError(f"unknown network family {family!r} (expected one of {', '.join(FAMILIES)})")
    module = importlib.import_module(f".{_ARCH_MODULES[family]}", __package__)
    cls = getattr(module, build_func_name, None)
    if not (isinstance(cls, type) and issubclass(cls, tf.Module)):
        raise StyleGANTLError(f"{family}: no network for build function {build_func_name!r}")
    return cls


class Components(dict):
    """``components`` dict with attribute access (``G.components.mapping``), like NVIDIA's EasyDict."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _freeze(value):
    """A hashable cache key for a kwarg value."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (np.ndarray, tf.Tensor, tf.Variable)):
        raise StyleGANTLError("Network.run: dynamic kwargs must be Python values (use get_output_for for tensors)")
    return value


# ----------------------------------------------------------------------------------------------
# Static kwargs: the type and range of every value a pickle may set, checked before anything is built
# (bounds generous around NVIDIA's networks: <= 1024 px, <= 512 feature maps, 8 mapping layers).

_SIZE_KWARGS = {
    "resolution": (4, 8192), "num_channels": (1, 16), "label_size": (0, 10_000), "latent_size": (1, 2048),
    "dlatent_size": (1, 2048), "mapping_fmaps": (1, 2048), "label_fmaps": (1, 2048), "mapping_layers": (0, 64),
    "fmap_base": (1, 1 << 20), "fmap_max": (1, 1024), "fmap_min": (1, 1024), "fmap_const": (1, 1024),
    "dlatent_broadcast": (1, 64), "mbstd_group_size": (0, 1024), "mbstd_num_features": (0, 64),
    "num_fp16_res": (0, 16), "freeze_layers": (0, 64), "score_size": (1, 1024), "score_max": (1, 1024),
    "pagan_num": (0, 1024), "truncation_cutoff": (0, 64), "truncation_cutoff_val": (0, 64)}
_REAL_KWARGS = frozenset({"mapping_lrmul", "fmap_decay", "truncation_psi", "truncation_psi_val", "dlatent_avg_beta",
                          "style_mixing_prob", "conv_clamp", "augment_strength", "adaptive_dropout", "pagan_fade"})
_CHOICE_KWARGS = {"architecture": ("orig", "skip", "resnet"), "nonlinearity": tuple(ACTIVATIONS),
                  "mapping_nonlinearity": tuple(ACTIVATIONS), "dtype": ("float32", "float16"),
                  "structure": ("auto", "fixed", "linear", "recursive"), "fused_scale": (True, False, "auto")}
_NAME_KWARGS = frozenset({"mapping_func", "synthesis_func"})
_FILTER_KWARGS = frozenset({"resample_kernel", "blur_filter"})
_FLAG_KWARGS = frozenset({
    "normalize_latents", "randomize_noise", "fused_modconv", "use_noise", "is_training", "is_validation",
    "return_dlatents", "is_template_graph", "use_styles", "const_input_layer", "use_wscale", "use_pixel_norm",
    "use_instance_norm", "force_clean_graph", "use_pagan", "use_spectral_norm"})
_NONE_OK = frozenset({"mapping_fmaps", "label_fmaps", "fmap_const", "dlatent_broadcast", "mbstd_group_size",
                      "conv_clamp", "truncation_psi", "truncation_cutoff", "truncation_psi_val",
                      "truncation_cutoff_val", "dlatent_avg_beta", "style_mixing_prob", "blur_filter",
                      "resample_kernel"})
KNOWN_KWARGS = (frozenset(_SIZE_KWARGS) | _REAL_KWARGS | frozenset(_CHOICE_KWARGS) | _NAME_KWARGS | _FILTER_KWARGS
                | _FLAG_KWARGS)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return (_is_int(value) or isinstance(value, (float, np.floating))) and abs(float(value)) <= 1e6


def _kwarg_problem(name, value):
    """What is wrong with static kwarg ``name=value`` (a phrase), or None. Unknown names pass (the
    architecture names them)."""
    if value is None and name in _NONE_OK:
        return None
    if name in _SIZE_KWARGS:
        low, high = _SIZE_KWARGS[name]
        return None if _is_int(value) and low <= value <= high else f"expected an integer in [{low}, {high}]"
    if name in _REAL_KWARGS:
        return None if _is_real(value) else "expected a finite number"
    if name in _CHOICE_KWARGS:
        ok = any(type(value) is type(c) and value == c for c in _CHOICE_KWARGS[name])
        return None if ok else f"expected one of {', '.join(map(repr, _CHOICE_KWARGS[name]))}"
    if name in _NAME_KWARGS:
        return None if isinstance(value, str) and len(value) <= 64 else "expected a build function name"
    if name in _FILTER_KWARGS:
        ok = isinstance(value, (list, tuple)) and 1 <= len(value) <= 16 and all(map(_is_real, value))
        return None if ok else "expected a list of 1 to 16 numbers"
    if name in _FLAG_KWARGS:
        return None if isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1)) else "expected True or False"
    return None


def _check_static_kwargs(kwargs, where):
    """Raise StyleGANTLError naming ``where`` and the first static kwarg of the wrong type or range."""
    for name, value in kwargs.items():
        problem = _kwarg_problem(name, value)
        if problem:
            shown = f"<{value.bit_length()}-bit integer>" if _is_int(value) and int(value).bit_length() > 64 else repr(value)
            raise StyleGANTLError(f"{where}: static kwarg {name}={shown[:60]}: {problem}")


@contextlib.contextmanager
def _only_pickled_variables(values, where):
    """While active, creating a variable the pickle lacks (``values``: local name -> array) or with
    another shape raises StyleGANTLError, so a network that does not match its pickle stops at its
    first variable instead of allocating all of them."""
    by_tf_name = {name.replace("/", "_"): name for name in values}

    def creator(next_creator, **kwargs):
        name = by_tf_name.get(kwargs.get("name"))
        if name is None:
            raise StyleGANTLError(f"{where}: variables missing from the pickle: "
                                  f"{kwargs.get('name')} (and maybe more)")
        shape = list(np.shape(kwargs.get("initial_value")))
        if shape != list(np.shape(values[name])):
            raise StyleGANTLError(f"{where}: variable {name!r}: shape {list(np.shape(values[name]))} does not "
                                  f"match {shape}")
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        yield


class Network:
    """One NVIDIA network (G, Gs, D, or a G component) over an architecture ``tf.Module``.

    Attributes:
        name, family ('stylegan' | 'stylegan2' | 'stylegan2-ada'), version (pickle state version),
        build_func_name, static_kwargs (as pickled: NOT completed with defaults), module (the tf.Module),
        components (``.mapping``, ``.synthesis`` Networks for generators), vars / trainables
        (OrderedDict NVIDIA full name -> tf.Variable: own names, then ``<component name>/<local>``).
    """

    def __init__(self, module, family, name, version, build_func_name, static_kwargs, components=None,
                 build_module_src=PLACEHOLDER_SRC, extra=None):
        self.module, self.family, self.name, self.version = module, family, name, version
        self.build_func_name, self.static_kwargs = build_func_name, dict(static_kwargs)
        self.components = Components(components or {})
        self.build_module_src, self.extra = build_module_src, dict(extra or {})
        self.vars = collections.OrderedDict(module.own_vars)
        for comp in self.components.values():
            self.vars.update((f"{comp.name}/{k}", v) for k, v in comp.vars.items())
        self.trainables = collections.OrderedDict((k, v) for k, v in self.vars.items() if v.trainable)
        self._run_fns = {}

    def __repr__(self):
        return f"<Network {self.name} {self.family} {self.build_func_name} ({len(self.vars)} variables)>"

    # ----------------------------------------------------------------------------------------------
    # Construction.

    @classmethod
    def from_state(cls, state, where=None):
        """Build from a ``pickle_io.NetworkState``; every pickled variable must be used, shapes must match.

        Args:
            state: the NetworkState (with components for generators).
            where: file name for error messages.
        """
        where = where or state.name
        family = pickle_io.detect_family(state)
        components = {key: cls._from_state_in_family(comp, family, where, {})
                      for key, comp in state.components.items()}
        return cls._from_state_in_family(state, family, where, components)

    @classmethod
    def _from_state_in_family(cls, state, family, where, components):
        arch = _arch_class(family, state.build_func_name)
        _check_static_kwargs(state.static_kwargs, f"{where}: network {state.name!r}")
        try:
            with _only_pickled_variables(state.variables, f"{where}: network {state.name!r}"):
                module = arch(state.static_kwargs, state.name, **{k: c.module for k, c in components.items()})
        except StyleGANTLError as e:
            message = str(e)
            raise StyleGANTLError(message if message.startswith(f"{where}: ") else
                                  f"{where}: network {state.name!r}: {message}") from None
        _assign_state_variables(module.own_vars, state.variables, f"{where}: network {state.name!r}")
        return cls(module, family, state.name, state.version, state.build_func_name, state.static_kwargs,
                   components, state.build_module_src, state.extra)

    @classmethod
    def from_config(cls, family, kind="G", resolution=1024, seed=0, **static_kwargs):
        """A fresh network with NVIDIA's initialisation (seeded), built like NVIDIA's training loop:
        ``Network(kind, func_name=<family's G/D>, num_channels=3, resolution=R, label_size=0, **kwargs)``.

        Args:
            family: 'stylegan', 'stylegan2' or 'stylegan2-ada'. kind: 'G' or 'D'.
            resolution: output / input resolution (power of two).
            seed: initialisation seed (G's components use seed+1, seed+2).
            static_kwargs: NVIDIA build-function kwargs (fmap_base, architecture, label_size, ...).
        """
        if (family, kind) not in _TOP_FUNCS:
            raise StyleGANTLError(f"from_config: unknown family/kind {family!r}/{kind!r} "
                                  f"(families {', '.join(FAMILIES)}; kinds G, D)")
        func = _TOP_FUNCS[(family, kind)]
        kwargs = dict(num_channels=3, resolution=resolution, label_size=0)
        kwargs.update(static_kwargs)
        _check_static_kwargs(kwargs, f"from_config({family!r}, {kind!r})")
        module = _arch_class(family, func)(kwargs, kind, seed=seed)
        components = {}
        if kind == "G":
            forwarded = {k: v for k, v in kwargs.items() if k not in _G_OWN_KWARGS}
            # W broadcast count as the generator built it (v1 with use_styles=False: 1).
            broadcast = module.num_layers
            comps = (("synthesis", _SYNTHESIS_FUNCS[family], module.synthesis, forwarded),
                     ("mapping", "G_mapping", module.mapping, dict(forwarded, dlatent_broadcast=broadcast)))
            for key, comp_func, comp_module, comp_kwargs in comps:
                components[key] = cls(comp_module, family, f"G_{key}", _VERSIONS[family], comp_func, comp_kwargs)
        net = cls(module, family, kind, _VERSIONS[family], func, kwargs, components)
        if family == "stylegan2-ada":
            net._set_ada_io_extra()
        return net

    def _set_ada_io_extra(self):
        """ADA (version 5) states also record input/output shapes and names."""
        names = {"G": (["latents_in", "labels_in"], ["images_out"]),
                 "mapping": (["latents_in", "labels_in"], ["dlatents_out"]),
                 "synthesis": (["dlatents_in"], ["images_out"]),
                 "D": (["images_in", "labels_in"], ["scores_out"])}
        for key, comp in self.components.items():
            comp._set_ada_io_extra()
        role = self._role()
        self.extra.update(input_shapes=self.input_shapes, output_shapes=[self.output_shape],
                          input_names=names[role][0], output_names=names[role][1])

    def _role(self):
        if self.build_func_name == _SYNTHESIS_FUNCS[self.family]:
            return "synthesis"
        if self.build_func_name == "G_mapping":
            return "mapping"
        return "D" if self.build_func_name.startswith("D") else "G"

    # ----------------------------------------------------------------------------------------------
    # Shapes.

    @property
    def input_shapes(self):
        """NVIDIA's input shapes, e.g. ``[[None, 512], [None, 0]]`` for G / mapping."""
        role, k = self._role(), self.module.kwargs
        if role == "synthesis":
            return [[None, 2 * int(math.log2(k["resolution"])) - 2, k["dlatent_size"]]]
        if role == "G":
            return self.components.mapping.input_shapes
        if role == "D":
            return [[None, k["num_channels"], k["resolution"], k["resolution"]], [None, k["label_size"]]]
        return [[None, k["latent_size"]], [None, k["label_size"]]]

    @property
    def input_shape(self):
        """The first input's shape (``Gs.input_shape[1]`` is the latent size)."""
        return self.input_shapes[0]

    @property
    def output_shape(self):
        """NVIDIA's first output shape: images ``[None, C, R, R]``, dlatents ``[None, L, w]`` or ``[None, 1]``."""
        role, k = self._role(), self.module.kwargs
        if role == "G":
            return self.components.synthesis.output_shape
        if role == "synthesis":
            return [None, k["num_channels"], k["resolution"], k["resolution"]]
        if role == "mapping":
            return [None, k["dlatent_broadcast"], k["dlatent_size"]]
        return [None, k.get("score_size", 1)]

    # ----------------------------------------------------------------------------------------------
    # Evaluation.

    def get_output_for(self, *inputs, **dynamic_kwargs):
        """Call the network on tensors (inside tf.function / GradientTape; differentiable to 2nd order).

        Inputs and outputs as NVIDIA's: NCHW images, ``[N, L, w]`` dlatents, ``[N, 1]`` scores; labels may be None.
        """
        return self.module(*inputs, **dynamic_kwargs)

    def _run_fn(self, specs, dynamic_kwargs):
        key = (specs, _freeze(dynamic_kwargs))
        fn = self._run_fns.get(key)
        if fn is None:
            signature = [tf.TensorSpec([None] + list(shape), tf.float32) for shape in specs]
            fn = tf.function(lambda *xs: self.module(*xs, **dynamic_kwargs), input_signature=signature,
                             autograph=False)
            self._run_fns[key] = fn
        return fn

    def run(self, *in_arrays, minibatch_size=None, output_transform=None, return_as_list=False,
            print_progress=False, num_gpus=1, assume_frozen=False, **dynamic_kwargs):
        """Numpy in, numpy out, in minibatches (NVIDIA's ``Network.run``).

        Args:
            in_arrays: the network's inputs (NCHW images / latents / dlatents, labels); ``None`` (or an
                omitted trailing labels input) is fed as zeros ``[N, label_size]``.
            minibatch_size: evaluate at most this many items per call (None = all at once).
            output_transform: ``dict(func=f, **kw)``: outputs are replaced by ``f(*outputs, **kw)``, e.g.
                ``dict(func=convert_images_to_uint8, nchw_to_nhwc=True)``.
            return_as_list: always return a list of outputs.
            print_progress: show ``done/total`` on the progress line (stderr).
            num_gpus, assume_frozen: accepted for compatibility, ignored.
            dynamic_kwargs: call-time kwargs (truncation_psi, randomize_noise, ...), Python values.
        Returns:
            One numpy array, or a tuple (several outputs, e.g. ``return_dlatents=True``).
        """
        del num_gpus, assume_frozen
        num_inputs = len(self.input_shapes)
        if not 1 <= len(in_arrays) <= num_inputs or in_arrays[0] is None:
            raise StyleGANTLError(f"{self.name}.run: expected {num_inputs} input(s), got {len(in_arrays)}")
        arrays = [np.asarray(in_arrays[0], np.float32)]
        n = arrays[0].shape[0]
        for i, shape in enumerate(self.input_shapes[1:], start=1):
            given = in_arrays[i] if i < len(in_arrays) else None
            arrays.append(np.zeros([n] + shape[1:], np.float32) if given is None else np.asarray(given, np.float32))
            if arrays[i].shape[0] != n:
                raise StyleGANTLError(f"{self.name}.run: input {i} has {arrays[i].shape[0]} items, input 0 has {n}")
        fn = self._run_fn(tuple(a.shape[1:] for a in arrays), dynamic_kwargs)
        mb = minibatch_size or max(n, 1)
        chunks = []
        progress = StatusLine() if print_progress else None
        for start in range(0, n, mb):
            out = fn(*[tf.constant(a[start:start + mb]) for a in arrays])
            chunks.append([o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])])
            if progress is not None:
                progress.count(min(start + mb, n), n, self.name)
        if not chunks:  # empty batch: trace once for the output structure
            out = fn(*[tf.constant(a) for a in arrays])
            chunks.append([o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])])
        outputs = [np.concatenate(parts, axis=0) for parts in zip(*chunks)]
        if output_transform is not None:
            transform = dict(output_transform)
            result = transform.pop("func")(*outputs, **transform)
            outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        if return_as_list:
            return outputs
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    # ----------------------------------------------------------------------------------------------
    # Variables.

    def get_var(self, name):
        """Value of variable ``name`` (full NVIDIA name) as numpy."""
        return self.vars[name].numpy()

    def set_var(self, name, value):
        """Assign numpy ``value`` to variable ``name`` (shape must match)."""
        _assign(self.vars[name], value, f"{self.name}: variable {name!r}")

    def copy_vars_from(self, other):
        """Copy every variable whose full name both networks have (shapes must match); others are left."""
        self._copy_from(other, self.vars, "copy_vars_from")

    def copy_trainables_from(self, other):
        """As ``copy_vars_from`` for trainable variables only."""
        self._copy_from(other, self.trainables, "copy_trainables_from")

    def copy_compatible_trainables_from(self, other):
        """Copy the trainables whose name AND shape match; silently skip the rest (NVIDIA's v2 semantics)."""
        for name, var in self.trainables.items():
            src = other.vars.get(name)
            if src is not None and src.shape == var.shape:
                var.assign(src)

    def _copy_from(self, other, targets, what):
        for name, var in targets.items():
            if name in other.vars:
                _assign(var, other.vars[name].numpy(), f"{self.name}.{what}({other.name}): {name!r}")

    def clone(self, name=None):
        """An independent copy (new variables with the same values) named ``name``."""
        state = self.to_state()
        state.name = name or self.name
        return Network.from_state(state)

    def to_state(self):
        """This network as a ``pickle_io.NetworkState`` (numpy copies; scalars 0-d float32)."""
        return pickle_io.NetworkState(
            name=self.name, version=self.version, build_func_name=self.build_func_name,
            static_kwargs=copy.deepcopy(self.static_kwargs),
            variables=collections.OrderedDict((k, np.array(v.numpy(), dtype=np.float32))
                                              for k, v in self.module.own_vars.items()),
            components={k: c.to_state() for k, c in self.components.items()},
            build_module_src=self.build_module_src, extra=copy.deepcopy(self.extra))


def _assign(var, value, where):
    value = np.asarray(value, dtype=np.float32)
    if tuple(value.shape) != tuple(var.shape):
        raise StyleGANTLError(f"{where}: shape {list(value.shape)} does not match {var.shape.as_list()}")
    var.assign(value)


def _assign_state_variables(own_vars, values, where):
    """Assign pickled ``values`` (local name -> array) to ``own_vars``; both sets of names must agree."""
    unused = [k for k in values if k not in own_vars]
    if unused:
        raise StyleGANTLError(f"{where}: pickle variables not used by this network: {', '.join(unused[:8])}"
                              + (" ..." if len(unused) > 8 else ""))
    missing = [k for k in own_vars if k not in values]
    if missing:
        raise StyleGANTLError(f"{where}: variables missing from the pickle: {', '.join(missing[:8])}"
                              + (" ..." if len(missing) > 8 else ""))
    for k, var in own_vars.items():
        _assign(var, values[k], f"{where}: variable {k!r}")


# --------------------------------------------------------------------------------------------------
# Module-level API.


def create_networks(family, resolution, seed=0, G_kwargs=None, D_kwargs=None):
    """Fresh ``(G, D, Gs)`` like NVIDIA's training loop (``Gs = G.clone('Gs')``).

    Args:
        family: 'stylegan', 'stylegan2' or 'stylegan2-ada'. resolution: power of two.
        seed: G uses seed (components seed+1, seed+2), D uses seed+3.
        G_kwargs, D_kwargs: static kwargs of the build functions.
    """
    G = Network.from_config(family, "G", resolution, seed, **(G_kwargs or {}))
    D = Network.from_config(family, "D", resolution, seed + 3, **(D_kwargs or {}))
    return G, D, G.clone("Gs")


def load_network_pkl(spec):
    """``(G, D, Gs)`` Networks from an NVIDIA TF pickle or ours: a path, URL or official short name.

    A single-network pickle gives ``(None, None, Gs)`` or ``(None, D, None)``.
    """
    path = pretrained.resolve_network_pkl(spec)
    states = pickle_io.read_network_pkl(path)
    return tuple(None if s is None else Network.from_state(s, where=str(path)) for s in states)


def save_network_pkl(path, G, D, Gs):
    """Write ``(G, D, Gs)`` (Networks) as an NVIDIA-layout pickle, atomically.

    Pickles loaded from NVIDIA keep their embedded source and extra keys, so NVIDIA's own loader reads
    the result; networks made by ``from_config`` carry a placeholder source (NVIDIA's loader cannot
    rebuild them; ours can).
    """
    return pickle_io.write_network_pkl(path, *(None if n is None else n.to_state() for n in (G, D, Gs)))


def convert_images_to_uint8(images, drange=(-1, 1), nchw_to_nhwc=False, shrink=1, uint8_cast=True):
    """NVIDIA's conversion of network images to uint8: ``x*255/(hi-lo) + 0.5 - lo*255/(hi-lo)``, then a
    saturating cast (clip to [0, 255], truncate): round-half-up of ``(x - lo) * 255 / (hi - lo)``.

    Args:
        images: [N, C, H, W] NCHW numpy array or tensor.
        drange: (lo, hi) of the input. nchw_to_nhwc: return [N, H, W, C].
        shrink: average-pool factor applied first. uint8_cast: False returns the float values.
    Returns:
        numpy uint8 (or float32 without the cast).
    """
    x = np.asarray(images, dtype=np.float32)
    if shrink > 1:
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // shrink, shrink, w // shrink, shrink).mean(axis=(3, 5))
    if nchw_to_nhwc:
        x = x.transpose(0, 2, 3, 1)
    scale = 255 / (drange[1] - drange[0])
    x = x * np.float32(scale) + np.float32(0.5 - drange[0] * scale)
    if not uint8_cast:
        return x
    return np.clip(np.nan_to_num(x), 0, 255).astype(np.uint8)
