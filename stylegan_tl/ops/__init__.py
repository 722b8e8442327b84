"""StyleGAN2's two custom ops and the resampling helpers built on them.

Public functions (NVIDIA's signatures, ``impl='ref'|'custom'|'auto'``)::

    fused_bias_act(x, b=None, axis=1, act='linear', alpha=None, gain=None, clamp=None, impl='auto')
    upfirdn_2d(x, k, upx=1, upy=1, downx=1, downy=1, padx0=0, padx1=0, pady0=0, pady1=0, impl='auto')
    upsample_2d(x, k=None, factor=2, gain=1, data_format='NCHW', impl='auto')
    downsample_2d(x, k=None, factor=2, gain=1, data_format='NCHW', impl='auto')
    upsample_conv_2d(x, w, k=None, factor=2, gain=1, data_format='NCHW', impl='auto')
    conv_downsample_2d(x, w, k=None, factor=2, gain=1, data_format='NCHW', impl='auto')
    filter_2d(x, k, gain=1, data_format='NCHW', impl='auto', padding=0)

``impl='ref'`` is plain TensorFlow; ``'custom'`` is the compiled C++/CUDA op; ``'auto'`` takes the
custom op when it builds and loads, else the reference (one warning). The environment variable
``STYLEGAN_TL_OPS=ref|custom|auto`` overrides ``'auto'`` globally. See docs/custom_ops.md.
"""

from .fused_bias_act import ACTIVATIONS, fused_bias_act
from .upfirdn_2d import upfirdn_2d
from .resample import (conv_downsample_2d, downsample_2d, filter_2d, setup_kernel,
                       upsample_2d, upsample_conv_2d)

__all__ = [
    "ACTIVATIONS", "fused_bias_act", "upfirdn_2d", "upsample_2d", "downsample_2d",
    "upsample_conv_2d", "conv_downsample_2d", "filter_2d", "setup_kernel",
]
