"""The grammar file itself: conflict-free under Lark's strict mode, and the one the
parser loads."""

from __future__ import annotations

from lark import Lark

from cnnspec.parse import grammar_path


def test_grammar_has_no_conflicts_or_colliding_terminals():
    # strict=True turns shift/reduce conflicts and colliding terminals into errors.
    Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", strict=True, maybe_placeholders=True)


def test_parser_loads_the_shipped_grammar_file():
    path = grammar_path()
    assert path.name == "cnnspec.lark" and path.parent.name == "grammars"
    assert "layer: NAME (value | option)* branches? source? alias? expect?" in path.read_text(
        encoding="utf-8"
    )
