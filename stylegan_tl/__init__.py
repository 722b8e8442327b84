"""stylegan_tl: NVIDIA StyleGAN / StyleGAN2 / StyleGAN2-ADA (TF) networks on TensorFlow 2, for transfer learning.

Public API (imported lazily, so that ``stylegan_tl.pickle_io`` stays free of TensorFlow)::

    from stylegan_tl import load_network_pkl, save_network_pkl, convert_images_to_uint8
    G, D, Gs = load_network_pkl('stylegan2-church-config-f')   # name, URL or path
"""

from superres_tf.conventions import lazy_exports

_LAZY = {
    "load_network_pkl": "network",
    "save_network_pkl": "network",
    "convert_images_to_uint8": "network",
    "Network": "network",
    "read_network_pkl": "pickle_io",
    "write_network_pkl": "pickle_io",
    "NetworkState": "pickle_io",
    "StyleGANTLError": "errors",
}

__all__ = sorted(_LAZY)
__getattr__ = lazy_exports(__name__, _LAZY)
