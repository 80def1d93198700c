"""The Pygments lexer: found through its entry point, no error tokens on any shipped spec."""

from __future__ import annotations

import pytest
from pygments import lex
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator

from cnnspec.pygments_lexer import CnnspecLexer
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
