"""Project exceptions: one-line messages that name the file and the problem."""

from superres_tf.conventions import ProjectError


class StyleGANTLError(ProjectError):
    """Base class of every error this package raises on purpose.

    Command lines print ``error: <message>`` without a traceback and exit 2 (a class that means a
    failed run rather than bad input sets ``exit_code = 1``).
    """


class NetworkPickleError(StyleGANTLError):
    """A network pickle is missing, damaged, hostile or of an unknown kind."""


class DatasetError(StyleGANTLError):
    """An image folder or TFRecords dataset cannot be used."""


class BuildError(StyleGANTLError):
    """A custom op failed to compile or load."""

    exit_code = 1
