"""superres_tf.conventions: flags generated from options dataclasses, one error convention for every
command (one `error:` line, exit code carried by the exception class), the progress line, and the
packages' one import direction."""

import ast
import dataclasses
import io
import os
import subprocess
import sys
from typing import Optional, Tuple

import pytest
from absl import flags

from stylegan_tl import recipe
from superres_tf import conventions, options
from superres_tf.conventions import ProjectError, option

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Inner:
    quality: Optional[Tuple[int, int]] = option((30, 95), "a range", parse=lambda v: tuple(map(int, v)) or None)


@dataclasses.dataclass
class Example:
    name: str = option(None, "a string", required=True)
    count: int = option(3, "an integer")
    rate: float = option(1e-3, "a float, flag --lr", flag="lr")
    mirror: bool = option(False, "a bool")
    kind: str = option("a", "an enum", choices=("a", "b"))
    sizes: Tuple[int, ...] = option((96, 192), "a list")
    layers: Optional[Tuple[str, ...]] = option(None, "an optional list")
    inner: Inner = option(help="nested: flat flags", default_factory=Inner)
    hidden: int = option(7, "no flag", flag=False)


def _parse(cls, *args, use_defaults=True):
    flag_values = flags.FlagValues()
    conventions.define_flags(cls, flag_values, use_defaults=use_defaults)
    flag_values(["prog", *args])
    return conventions.options_from_flags(cls, flag_values)


def test_flags_come_from_the_fields_and_give_their_values_back():
    values = _parse(Example, "--name=x", "--lr=0.5", "--mirror", "--kind=b", "--sizes=1,2,3", "--layers=",
                    "--quality=10,20")
    assert Example(**values) == Example(name="x", rate=0.5, mirror=True, kind="b", sizes=(1, 2, 3), layers=(),
                                        inner=Inner(quality=(10, 20)))
    assert Example(**_parse(Example, "--name=x")) == Example(name="x")  # flag defaults are the fields'
    assert _parse(Example, use_defaults=False)["count"] is None  # None: not given (the pipeline's presets)
    for bad in ("--kind=c", "--count=x", "--hidden=1"):
        with pytest.raises(flags.Error):
            _parse(Example, "--name=x", bad)
    with pytest.raises(ProjectError, match=r"--sizes=a: expected int values"):
        _parse(Example, "--name=x", "--sizes=a")
    with pytest.raises(ProjectError, match=r"--sizes=: expected int values"):
        _parse(Example, "--name=x", "--sizes=")  # empty only where the option is Optional


@pytest.mark.parametrize("options_class", [recipe.Options, options.Options])
def test_each_trainer_has_one_source_for_its_flags_and_keywords(options_class):
    values = _parse(options_class, "--data=photos", "--outdir=run")
    assert options_class(**values) == options_class(data="photos", outdir="run")


def test_sr_flags_keep_their_spellings_and_meanings():
    # The command line of a long run started before the options dataclass (it must resume unchanged).
    values = _parse(options.Options, "--data=d", "--outdir=o", "--lr=5e-4", "--crops=192", "--photo_scales=1.0,0.5",
                    "--jpeg_quality=30,95", "--blur_sigma=", "--noise_sigma=0.5,3.0", "--loss_layers=", "--resume")
    assert (values["max_lr"], values["crops"], values["photo_scales"], values["loss_layers"], values["resume"]) == (
        5e-4, (192,), (1.0, 0.5), (), True)
    assert values["degradation"] == options.Degradation(jpeg_quality=(30, 95), blur_sigma=None, noise_sigma=(0.5, 3.0))


def _run(body, *args):
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = conventions.run_main(["prog", *args], body)
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


class Failed(ProjectError):
    exit_code = 1


def test_errors_are_error_lines_with_the_exit_code_of_their_class():
    def fails(error):
        def body():
            yield "done so far"
            raise error
        return body
    assert _run(lambda: ["a", "b"]) == (0, "a\nb\n", "")
    assert _run(fails(ProjectError("x.jpg: broken"))) == (2, "done so far\n", "error: x.jpg: broken\n")
    assert _run(fails(Failed("run: diverged"))) == (1, "done so far\n", "error: run: diverged\n")
    assert _run(fails(FileNotFoundError(2, "No such file", "f"))) == (
        1, "done so far\n", "error: [Errno 2] No such file: 'f'\n")
    assert _run(fails(ProjectError("a: bad\nb: bad"))) == (2, "done so far\n", "error: a: bad\nerror: b: bad\n")
    assert _run(lambda: [], "extra") == (2, "", "error: unexpected arguments ['extra']\n")
    with pytest.raises(KeyError):  # not a project error: a bug, with its traceback
        _run(fails(KeyError("bug")))


def test_a_bad_flag_is_one_error_line_and_old_spellings_map_to_new_ones(capsys):
    flag_values = flags.FlagValues()
    flags.DEFINE_bool("cuda_check", False, "h", flag_values=flag_values)
    conventions.parse_flags(["prog", "--cuda-check"], {"--cuda-check": "--cuda_check"}, flag_values)
    assert flag_values.cuda_check
    with pytest.raises(SystemExit) as exit_:
        conventions.parse_flags(["prog", "--cuda-chek"], None, flag_values)
    assert exit_.value.code == 2 and capsys.readouterr().err == (
        "error: Unknown command line flag 'cuda-chek'. Did you mean: cuda_check ?\n")  # absl's hint, same line


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_line_is_rewritten_on_a_terminal_and_final_in_a_file():
    log, terminal = io.StringIO(), _Terminal()
    for stream in (log, terminal):
        line = conventions.StatusLine(interval=0.0, stream=stream)
        for done in (1, 2, 3):
            line.count(done, 3, "images")
    assert log.getvalue() == "images: 3/3\n"
    assert terminal.getvalue() == "\rimages: 1/3\rimages: 2/3\rimages: 3/3\n"


COMMANDS = [["-m", m] for m in ("stylegan_tl.generate", "stylegan_tl.project", "stylegan_tl.metrics",
                                "stylegan_tl.export", "stylegan_tl.train", "stylegan_tl.dataset", "stylegan_tl.inspect",
                                "stylegan_tl.ops.build", "superres_tf.train", "superres_tf.enhance",
                                "superres_tf.evaluate", "superres_tf.export")] + [["run_pipeline.py"]]


def test_every_command_reports_a_bad_flag_the_same_way():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    procs = [subprocess.Popen([sys.executable, *command, "--no_such_flag"], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for command in COMMANDS]
    for command, proc in zip(COMMANDS, procs):
        _, err = proc.communicate(timeout=300)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert (proc.returncode, errors) == (2, ["error: Unknown command line flag 'no_such_flag'"]), (command, err)
        assert "Traceback" not in err and "FATAL" not in err, (command, err)


SHARED = {"superres_tf.conventions", "superres_tf.files", "superres_tf.images", "superres_tf.errors"}


def _module_level_imports(path):
    """Module names imported at the top level of a file (not inside functions or __main__ blocks)."""
    names = set()
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update(f"{node.module}.{alias.name}" if node.module == "superres_tf" else node.module
                         for alias in node.names)
    return names


def _sources(package):
    for root, _, files in os.walk(os.path.join(REPO, package)):
        yield from (os.path.join(root, f) for f in files if f.endswith(".py"))


def _all_imports(path):
    """Module names imported anywhere in a file."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_the_packages_import_each_other_in_one_direction_only():
    for path in _sources("superres_tf"):  # never the other way, not even lazily
        assert not [n for n in _all_imports(path) if n.split(".")[0] in ("stylegan_tl", "pipeline")], path
    for path in _sources("stylegan_tl"):
        crossing = {n for n in _module_level_imports(path) if n.split(".")[0] == "superres_tf"}
        assert crossing <= SHARED, (path, crossing - SHARED)
    # The shared modules are light: importing them starts no TensorFlow.
    code = "import sys\nfor m in %r: __import__(m)\nassert 'tensorflow' not in sys.modules, 'tensorflow'" % sorted(SHARED)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-2000:]
