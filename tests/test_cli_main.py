"""The command line: exit codes, formats, golden output. Runs the real entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnspec import __version__
from cnnspec.cli import COMMANDS, build_parser, main
from tests.conftest import ROOT, SPECS
from tests.helpers import run_cli

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def golden(name: str, text: str) -> None:
    """Compare with tests/golden/NAME; CNNSPEC_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("CNNSPEC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"cnnspec {__version__}"
    out = run_cli("check", "--help")
    assert out.returncode == 0 and "--dense-equivalent" in out.stdout and "--format" in out.stdout
    listing = run_cli("--help").stdout
    # each command listed with its help (on the next line when the name is long)
    assert all(re.search(rf"^    {command}\s+\S", listing, re.M) for command in COMMANDS), listing


@pytest.mark.parametrize("columns", [None, "50", "132", "0", "wide"])
def test_help_wraps_at_the_width_shutil_would_give(columns):
    """cnnspec's help formatter asks the terminal's width without importing shutil; it must
    get the width argparse's own formatter (which asks shutil) gets."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
    code = (
        "import argparse; from cnnspec.cli import _HelpFormatter; "
        "print(_HelpFormatter('cnnspec')._width, argparse.HelpFormatter('cnnspec')._width)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    ours, argparses = out.stdout.split()
    assert ours == argparses


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "specs/lenet5.cnn", "--format", "json"],
        ["fmt", "--check", "a.cnn"],
        ["draw", "a.cnn", "-o", "a.svg"],
        ["export", "a.cnn", "-o", "a.onnx", "--int8", "--seed", "3"],
        ["run", "a.onnx", "--threads", "2"],
        ["bench", "a.cnn"],
        ["import", "m.onnx", "-o", "m.cnn"],
        ["train", "a.cnn", "--data", "d.npz", "-o", "t.onnx", "--epochs", "2"],
        ["evaluate", "m.onnx", "--data", "d.npz"],
        ["lsp"],
    ],
)
def test_a_parser_built_for_one_command_reads_it_as_the_full_one(argv):
    """main() builds only the named subcommand's options (start-up); the meaning must not change."""
    full, only = build_parser().parse_args(argv), build_parser(argv).parse_args(argv)
    assert vars(only) == vars(full) and full.command == argv[0]
    assert set(build_parser(argv)._subparsers._group_actions[0].choices) == {argv[0]}
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(COMMANDS)


def test_check_clean_spec_exits_0_with_table(capsys):
    assert main(["check", "specs/lenet5.cnn", "--color", "never"]) == 0
    golden("lenet5.txt", capsys.readouterr().out)


def test_table_fits_an_80_column_terminal(capsys, monkeypatch):
    monkeypatch.setattr("cnnspec.cli.check._terminal_width", lambda: 80)
    for spec in ("lenet5.cnn", "vgg16.cnn", "cifar.cnn"):
        main(["check", str(SPECS / spec), "--color", "never"])
    table_lines = [
        line
        for line in capsys.readouterr().out.splitlines()
        if not line.startswith(("network", "as dense", "params", "MACs", "activations"))
    ]
    assert max(len(line) for line in table_lines) <= 80


def test_json_output_is_stable(capsys):
    assert main(["check", "specs/lenet5.cnn", "--format", "json"]) == 0
    text = capsys.readouterr().out
    document = json.loads(text)
    network = document["networks"][0]
    assert network["total_params"] == 61_706
    assert set(network["layers"][0]) >= {
        "name",
        "kind",
        "line",
        "output",
        "params",
        "trainable_params",
        "macs",
        "receptive_field",
    }
    golden("lenet5.json", text.replace(str(ROOT) + "/", ""))


def test_json_carries_diagnostics_when_the_check_fails(capsys):
    assert main(["check", "specs/mistakes.cnn", "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    first = document["diagnostics"][0]
    assert set(first) >= {"severity", "code", "path", "line", "column", "message"}
    assert {"error", "warning"} == {d["severity"] for d in document["diagnostics"]}


def test_errors_exit_1_and_print_path_line_column():
    out = run_cli("check", "specs/mistakes_syntax.cnn")
    assert out.returncode == 1
    assert out.stderr.startswith("specs/mistakes_syntax.cnn:7:19: error: unexpected ')'")
    assert "Traceback" not in out.stderr


def test_warnings_alone_exit_0(tmp_path: Path):
    spec = tmp_path / "w.cnn"
    spec.write_text("network w {\n  input 1x7x7\n  pool max 2\n}\n")
    out = run_cli("check", str(spec))
    assert out.returncode == 0 and "[dropped-pixels]" in out.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (("check", "missing.cnn"), "missing.cnn: no such file"),
        (("check", "specs"), "is a directory"),
        (("check", "specs/lenet5.cnn", "--network", "lenet"), "did you mean 'lenet5'?"),
        (("check", "specs/lenet5.cnn", "--format", "xml"), "invalid choice"),
        (("frobnicate",), "invalid choice"),
        ((), "usage:"),
    ],
)
def test_usage_errors_exit_2(args, words):
    out = run_cli(*args)
    assert out.returncode == 2
    assert words in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_binary_file_is_a_usage_error(tmp_path: Path):
    path = tmp_path / "x.cnn"
    path.write_bytes(b"\xff\xfe\x00garbage")
    out = run_cli("check", str(path))
    assert out.returncode == 2 and "not a text file" in out.stderr


def test_dense_equivalent_column(capsys):
    assert main(["check", "specs/textbook.cnn", "--network", "ten_filters", "--dense-equivalent"]) == 0
    out = capsys.readouterr().out
    assert "as dense" in out and f"{(3 * 1000 * 1000 + 1) * 10 * 998 * 998:,}" in out


def test_several_files_in_one_run(capsys):
    assert main(["check", "specs/lenet5.cnn", "specs/cifar.cnn", "--format", "json"]) == 0
    names = [n["name"] for n in json.loads(capsys.readouterr().out)["networks"]]
    assert names == ["lenet5", "cifar"]


def test_check_from_another_folder_with_use(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.cnn").write_text((SPECS / "lenet5.cnn").read_text())
    (tmp_path / "net.cnn").write_text(
        'use "sub/base.cnn"\nnetwork x from lenet5 {\n  drop last 1\n  dense 3\n}\n'
    )
    out = run_cli("check", "net.cnn", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["networks"][0]["output"] == [3]


def test_the_program_freezes_its_modules_and_a_library_call_leaves_the_gc_alone():
    """`cnnspec check` as the process pauses the cyclic GC while it imports, then freezes
    what it imported; `main([...])` called from a program must not touch that program's GC."""
    code = (
        "import gc, sys; from cnnspec.cli import main; "
        "sys.argv = ['cnnspec', 'check', 'specs/lenet5.cnn']; main(); "
        "print(gc.isenabled(), gc.get_freeze_count() > 10000, 'cnnspec.views.report' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "True True True"
    code = (
        "import gc; from cnnspec.cli import main; gc.set_threshold(123, 4, 5); "
        "main(['check', 'specs/lenet5.cnn']); print(gc.isenabled(), gc.get_freeze_count(), gc.get_threshold())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "True 0 (123, 4, 5)"


def test_check_reads_standard_input_for_dash():
    text = (SPECS / "mistakes.cnn").read_text()
    piped = run_cli("check", "-", stdin=text)
    from_file = run_cli("check", "specs/mistakes.cnn")
    assert piped.returncode == from_file.returncode == 1
    # Named <stdin>; its `use` paths are relative to the current directory, not to specs/.
    expected = from_file.stderr.replace("specs/mistakes.cnn", "<stdin>")
    assert piped.stderr == expected.replace("(specs/no_such_file.cnn)", "(no_such_file.cnn)")
    assert "<stdin>:" in piped.stderr
    clean = run_cli("check", "-", "--format", "json", stdin=(SPECS / "lenet5.cnn").read_text())
    assert clean.returncode == 0 and json.loads(clean.stdout)["networks"][0]["total_params"] == 61706
    twice = run_cli("check", "-", "-", stdin="")
    assert twice.returncode == 2 and "only once" in twice.stderr
    binary = run_cli("check", "-", stdin="network\0")
    assert binary.returncode == 2 and "<stdin>: not a text file" in binary.stderr
    closed = subprocess.run(  # standard input closed, not empty
        [
            sys.executable,
            "-c",
            "import os, sys; os.close(0); sys.stdin = None; from cnnspec.cli import main; sys.exit(main(['check', '-']))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert closed.returncode == 2 and "<stdin>: standard input is closed" in closed.stderr


def test_fmt_dash_is_a_filter_from_standard_input_to_standard_output():
    messy = "network n {\ninput 1x8x8\n    conv 2 3x3   relu\n}\n"
    out = run_cli("fmt", "-", stdin=messy)
    assert out.returncode == 0 and out.stdout == "network n {\n  input 1x8x8\n  conv 2 3x3 relu\n}\n"
    assert run_cli("fmt", "-", stdin=out.stdout).stdout == out.stdout  # formatted: printed unchanged
    check = run_cli("fmt", "--check", "-", stdin=messy)
    assert check.returncode == 1 and check.stdout.strip() == "would reformat <stdin>"
    broken = run_cli("fmt", "-", stdin="network n {\n  conv 2 3x3 {\n}\n")
    assert broken.returncode == 1 and broken.stdout == "" and "<stdin>:" in broken.stderr


@pytest.mark.parametrize(
    "rate, shown",
    [(1.1937, "1.19"), (0.05, "0.05"), (9.999, "10.0"), (12.345, "12.3"), (99.96, "100"), (2816.4, "2,816")],
)
def test_throughput_keeps_three_figures_for_slow_models(rate, shown):
    from cnnspec.cli.common import rate_text as _rate

    assert _rate(rate) == shown


def test_the_table_never_cuts_a_name_a_shape_or_a_number(capsys):
    """Columns widen to their longest cell; only spec text is cut (with …)."""
    text = "network n {\n  input 3x1000x1000\n  conv 128 3x3 pad=1 as a_very_long_layer_name\n  flatten\n  dense 10\n}\n"
    from cnnspec import check_source
    from cnnspec.views.report import render_table

    table = render_table(check_source(text))
    for whole in ("a_very_long_layer_name", "128x1000x1000", "128000000", "1,280,000,010"):
        assert whole in table
    assert "…" not in table
