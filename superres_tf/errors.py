"""Project exceptions: one-line messages that name the file and the problem."""


class SuperResError(Exception):
    """Base class of every error this package raises on purpose.

    Command lines print ``str(error)`` without a traceback and exit non-zero.
    """


class ImageReadError(SuperResError):
    """An image file cannot be read or has an unusable size."""


class WeightsError(SuperResError):
    """Model or VGG16 weights are missing or unusable."""


class ConfigError(SuperResError):
    """An argument or flag has an unusable value (bad scale, tile smaller than overlap, ...)."""


class DatasetError(SuperResError):
    """An image folder holds no usable image, or too few to split."""
