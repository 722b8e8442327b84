"""Project exceptions: one-line messages that name the file and the problem."""


class StyleGANTLError(Exception):
    """Base class of every error this package raises on purpose.

    Command lines print ``str(error)`` without a traceback and exit non-zero.
    """


class NetworkPickleError(StyleGANTLError):
    """A network pickle is missing, damaged, hostile or of an unknown kind."""


class DatasetError(StyleGANTLError):
    """An image folder or TFRecords dataset cannot be used."""


class BuildError(StyleGANTLError):
    """A custom op failed to compile or load."""
