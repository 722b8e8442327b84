"""The super-resolution architectures by name, for training configs and command lines.

An architecture is a dict: {'type': 'edsr' | 'unet', 'scale': ..., <builder keywords>}, stored
as `arch` in a run's config.json so that a model can be rebuilt from it.
"""

from superres_tf.edsr import build_edsr
from superres_tf.errors import ConfigError
from superres_tf.unet import build_unet

BUILDERS = {"edsr": build_edsr, "unet": build_unet}  # keys: superres_tf.options.ARCHS
# Builder keywords of each type, besides 'scale' (what a command line may set).
KEYWORDS = {"edsr": ("width", "blocks", "output"), "unet": ("width", "depth", "convs")}


def make_arch(kind, scale, **options):
    """The architecture dict of `kind` from the options that apply to it (others are ignored)."""
    if kind not in BUILDERS:
        raise ConfigError(f"arch={kind!r}: expected one of {sorted(BUILDERS)}")
    return {"type": kind, "scale": scale, **{k: options[k] for k in KEYWORDS[kind] if k in options}}


def build_model(arch):
    """keras.Model from an architecture dict (a dict without 'type' is a U-Net, as in old configs)."""
    options = dict(arch)
    kind = options.pop("type", "unet")
    if kind not in BUILDERS:
        raise ConfigError(f"arch type {kind!r}: expected one of {sorted(BUILDERS)}")
    return BUILDERS[kind](**options)
