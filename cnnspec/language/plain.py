"""A fast path for the plainest specs: the AST Lark would build, built line by line.

Generated specs (architecture search, a 6,000-layer chain) are almost always networks of
one-line layers: `conv 16 3x3 pad=same relu`. Lark's LALR loop spends some 8 us a token on
them, most of a check's time. This module recognises exactly that subset and nothing else:
networks without a base, an `input`, layer lines of names, whole or decimal numbers,
sizes and `KEY=VALUE` options, one statement a line, closing braces alone on their line,
blank lines and comments. Anything else in the file (a block, `use`, `;`, a keyword, a tab,
a sign, an exponent, a string, brackets, non-ASCII) returns None and the file goes to Lark.

The result must equal Lark's, field by field and span by span: tests/test_language_grammar.py
compares the two on every shipped spec and on generated plain specs.
"""

from __future__ import annotations

import re

from ..base.diagnostics import Span
from . import syntax as ast

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Each token as the grammar reads it; longer forms (signs, exponents, 20+ digits) go to Lark.
TOKEN = re.compile(
    r"(?P<dims>[0-9]{1,18}(?:x[0-9]{1,18})+)|(?P<decimal>[0-9]{1,18}\.[0-9]{1,18})|(?P<whole>[0-9]{1,18})"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:=(?P<value>.*))?"
)
NETWORK = re.compile(r"network +([A-Za-z_][A-Za-z0-9_]*) *\{ *")
CLOSE = re.compile(r" *\} *")
# Words the grammar reads as keywords, never as a layer or a value.
KEYWORDS = frozenset(
    {"use", "network", "block", "from", "input", "shortcut", "as", "repeat", "output"}
    | {"drop", "last", "freeze", "through", "all"}
)
UNUSUAL = re.compile(r"[^A-Za-z0-9_ .={}]")  # outside comments, anything outside the subset


def parse_plain(text: str, path: str) -> ast.SpecFile | None:
    """The AST of a plain spec, or None when the text is not one (Lark parses it then)."""
    # A comment runs to the end of its line and is no part of the AST (the grammar's _NL).
    lines = [line.split("#", 1)[0] for line in text.split("\n")] if "#" in text else text.split("\n")
    if any(UNUSUAL.search(line) for line in lines):
        return None
    networks: list[ast.NetworkDef] = []
    index = 0  # of the next line to read
    while index < len(lines):
        opened = NETWORK.fullmatch(lines[index])
        index += 1
        if opened is None:
            if lines[index - 1].strip():
                return None
            continue
        span = Span(path, index, opened.start(1) + 1, opened.end(1) + 1)  # the name, as Lark's
        body: list[ast.Statement] = []
        while index < len(lines) and not CLOSE.fullmatch(lines[index]):
            if lines[index].strip():
                statement = _statement(lines[index], index + 1, path)
                if statement is None:
                    return None
                body.append(statement)
            index += 1
        if index == len(lines):  # never closed: Lark's message says where
            return None
        index += 1
        networks.append(ast.NetworkDef(opened.group(1), None, None, tuple(body), span))
    return ast.SpecFile(path=path, source=text, uses=(), networks=tuple(networks), blocks=())


def _statement(line: str, number: int, path: str) -> ast.Statement | None:
    words = line.split(" ")
    column = 1
    tokens: list[tuple[str, int]] = []  # (text, 1-based column)
    for word in words:
        if word:
            tokens.append((word, column))
        column += len(word) + 1
    op, op_column = tokens[0]
    if not NAME.fullmatch(op):
        return None
    if op == "input":
        return _input(tokens, number, path)
    if op in KEYWORDS:
        return None
    args: list[ast.Value] = []
    options: list[ast.Option] = []
    for text, column in tokens[1:]:
        found = TOKEN.fullmatch(text)
        if found is None:
            return None
        if found.group("value") is None:
            value = _value(found, text, number, column, path)
            if value is None:
                return None
            args.append(value)
            continue
        key, written = found.group("name"), found.group("value")
        start = column + len(key) + 1
        inner = TOKEN.fullmatch(written)
        if key in KEYWORDS or inner is None or inner.group("value") is not None:
            return None
        value = _value(inner, written, number, start, path)
        if value is None:
            return None
        options.append(ast.Option(key, value, Span(path, number, column, column + len(key))))
    span = Span(path, number, op_column, op_column + len(op))
    return ast.LayerStmt(op, tuple(args), tuple(options), None, None, span)


def _value(found: re.Match, text: str, number: int, column: int, path: str) -> ast.Value | None:
    span = Span(path, number, column, column + len(text))
    if found.group("dims"):
        return ast.Value("dims", tuple(int(p) for p in text.split("x")), span)
    if found.group("decimal"):
        return ast.Value("number", float(text), span, text)
    if found.group("whole"):
        return ast.Value("number", int(text), span, text)
    return None if text in KEYWORDS else ast.Value("word", text, span)


def _input(tokens: list[tuple[str, int]], number: int, path: str) -> ast.InputStmt | None:
    if len(tokens) != 2:
        return None
    text, column = tokens[1]
    found = TOKEN.fullmatch(text)
    if found is None or not (found.group("dims") or found.group("whole")):
        return None
    shape = tuple(int(p) for p in text.split("x"))
    return ast.InputStmt(shape, Span(path, number, column, column + len(text)), text)
