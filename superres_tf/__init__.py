"""Super-resolution side: degrade photos, train a Keras U-Net with a perceptual loss on ImageNet
features (VGG16, or EfficientNet-Lite0 offline), enhance.

Public API (NHWC float32 in [0, 1] at every array boundary):
  degrade(high, scale=4, jpeg_quality=(10, 70), seed=0)  -> low-quality copy (PIL or uint8 HWC)
  build_unet(scale=4)                                    -> keras.Model
  load_backbone(name='auto', weights=None)               -> Backbone (.features/.embed/.logits)
  PerceptualLoss(backbone='vgg16')                       -> keras loss
  enhance_image(model, image, tile=256, overlap=32)      -> enlarged image, any size, no seams
  read_state_dict(path)                                  -> PyTorch state dict as numpy, no PyTorch
"""

from superres_tf.conventions import lazy_exports

# Imported lazily: `import superres_tf.errors` (and every CLI's error path) must not pay for
# TensorFlow, and `python -m superres_tf.enhance` must not import its own module twice.
_LAZY = {
    "degrade": "degrade",
    "build_unet": "unet",
    "PerceptualLoss": "perceptual",
    "Backbone": "features",
    "load_backbone": "features",
    "read_state_dict": "torch_weights",
    "enhance_image": "enhance",
    "SuperResError": "errors",
}

__all__ = sorted(_LAZY)
__getattr__ = lazy_exports(__name__, _LAZY)
