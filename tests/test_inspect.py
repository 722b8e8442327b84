"""python -m stylegan_tl.inspect: the model summary of a network pickle."""

import json
import subprocess
import sys

import pytest

from conftest import FIXTURES
from stylegan_tl.inspect import main

CONFIGS = sorted(p.name for p in FIXTURES.iterdir() if (p / "network.pkl").exists())


@pytest.mark.parametrize("config", CONFIGS)
def test_summary_matches_reference(config, capsys):
    ref = json.loads((FIXTURES / config / "reference.json").read_text())
    assert main([str(FIXTURES / config / "network.pkl")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"resolution: {ref['resolution']}" in lines
    for role in ("G", "D", "Gs"):
        row = next(line.split() for line in lines if line.startswith(f"{role} "))
        assert row[-2] == f"{ref['networks'][role]['num_trainable_params']:,}"
    gs_vars = lines[lines.index("variables of Gs (Gs):") + 2:]
    mapping_vars = ref["networks"]["Gs"]["components"]["mapping"]["own_vars"]
    name, shape, trainable = mapping_vars[0][:3]
    assert f"  G_mapping/{name:<{48 - len('G_mapping/')}}{str(shape):<22}{'yes' if trainable else 'no'}" in gs_vars


def test_family_line(capsys):
    main([str(FIXTURES / "G_ada_r32" / "network.pkl"), "--no-vars"])
    out = capsys.readouterr().out
    assert "family:     stylegan2-ada (pickle version 5)" in out and "variables of" not in out
    assert "  Gs/G_mapping: dlatent_broadcast=8, " in out


def test_cli_errors_exit_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    code = "import sys; from stylegan_tl.inspect import main; r = main(sys.argv[1:]); " \
           "assert 'tensorflow' not in sys.modules; sys.exit(r)"
    for arg, expected in ((bad, "not a pickle file"), ("stylegan2-church-config-g", "stylegan2-church-config-f")):
        result = subprocess.run([sys.executable, "-c", code, str(arg)], capture_output=True, text=True,
                                cwd=FIXTURES.parent.parent)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and expected in result.stderr
        assert "Traceback" not in result.stderr


def test_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "stylegan_tl.inspect", "--no-vars",
                             str(FIXTURES / "A_v1_r32" / "network.pkl")], capture_output=True, text=True,
                            cwd=FIXTURES.parent.parent)
    assert result.returncode == 0 and "family:     stylegan (pickle version 3)" in result.stdout
