"""How every command of the project behaves: errors, options and flags, the progress line.

Shared by ``stylegan_tl``, ``superres_tf`` and ``run_pipeline.py``; dependency-free (the standard
library and absl only: no TensorFlow, nothing else of either package), so that ``stylegan_tl``
may import it - the packages' one direction, see docs/architecture.md.

* :class:`ProjectError`: the base of every exception the project raises on purpose. Its message
  is one line naming the file and the problem; its class carries the exit code (2: bad usage or
  input; 1: a run that failed).
* Options are dataclasses whose fields are made with :func:`option` (default, help, choices, ...):
  :func:`define_flags` generates the absl flags of a class, :func:`options_from_flags` reads them
  back; nested dataclass fields become flat flags.
* Commands: ``if __name__ == "__main__": define_flags(); conventions.run(run_from_flags)``
  (absl's ``app.run``); commands that are also Python functions (``inspect``, ``ops.build``) use
  :func:`main` with flags of their own. :func:`parse_flags` turns a bad flag into one ``error:``
  line (exit 2) and :func:`run_main` prints the lines the body returns or yields, a
  :class:`ProjectError` as ``error: <message>`` with its exit code, an OSError as ``error: ...``
  with exit 1.
* :class:`StatusLine`: the one progress display (stderr, rewritten in place on a terminal).
"""

import dataclasses
import sys
import time
import typing


class ProjectError(Exception):
    """An error the project raises on purpose; commands print ``error: <message>`` and exit with
    ``exit_code`` (2: bad usage or input; subclasses for failed runs set 1)."""

    exit_code = 2


def lazy_exports(package, names):
    """A package's ``__getattr__`` that imports ``names`` (``{name: submodule}``) on first use, so
    that importing the package costs nothing (no TensorFlow)."""
    import importlib

    def __getattr__(name):
        if name in names:
            return getattr(importlib.import_module(f".{names[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__


# ---------------------------------------------------------------------------------------------------
# Options: dataclass fields -> absl flags.


def option(default=None, help="", *, flag=True, choices=None, required=False, parse=None, short_name=None,
           default_factory=None, **meta):
    """A field of an options dataclass, with what its command-line flag needs.

    Args:
      default / default_factory: the value when not given (also the flag's default).
      help: one line: meaning, unit, default.
      flag: False (no flag), True (a flag of the field's name) or another flag name.
      choices: allowed values (an enum flag).
      required: the flag must be given.
      parse: for a list-valued flag, ``list of strings -> value`` (default: a tuple of the element
        type, empty items dropped).
      meta: further entries for the users of the class (e.g. the pipeline's references).
    """
    metadata = dict(help=help, flag=flag, choices=choices, required=required, parse=parse,
                    short_name=short_name, **meta)
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field) -> str:
    """The flag of an options field (its own name unless ``option(flag='...')``)."""
    flag = field.metadata.get("flag", True)
    return flag if isinstance(flag, str) else field.name


def _has_flag(field) -> bool:
    return field.metadata.get("flag", True) is not False


def _plain_type(hint):
    """``Optional[X]`` -> X."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def _element_type(hint):
    """Element type of ``Tuple[X, ...]`` / ``Tuple[X, X]`` / ``List[X]``; None for other types."""
    hint = _plain_type(hint)
    if typing.get_origin(hint) in (tuple, list):
        return typing.get_args(hint)[0]
    return None


def _flag_fields(cls):
    """(field, type) of every flagged field, nested dataclasses flattened in place."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = _plain_type(hints[field.name])
        if dataclasses.is_dataclass(hint):
            yield from _flag_fields(hint)
        elif _has_flag(field):
            yield field, hints[field.name]


def _field_default(field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def define_flags(cls, flag_values=None, use_defaults=True):
    """Define an absl flag for every flagged field of the dataclass ``cls`` (nested ones included).

    ``use_defaults=False`` gives every flag the default None ("not given") and requires none, for
    callers that fill unset values from elsewhere (the pipeline's presets) and check them there.
    """
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    definers = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                bool: flags.DEFINE_bool}
    for field, hint in _flag_fields(cls):
        meta = field.metadata
        default = _field_default(field) if use_defaults else None
        common = dict(flag_values=flag_values, required=use_defaults and meta.get("required", False),
                      short_name=meta.get("short_name"))
        name = flag_name(field)
        if meta.get("choices"):
            flags.DEFINE_enum(name, default, list(meta["choices"]), meta["help"], **common)
        elif _element_type(hint) is not None:
            listed = None if default is None else [str(v) for v in default]
            flags.DEFINE_list(name, listed, meta["help"], **common)
        else:
            definers[_plain_type(hint)](name, default, meta["help"], **common)


def _from_list(field, hint, values):
    """A list flag's strings -> the field's value: ``parse``'s, else a tuple of the element type
    (empty items dropped; an empty tuple only for an Optional field)."""
    if values is None:
        return None
    parse = field.metadata.get("parse")
    if parse is not None:
        return parse(values)
    kind = _element_type(hint)
    try:
        value = tuple(kind(v) for v in values if v != "")
    except ValueError:
        value = None
    optional = _plain_type(hint) is not hint
    if value is None or not (value or optional):
        raise ProjectError(f"--{flag_name(field)}={','.join(values)}: expected {kind.__name__} values, "
                           "comma-separated") from None
    return value


def options_from_flags(cls, flag_values=None) -> dict:
    """Keyword arguments of ``cls`` from parsed flags: every flagged field (nested dataclasses
    rebuilt); fields without a flag are left out (they keep their defaults)."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(_plain_type(hint)):
            values[field.name] = _plain_type(hint)(**options_from_flags(_plain_type(hint), flag_values))
        elif _has_flag(field):
            value = flag_values[flag_name(field)].value
            if isinstance(value, list):  # a list flag
                value = _from_list(field, hint, value)
            elif value is not None and field.metadata.get("parse"):  # a string flag with a parser
                value = field.metadata["parse"](value)
            values[field.name] = value
    return values


# ---------------------------------------------------------------------------------------------------
# Commands.


def parse_flags(argv, aliases=None, flag_values=None):
    """absl flag parsing (``app.run``'s ``flags_parser``); a bad flag prints one ``error:`` line and
    exits 2. ``aliases``: old spellings of arguments, e.g. ``{'--no-vars': '--novars'}``."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    argv = [argv[0]] + [(aliases or {}).get(arg, arg) for arg in argv[1:]]
    try:
        return flag_values(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def run_main(argv, body, num_args=0) -> int:
    """Run a command's ``body(*argv[1:])``, printing each line it returns or yields; returns the
    exit code: 0, a :class:`ProjectError`'s ``exit_code`` or 1 for an OSError (each printed as
    ``error: <message>``, one line per line of the message), 2 for a wrong argument count."""
    args = argv[1:]
    if len(args) != num_args:
        expected = "no arguments" if not num_args else f"{num_args} argument(s)"
        print(f"error: unexpected arguments {args}" if len(args) > num_args else
              f"error: expected {expected}, got {len(args)}", file=sys.stderr)
        return 2
    try:
        for line in body(*args):
            print(line, flush=True)
    except ProjectError as error:
        _print_error(error)
        return error.exit_code
    except OSError as error:
        _print_error(error)
        return 1
    return 0


def _print_error(error):
    for line in str(error).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)


def run(body, num_args=0, aliases=None):
    """The ``__main__`` of a command: absl's ``app.run`` (logging set up, flags parsed with
    :func:`parse_flags`), then :func:`run_main`; exits with its code."""
    from absl import app

    app.run(lambda argv: run_main(argv, body, num_args), flags_parser=lambda argv: parse_flags(argv, aliases))


def main(argv, flag_values, body, usage, num_args=0, aliases=None) -> int:
    """A command that is also a Python function, ``main(argv) -> exit code`` (``argv`` without the
    program name): its flags live in their own ``flag_values``, so calling it leaves absl's global
    flags alone; ``--help`` prints ``usage`` and the flags. Otherwise as :func:`run`."""
    from absl import flags

    if "help" not in flag_values:
        flags.DEFINE_bool("help", False, "show this help", short_name="h", flag_values=flag_values)
    argv = parse_flags([usage] + list(argv), aliases, flag_values)
    if flag_values.help:
        print(f"usage: {usage}\n\n{flag_values.get_help()}")
        return 0
    return run_main(argv, body, num_args)


# ---------------------------------------------------------------------------------------------------
# Progress.


class StatusLine:
    """One status line on stderr: on a terminal it is rewritten in place (at most every
    ``interval`` seconds, except the final one); in a log file only the final line is written.

    Example: ``line = StatusLine(); for i in ...: line.show(f"images: {i + 1}/{n}", final=i + 1 == n)``.
    """

    def __init__(self, interval=0.25, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self.interval, self.last, self.width = interval, 0.0, 0

    def show(self, text, final=False):
        if self.tty:
            now = time.monotonic()
            if final or now - self.last >= self.interval:
                self.last = now
                self.stream.write("\r" + text.ljust(self.width) + ("\n" if final else ""))
                self.width = 0 if final else len(text)
                self.stream.flush()
        elif final:
            self.stream.write(text + "\n")
            self.stream.flush()

    def count(self, done, total, what):
        """``'<what>: done/total'``, final when ``done == total``."""
        self.show(f"{what}: {done}/{total}", final=done >= total)
