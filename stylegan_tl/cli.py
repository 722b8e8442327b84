"""The command-line convention of stylegan_tl's programs: absl flags, one ``error: ...`` line, exit code.

Usage in a program module::

    if __name__ == "__main__":
        define_flags()
        app.run(lambda argv: cli.run_main(argv, run_from_flags), flags_parser=cli.parse_flags)

``run_from_flags()`` returns the lines to print on success. Unexpected arguments, a bad flag and
any :class:`StyleGANTLError` print ``error: <message>`` on stderr and exit 2; an OSError exits 1.
"""

import sys

from absl import flags

from .errors import StyleGANTLError


def parse_flags(argv):
    """absl flag parsing; a bad flag is ``error: ...`` and exit 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run_main(argv, body):
    """Run ``body()`` and print the lines it returns; returns the exit code (0, 1 or 2)."""
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        lines = body()
    except StyleGANTLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0
