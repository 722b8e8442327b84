"""Super-resolution side: degrade photos, train a Keras U-Net with a VGG16 perceptual loss, enhance.

Public API (NHWC float32 in [0, 1] at every array boundary):
  degrade(high, scale=4, jpeg_quality=(10, 70), seed=0)  -> low-quality copy (PIL or uint8 HWC)
  build_unet(scale=4)                                    -> keras.Model
  PerceptualLoss(vgg_weights='imagenet')                 -> keras loss
  enhance_image(model, image, tile=256, overlap=32)      -> enlarged image, any size, no seams
"""

from superres_tf.degrade import degrade
from superres_tf.perceptual import PerceptualLoss
from superres_tf.unet import build_unet

__all__ = ["degrade", "build_unet", "PerceptualLoss", "enhance_image"]


def __getattr__(name):
    """Import enhance lazily, so `python -m superres_tf.enhance` does not import it twice."""
    if name == "enhance_image":
        from superres_tf.enhance import enhance_image
        return enhance_image
    raise AttributeError(f"module 'superres_tf' has no attribute {name!r}")
