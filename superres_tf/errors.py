"""Project exceptions: one-line messages that name the file and the problem."""

from superres_tf.conventions import ProjectError


class SuperResError(ProjectError):
    """Base class of every error this package raises on purpose.

    Command lines print ``error: <message>`` without a traceback and exit 2.
    """


class ImageReadError(SuperResError):
    """An image file cannot be read or has an unusable size."""


class WeightsError(SuperResError):
    """Model or VGG16 weights are missing or unusable."""


class ConfigError(SuperResError):
    """An argument or flag has an unusable value (bad scale, tile smaller than overlap, ...)."""


class DatasetError(SuperResError):
    """An image folder holds no usable image, or too few to split."""
