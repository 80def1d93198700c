"""The grammar file itself: conflict-free under Lark's strict mode, and the one the
parser runs: cnnspec/language/lalr_parser.py is generated from it (grammars/generate.py) and must
parse every input exactly as `lark.Lark(grammar)` does, errors included."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import lark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnspec
from cnnspec.language import lalr_parser
from cnnspec.language.parse import _parser, _ToAst, grammar_path
from tests.conftest import ROOT, SPECS
from tests.helpers import TOKENS


def _grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")


def test_grammar_has_no_conflicts_or_colliding_terminals():
    # strict=True turns shift/reduce conflicts and colliding terminals into errors.
    lark.Lark(_grammar_text(), parser="lalr", strict=True, maybe_placeholders=True)


def test_parser_loads_the_shipped_grammar_file():
    path = grammar_path()
    assert path.name == "cnnspec.lark" and path.parent.name == "grammars"
    assert "layer: NAME (value | option)* branches? source? alias? expect?" in _grammar_text()


def test_generated_parser_is_made_from_this_grammar():
    digest = hashlib.sha256(grammar_path().read_bytes()).hexdigest()
    assert lalr_parser.GRAMMAR_SHA256 == digest, "grammar changed: run python grammars/generate.py"
    check = subprocess.run(
        [sys.executable, "grammars/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout


_REFERENCE = lark.Lark(
    _grammar_text(), parser="lalr", lexer="contextual", transformer=_ToAst(), maybe_placeholders=True
)


def _outcome(parser, transformer, text: str):
    """What a parser makes of the text: the AST, or where and why it stopped."""
    transformer.path, transformer.problems = "t.cnn", []
    try:
        return ("ok", parser.parse(text), tuple(transformer.problems))
    except Exception as exc:  # both parsers raise their own (same-named) Lark exception types
        expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None)
        token = getattr(exc, "token", None)
        return (
            type(exc).__name__,
            getattr(exc, "line", None),
            getattr(exc, "column", None),
            frozenset(expected or ()),
            None if token is None else (token.type, str(token)),
        )


def _same_parse(text: str) -> None:
    text = text if text.endswith("\n") else text + "\n"
    generated, transformer = _parser()
    reference = _outcome(_REFERENCE, _REFERENCE.options.transformer, text)
    assert _outcome(generated, transformer, text) == reference


def test_generated_parser_agrees_with_lark_on_every_shipped_spec():
    paths = sorted(SPECS.rglob("*.cnn")) + sorted((ROOT / "docs" / "specs").glob("*.cnn"))
    assert len(paths) > 20
    outcomes = set()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        _same_parse(text)
        outcomes.add(_outcome(_REFERENCE, _REFERENCE.options.transformer, text + "\n")[0])
    assert "ok" in outcomes  # the comparison saw real ASTs, not only errors


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from([*TOKENS, "\n", ";", "residual", "concat", "shortcut", "+", "//", "*"]), max_size=40
    )
)
def test_generated_parser_agrees_with_lark_on_token_soup(tokens):
    _same_parse(" ".join(tokens))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(sorted(SPECS.glob("*.cnn"))), position=st.integers(0, 5000), cut=st.integers(0, 20)
)
def test_generated_parser_agrees_with_lark_on_cut_specs(seed, position, cut):
    text = seed.read_text(encoding="utf-8")
    position %= len(text) + 1
    _same_parse(text[:position] + text[position + cut :])


# ------------------------------------------------------------------ what the generator swaps


def test_every_swap_finds_its_text_in_the_installed_larks_output():
    """grammars/generate.py swaps three pieces of Lark's stand-alone module; a Lark release
    that writes them differently must stop the generator, not ship a half-swapped module."""
    sys.path.insert(0, str(ROOT / "grammars"))
    try:
        import generate
    finally:
        sys.path.remove(str(ROOT / "grammars"))
    result = generate.lark_standalone()
    assert result.returncode == 0, result.stderr
    original = result.stdout
    trimmed = generate.trim(original)
    for old, new in generate.TRIMS:
        assert original.count(old) == 1 and old not in trimmed and new in trimmed
    with pytest.raises(ValueError, match="found it 0 times"):
        generate.trim(trimmed)  # the swapped text is gone: a second pass must refuse
    shipped = (ROOT / "cnnspec" / "language" / "lalr_parser.py").read_text(encoding="utf-8")
    assert all(new in shipped for _, new in generate.TRIMS)


def _alternation(terminals) -> re.Pattern:
    """Lark's own scanner: one alternation of the terminals, in order."""
    return re.compile("|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [*TOKENS, "\n", "\\\n", "  ", "# note\n", ";", "{", "}", "-3", "1e-3", ".5", "3x3", '"a b"']
        ),
        min_size=1,
        max_size=6,
    )
)
def test_each_lexer_state_matches_as_larks_alternation_would(tokens):
    """The swapped scanner tries each terminal's pattern in order; in every one of the
    contextual lexer's states it must take the token, and the type, the alternation takes."""
    text = "".join(tokens)
    frontend = _parser()[0].parser
    scanners = {id(lexer): lexer.scanner for lexer in frontend.lexer.lexers.values()}
    for scanner in scanners.values():
        alternation = _alternation(scanner.terminals)
        found = alternation.match(text)
        expected = (found.group(0), found.lastgroup) if found else None
        assert scanner.match(lalr_parser.TextSlice.cast_from(text), 0) == expected
        whole = alternation.fullmatch(text)
        assert scanner.fullmatch(text) == (whole.lastgroup if whole else None)


@pytest.mark.parametrize("spec", ["specs/lenet5.cnn", "specs/cifar.cnn"])  # plain path; Lark's
def test_check_imports_neither_lark_nor_what_only_larks_unused_paths_need(spec):
    code = (
        f"import sys; from cnnspec.cli import main; main(['check', '{spec}']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'logging', 'pickle', 'shutil')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------ the plain fast path


def _through_lark(text: str, path: str = "t.cnn"):
    """What Lark (the reference parser) builds: the SpecFile parse_source would return."""
    from cnnspec.language.parse import spec_file

    transformer = _REFERENCE.options.transformer
    transformer.path, transformer.problems = path, []
    items = _REFERENCE.parse(text if text.endswith("\n") else text + "\n")
    assert not transformer.problems
    return spec_file(path, text, items)


def test_the_plain_path_builds_lark_s_ast_for_every_shipped_spec_it_takes():
    from cnnspec.language.plain import parse_plain

    paths = sorted(SPECS.rglob("*.cnn")) + sorted((ROOT / "docs" / "specs").glob("*.cnn"))
    taken = 0
    for path in paths:
        text = path.read_text(encoding="utf-8")
        plain = parse_plain(text, str(path))
        if plain is not None:
            taken += 1
            assert plain == _through_lark(text, str(path)), path
    assert taken >= 5  # LeNet-5 and the tutorial's plain specs


_PLAIN_WORDS = [
    "conv", "8", "3x3", "1x1x2", "pad=same", "stride=2", "0.5", "relu", "x", "x3", "pad=1x2", "007", "in",
    "alpha=0.2", "# a comment", "#",
]  # fmt: skip
_REFUSED_WORDS = [
    "as", "from", "all", "input", "a=b=c", "k=", "=", "-1", "1e3", "1.", ".5", "9" * 20, "3x",
    "{", "}", "(", ";", "->", "\t", "é", '"p"', "[1]",
]  # fmt: skip


@st.composite
def _plainish(draw):
    """Networks of one-line layers, with now and then something the plain path must refuse."""
    lines = []
    for n in range(draw(st.integers(1, 2))):
        lines.append(draw(st.sampled_from([f"network n{n} {{", f"network  n{n}{{", f"network n{n} {{  # c"])))
        lines.append(f"  input {draw(st.sampled_from(['1x8x8', '16', '3x32x32', '1x8x8', '3x 8']))}")
        for _ in range(draw(st.integers(0, 6))):
            words = [draw(st.sampled_from(["conv", "pool", "relu", "x", "in"]))]
            words += draw(st.lists(st.sampled_from(_PLAIN_WORDS), max_size=5))
            if draw(st.integers(0, 8)) == 0:  # now and then, something only Lark may judge
                words.insert(draw(st.integers(0, len(words))), draw(st.sampled_from(_REFUSED_WORDS)))
            lines.append(draw(st.sampled_from(["  ", "    ", ""])) + " ".join(words))
            if draw(st.integers(0, 5)) == 0:
                lines.append("")
        lines.append(draw(st.sampled_from(["}", "  }", "} ", "}  # end", "}", "}}"])))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_plainish())
def test_the_plain_path_agrees_with_lark_or_steps_aside(text):
    """Whatever the plain path builds, Lark builds too, span for span; what Lark refuses,
    the plain path never takes (so every syntax error still comes from Lark)."""
    from cnnspec.language.plain import parse_plain

    plain = parse_plain(text, "t.cnn")
    if plain is not None:
        assert plain == _through_lark(text)


@given(
    lines=st.lists(
        st.sampled_from(["conv 8 3x3 pad=same relu", "batchnorm", "pool max 2", "dense 10", "dropout 0.5"]),
        max_size=30,
    )
)
@settings(max_examples=60, deadline=None)
def test_plain_specs_take_the_plain_path(lines):
    from cnnspec.language.plain import parse_plain

    text = "network n {\n  input 3x32x32\n" + "".join(f"  {line}\n" for line in lines) + "}\n"
    plain = parse_plain(text, "t.cnn")
    assert plain is not None and plain == _through_lark(text)


def test_every_syntax_error_of_a_file_is_reported_in_one_run():
    text = "network n {\n  input 1x8x8\n  conv 4 3x3,\n  relu()\n  concat a, b\n  pool max 2\n}\n"
    result = cnnspec.check_source(text, "t.cnn")
    found = [(d.code, d.span.line, d.span.column) for d in result.diagnostics]
    assert found == [("syntax-error", 3, 13), ("syntax-error", 4, 8), ("syntax-error", 5, 11)]
    assert result.diagnostics[2].help.endswith("`concat a b`")
    assert result.diagnostics[0].help.endswith("`conv 4 3x3`")  # no trailing space


def test_a_line_that_opens_a_brace_ends_the_reading_at_its_error():
    text = "network n {\n  input 1x8x8\n  residual,\n  {\n  }\n  relu,\n}\n"
    result = cnnspec.check_source(text, "t.cnn")
    assert [d.span.line for d in result.diagnostics] == [3]


def test_reading_on_after_syntax_errors_is_bounded_on_a_large_file(monkeypatch):
    from cnnspec.language import parse

    lines = "\n".join("  conv 4 1x1; relu" for _ in range(2_000))
    text = "network n {\n  input 1x8x8\n" + lines + "\n" + "\n".join("  relu," for _ in range(30)) + "\n}\n"
    monkeypatch.setattr(parse, "MAX_REPARSED", 3 * len(text))  # three parses of the file read on
    errors = cnnspec.check_source(text, "t.cnn").errors
    assert len(errors) == 4 and all(e.code == "syntax-error" for e in errors)
