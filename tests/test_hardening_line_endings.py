"""Issue 24, rule 7: line endings are one rule everywhere. CR, LF and CRLF each end a
line in the parser, the diagnostics, fmt, the language server and highlighting, and a
UTF-8 byte-order mark is skipped by all of them. The cases the issue lists, then
generated variants: specs whose lines end in any mix of the three."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnspec
from tests.conftest import ROOT, SPECS
from tests.helpers import cli

generated = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_cr_lf_and_crlf_each_end_a_line_everywhere(ending, tmp_path, capsys):
    """The parser, the diagnostics' source lines, fmt and highlighting count lines as an
    editor does; a CR inside a comment ends the comment."""
    from pygments import lex
    from pygments.token import Comment, Error

    from cnnspec.base.diagnostics import render
    from cnnspec.language.highlight import CnnspecLexer

    lines = ["network n {", "  input 1x8x8  # a note", "  conv 2 3x3", "  pool max 3 -> 2x9x9", "}", ""]
    text = ending.join(lines)
    spec = tmp_path / "e.cnn"
    spec.write_bytes(text.encode())
    result = cnnspec.check(spec)
    assert [(d.code, d.span.line) for d in result.diagnostics] == [("shape-mismatch", 4)]
    assert "   4 |   pool max 3 -> 2x9x9" in render(result.diagnostics[0], result.sources)
    assert [layer.name for layer in result.network().layers] == ["conv1", "pool1"]
    assert cli(capsys, "fmt", str(spec))[0] == 0  # formats (CR-only files become LF)
    tokens = list(lex(text, CnnspecLexer()))
    assert not [v for t, v in tokens if t is Error]
    assert [v for t, v in tokens if t in Comment] == ["# a note"]


def test_a_cr_in_a_comment_does_not_hide_the_line_after_it(tmp_path, capsys):
    spec = tmp_path / "c.cnn"
    spec.write_bytes(b"network n {\n  input 1x8x8  # note\rconv 2 3x3\n}\n")
    assert [layer.name for layer in cnnspec.check(spec).network().layers] == ["conv1"]
    code, _, err = cli(capsys, "fmt", "--check", str(spec))
    assert code == 1 and "internal error" not in err


# ------------------------------------------------------------------ generated variants

# Specs that stand alone (no `use`), as lists of lines.
_SPECS = {
    p.name: p.read_text().splitlines()
    for p in sorted(SPECS.glob("*.cnn"))
    if "use " not in p.read_text() and "\\\n" not in p.read_text()
}
_ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def _respelled(draw) -> tuple[list[str], str]:
    """A spec's lines, some with a comment added, joined by any mix of endings, maybe
    after a byte-order mark: (the lines, the text)."""
    lines = list(_SPECS[draw(st.sampled_from(sorted(_SPECS)))])
    if draw(st.booleans()):
        where = draw(st.integers(0, len(lines)))
        lines.insert(where, "  relu  # a line the others must not swallow")  # a layer after a comment
    endings = draw(st.lists(_ENDINGS, min_size=len(lines), max_size=len(lines)))
    for i in range(1, len(lines)):  # CR, then an empty line ended by LF, is one CRLF: not what we mean
        if endings[i - 1] == "\r" and not lines[i] and endings[i] == "\n":
            endings[i] = "\r\n"
    text = "".join(line + end for line, end in zip(lines, endings))
    return lines, ("\ufeff" if draw(st.booleans()) else "") + text


def _outcome(result) -> tuple:
    layers = tuple((n.name, tuple((e.name, e.output_shape) for e in n.layers)) for n in result.networks)
    diagnostics = tuple(
        (d.code, d.span.line if d.span else None, d.span.column if d.span else None)
        for d in result.diagnostics
    )
    return layers, diagnostics


@generated
@given(_respelled())
def test_any_mix_of_endings_checks_as_lf_does(spelled):
    """The same networks, layers and diagnostics (at the same lines and columns) as the
    file written with LF only, from check and from the language server (whose columns
    count a byte-order mark, as the client's text holds it)."""
    from cnnspec.views.lsp import analyse

    lines, text = spelled
    plain = "\n".join(lines) + "\n"
    assert _outcome(cnnspec.check_source(text, "e.cnn")) == _outcome(cnnspec.check_source(plain, "e.cnn"))
    shift = 1 if text.startswith("\ufeff") else 0
    served = [(d.code, d.span.line, d.span.column) for d in analyse(text, "e.cnn").diagnostics if d.span]
    expected = [
        (d.code, d.span.line, d.span.column + (shift if d.span.line == 1 else 0))
        for d in analyse(plain, "e.cnn").diagnostics
        if d.span
    ]
    assert served == expected


@generated
@given(_respelled())
def test_any_mix_of_endings_formats_as_lf_does(tmp_path_factory, capsys, spelled):
    """fmt writes the LF layout whatever the endings (or says why it cannot, as it does
    for the LF file), and the highlighter sees no error token and one comment per `#`."""
    from pygments import lex
    from pygments.token import Comment, Error

    from cnnspec.language.highlight import CnnspecLexer

    lines, text = spelled
    plain = "\n".join(lines) + "\n"
    folder = tmp_path_factory.mktemp("fmt")
    (folder / "mixed.cnn").write_bytes(text.encode())
    (folder / "plain.cnn").write_text(plain)
    mixed_code, _, _ = cli(capsys, "fmt", str(folder / "mixed.cnn"))
    plain_code, _, _ = cli(capsys, "fmt", str(folder / "plain.cnn"))
    assert mixed_code == plain_code
    if plain_code == 0:
        assert (folder / "mixed.cnn").read_text() == (folder / "plain.cnn").read_text()
    tokens = list(lex(text.lstrip("\ufeff"), CnnspecLexer()))
    assert not [v for t, v in tokens if t is Error]
    comments = [v for t, v in tokens if t in Comment]
    assert all("\r" not in c and "\n" not in c for c in comments)
    assert len(comments) == sum("#" in line for line in lines)
