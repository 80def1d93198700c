"""`cnnspec fmt`: canonical, idempotent, meaning-preserving, comments kept."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnspec.cli import main
from cnnspec.language.fmt import TOKEN, format_text, meaning
from cnnspec.language.parse import parse_source
from tests.conftest import ROOT

SHIPPED = sorted(
    p
    for folder in ("specs", "docs/specs", "examples")
    for p in (ROOT / folder).glob("**/*.cnn")
    if p.name != "mistakes_syntax.cnn"  # a syntax error by design: fmt refuses it
)


def test_every_shipped_spec_is_formatted(capsys):
    assert main(["fmt", "--check", *map(str, SHIPPED)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_formatting_keeps_meaning_and_comments(path):
    text = path.read_text()
    messy = _respace(text, random.Random(path.name))
    assert meaning(parse_source(messy)) == meaning(parse_source(text))
    assert format_text(messy) == format_text(text) == text  # whatever the spacing, one layout
    assert re.findall(r"#.*", text) == [c.rstrip() for c in re.findall(r"#.*", messy)]


def _respace(text: str, rng: random.Random) -> str:
    """The same tokens and lines with random (valid) spacing: extra spaces and tabs,
    trailing blanks. (Blank lines are the writer's and stay.)"""
    lines = []
    for line in text.splitlines():
        pieces = []
        for match in TOKEN.finditer(line):
            if match.lastgroup == "space":
                continue
            pieces.append(match.group())
        glue = []
        for i, piece in enumerate(pieces):
            if i and not piece.startswith("#"):
                prev = pieces[i - 1]
                optional = piece in {"=", ",", ";", ")", "]"} or prev in {"=", "(", "[", ","}
                needed = (
                    not optional
                    and (prev[-1:].isalnum() or prev[-1:] in '_"')
                    and (piece[:1].isalnum() or piece[:1] in '_".')
                )
                glue.append(
                    " " * rng.randint(1 if needed else 0, 3) + ("\t" if needed and rng.random() < 0.2 else "")
                )
            elif i:
                glue.append(" " * rng.randint(1, 6))
            glue.append(piece)
        indent = " " * rng.randint(0, 6)
        lines.append(indent + "".join(glue) + " " * rng.randint(0, 2))
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SHIPPED), st.integers(0, 10**6))
def test_any_spacing_of_a_spec_formats_to_the_same_text(path, seed):
    text = path.read_text()
    assert format_text(_respace(text, random.Random(seed))) == text


def test_the_layout_rules():
    messy = (
        "block  b( c ,k=3 ){\n"
        "conv c  k pad = 1 ; relu   # a\n"
        "      residual{conv c 1x1;relu}shortcut{}\n"
        "    conv (c+7)//8*8 3x3 weights = [[1,0 , -1]] -> 4x4x4 # bb\n"
        "\n"
        "}\n\n\n\n"
        "network n {\n  input 3x8x8\n     b 4\n}\n\n"
    )
    assert format_text(messy) == (
        "block b(c, k=3) {\n"
        "  conv c k pad=1; relu  # a\n"
        "  residual { conv c 1x1; relu } shortcut {}\n"
        "  conv (c + 7)//8*8 3x3 weights=[[1, 0, -1]] -> 4x4x4  # bb\n"
        "}\n\n"
        "network n {\n  input 3x8x8\n  b 4\n}\n"
    )


def test_check_diff_and_rewrite(tmp_path, capsys):
    path = tmp_path / "n.cnn"
    path.write_text("network n {\ninput 1x8x8\n  conv 4   3x3\n}\n")
    assert main(["fmt", "--check", str(path)]) == 1
    assert f"would reformat {path}" in capsys.readouterr().out
    assert main(["fmt", "--diff", str(path)]) == 1
    diff = capsys.readouterr().out
    assert "-input 1x8x8\n-  conv 4   3x3\n+  input 1x8x8\n+  conv 4 3x3\n" in diff
    assert path.read_text() == "network n {\ninput 1x8x8\n  conv 4   3x3\n}\n"  # check and diff never write
    path.chmod(0o640)
    assert main(["fmt", str(path)]) == 0
    assert (
        path.read_text() == "network n {\n  input 1x8x8\n  conv 4 3x3\n}\n"
        and path.stat().st_mode & 0o777 == 0o640
    )
    assert main(["fmt", "--check", str(path)]) == 0


def test_a_file_that_does_not_parse_is_left_alone(tmp_path, capsys):
    path = tmp_path / "bad.cnn"
    original = "network n {\n  input 1x8x8\n  conv   4 3x3 )\n}\n"
    path.write_text(original)
    assert main(["fmt", str(path)]) == 1
    assert "[syntax-error]" in capsys.readouterr().err and path.read_text() == original


def test_meaning_sees_real_changes_only():
    a = parse_source("network n {\n  input 1x8x8\n  conv 4 3x3\n}\n")
    b = parse_source("network n {\n    input   1x8x8\n  conv  4  3x3   # c\n}\n")
    c = parse_source("network n {\n  input 1x8x8\n  conv 4 5x5\n}\n")
    assert meaning(a) == meaning(b) != meaning(c)


def test_crlf_files_keep_their_line_endings(tmp_path, capsys):
    """A checkout with Windows line endings: formatting keeps CRLF, and a formatted CRLF
    file passes `fmt --check` (it used to be 'reformatted' to LF every time)."""
    canonical = (ROOT / "specs" / "lenet5.cnn").read_text(encoding="utf-8")
    crlf = tmp_path / "crlf.cnn"
    crlf.write_bytes(canonical.replace("\n", "\r\n").encode())
    assert main(["fmt", "--check", str(crlf)]) == 0, capsys.readouterr().out
    messy = tmp_path / "messy.cnn"
    messy.write_bytes(canonical.replace("\n  ", "\n").replace("\n", "\r\n").encode())
    assert main(["fmt", str(messy)]) == 0
    assert messy.read_bytes() == crlf.read_bytes()
    assert format_text("network n {\r\n input 1x8x8\n}\n") == "network n {\r\n  input 1x8x8\r\n}\r\n"
    assert format_text(canonical) == canonical  # LF stays LF
