"""The Pygments lexer: found through its entry point, no error tokens on any shipped spec."""

from __future__ import annotations

import json
import re

import pytest
from pygments import lex
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator

from cnnspec.kinds import ACTIVATIONS, KINDS
from cnnspec.language.highlight import CnnspecLexer
from tests.conftest import ROOT

SHIPPED = sorted(
    p for folder in ("specs", "docs/specs", "examples") for p in (ROOT / folder).glob("**/*.cnn")
)


def test_the_lexer_is_registered_for_cnn_files_and_blocks():
    assert isinstance(get_lexer_by_name("cnn"), CnnspecLexer)
    assert isinstance(get_lexer_for_filename("resnet.cnn"), CnnspecLexer)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shipped_spec_lexes_to_an_error_token(path):
    tokens = list(lex(path.read_text(), CnnspecLexer()))
    assert not [value for token, value in tokens if token in Error]


def test_tokens_carry_their_meaning():
    text = 'use "a.cnn"\nnetwork n from base {  # a comment\n  conv 16 3x3 stride=2 relu as c1 -> 16x8x8\n}\n'
    kinds = {value: token for token, value in lex(text, CnnspecLexer()) if value.strip()}
    assert kinds["network"] in Keyword and kinds["from"] in Keyword and kinds["as"] in Keyword
    assert kinds["conv"] is Name.Builtin and kinds["relu"] is Name.Function
    assert kinds["stride"] is Name.Attribute and kinds["3x3"] in Number and kinds["16"] in Number
    assert kinds["# a comment"] in Comment and kinds["->"] in Operator and kinds["c1"] is Name


# ------------------------------------------------------------------ TextMate grammar and VS Code extension

VSCODE = ROOT / "editors" / "vscode"


def _grammar() -> dict:
    return json.loads((VSCODE / "syntaxes" / "cnn.tmLanguage.json").read_text())


def _scopes(line: str, patterns: list[dict]) -> dict[str, str]:
    """word -> scope, matching the patterns in order at each position, as TextMate does."""
    compiled = [(re.compile(p["match"]), p) for p in patterns]
    found, position = {}, 0
    while position < len(line):
        for regex, pattern in compiled:
            match = regex.match(line, position)
            if match and match.end() > position:
                scope = pattern.get("name") or pattern["captures"]["1"]["name"]
                found[match.group(1) if "captures" in pattern else match.group()] = scope
                position = match.end()
                break
        else:
            position += 1
    return found


def test_the_textmate_grammar_knows_every_kind_and_activation():
    patterns = {p.get("name"): p["match"] for p in _grammar()["patterns"]}
    words = lambda scope: set(re.search(r"\((.*)\)", patterns[scope]).group(1).split("|"))  # noqa: E731
    from cnnspec.language.highlight import COMBINATORS
    from cnnspec.resolve.expand import COMBINATORS as EXPANDED
    from cnnspec.resolve.expand import SPLIT

    assert set(COMBINATORS) == {*EXPANDED, SPLIT}  # the words expansion turns into several layers
    assert words("support.type.layer.cnn") == (set(KINDS) - set(ACTIVATIONS)) | set(COMBINATORS)
    assert words("support.function.activation.cnn") == set(ACTIVATIONS)


def test_the_textmate_grammar_colours_a_spec_line():
    scopes = _scopes("  conv 16 3x3 stride=2 relu as c1 -> 16x8x8  # note", _grammar()["patterns"])
    assert scopes["conv"] == "support.type.layer.cnn" and scopes["relu"] == "support.function.activation.cnn"
    assert (
        scopes["stride"] == "variable.parameter.option.cnn" and scopes["3x3"] == "constant.numeric.size.cnn"
    )
    assert scopes["as"] == "keyword.other.cnn" and scopes["# note"] == "comment.line.number-sign.cnn"


def test_the_vscode_extension_declares_the_language_grammar_and_server():
    package = json.loads((VSCODE / "package.json").read_text())
    (language,) = package["contributes"]["languages"]
    (grammar,) = package["contributes"]["grammars"]
    assert language["id"] == grammar["language"] == "cnn" and language["extensions"] == [".cnn"]
    assert (VSCODE / grammar["path"]).is_file() and grammar["scopeName"] == _grammar()["scopeName"]
    assert (VSCODE / package["main"]).is_file() and (VSCODE / language["configuration"]).is_file()
    assert package["contributes"]["configuration"]["properties"]["cnnspec.command"]["default"] == [
        "cnnspec",
        "lsp",
    ]
    assert "vscode-languageclient" in package["dependencies"]
    assert "LanguageClient" in (VSCODE / "extension.js").read_text()
