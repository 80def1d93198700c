"""`cnnspec fmt`: one canonical layout for .cnn files, comments kept.

The layout keeps the writer's line breaks and statements and changes only the space
between them: two spaces of indent per open brace, one space between words, none around
`=` in options or inside brackets, one after `,` and `;`, `{ a; b }` on one line, binary
`+`/`-` spaced and `*`/`//`/`:` tight, a line continued with `\\` indented two more levels,
at most one blank line (none just inside braces), trailing comments two spaces
after the code and aligned across consecutive commented lines. Formatting twice changes
nothing. A file is only rewritten when it parses to the same statements afterwards.
"""

from __future__ import annotations

import dataclasses
import re

TOKEN = re.compile(
    r"""
    (?P<comment>\#.*)
  | (?P<string>"[^"\n]*")
  | (?P<arrow>->)
  | (?P<floordiv>//)
  | (?P<dims>\d+(?:x\d+)+)
  | (?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)  # as the grammar: `-1` is one number
  | (?P<word>[A-Za-z_]\w*)
  | (?P<punct>[{}()\[\],;=+\-*:])
  | (?P<space>[ \t]+)
  | (?P<other>.)
    """,
    re.X,
)
INDENT = "  "


def _tokens(line: str) -> tuple[list[tuple[str, str]], str | None]:
    """(kind, text) of the code, and the trailing comment (None when there is none)."""
    tokens: list[tuple[str, str]] = []
    comment = None
    for match in TOKEN.finditer(line):
        kind = match.lastgroup or "other"
        if kind == "space":
            continue
        if kind == "comment":
            comment = match.group().rstrip()
            break
        tokens.append((kind, match.group()))
    return tokens, comment


def _join(tokens: list[tuple[str, str]], block_header: bool) -> str:
    out = ""
    previous: tuple[str, str] | None = None
    tight_next = False  # no space before the next token
    for i, (kind, text) in enumerate(tokens):
        space = bool(out)
        if tight_next or text in {")", "]", ",", ";"}:
            space = False
        elif text == "=" or (previous is not None and previous[1] == "="):
            space = False
        elif text in {"*", "//", ":"} or (previous is not None and previous[1] in {"*", "//", ":"}):
            space = False  # `4*c`, `0:64`
        elif text == "(" and block_header and i == 2:  # block NAME(params)
            space = False
        elif text == "}" and previous is not None and previous[1] == "{":
            space = False
        tight_next = text in {"(", "["}
        out += (" " if space else "") + text
        previous = (kind, text)
    return out


def format_text(text: str) -> str:
    """The canonical layout. Line endings stay what the file's first one is (CRLF or LF),
    so a checkout with Windows line endings is not rewritten line by line."""
    newline = "\r\n" if text.split("\n", 1)[0].endswith("\r") and "\n" in text else "\n"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    formatted: list[tuple[str, str | None]] = []  # (code with indent, trailing comment)
    depth = 0
    continued = False  # the line before ended with `\`: this one continues its statement
    for raw in lines:
        tokens, comment = _tokens(raw)
        if not tokens:
            formatted.append(("", None) if comment is None else (INDENT * depth + comment, None))
            continued = False
            continue
        opens = sum(1 for _, t in tokens if t == "{") - sum(1 for _, t in tokens if t == "}")
        leading_close = 0
        for _, t in tokens:  # `}` and `} shortcut {` lines sit at the outer level
            if t != "}":
                break
            leading_close += 1
        indent = max(depth - leading_close, 0) + (2 if continued else 0)
        code = INDENT * indent + _join(tokens, tokens[0][1] == "block" and not continued)
        formatted.append((code, comment))
        depth = max(depth + opens, 0)
        continued = tokens[-1][1] == "\\"
    laid_out = _layout(formatted)
    return laid_out if newline == "\n" else laid_out.replace("\n", newline)


def _layout(lines: list[tuple[str, str | None]]) -> str:
    # trailing comments: aligned within each run of consecutive commented code lines
    out: list[str] = []
    i = 0
    while i < len(lines):
        code, comment = lines[i]
        if comment is None:
            out.append(code)
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j][1] is not None and lines[j][0].strip():
            j += 1
        column = max(len(c) for c, _ in lines[i:j]) + 2
        out += [f"{c.ljust(column)}{m}" for c, m in lines[i:j]]
        i = j
    # blank lines: none at the start or end, never two in a row, none just inside braces
    result: list[str] = []
    for line in out:
        if not line.strip():
            if result and result[-1] and not result[-1].split("#")[0].rstrip().endswith("{"):
                result.append("")
            continue
        if line.lstrip().startswith("}") and result and not result[-1]:
            result.pop()
        result.append(line.rstrip())
    while result and not result[-1]:
        result.pop()
    return "\n".join(result) + "\n" if result else ""


# ------------------------------------------------------------------ the safety net

_AS_TYPED = {"written", "expect_text", "source", "path"}  # the text as typed, and where it was


def meaning(node):
    """The parse without positions and as-typed text: what formatting must not change."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,) + tuple(
            meaning(getattr(node, f.name))
            for f in dataclasses.fields(node)
            if f.name not in _AS_TYPED and not f.name.endswith(("span", "spans"))  # positions
        )
    if isinstance(node, (tuple, list)):
        return tuple(meaning(x) for x in node)
    return node


class MeaningChanged(Exception):
    """Formatting would change what a spec means: a cnnspec bug; the text is kept."""


def reformat(text: str, path: str) -> str:
    """The canonical layout of a spec that parses, checked to mean the same. Raises
    CnnspecError when it does not parse (nothing is formatted then) and MeaningChanged."""
    from .parse import parse_source

    before = parse_source(text, path)
    formatted = format_text(text)
    if formatted != text and meaning(parse_source(formatted, path)) != meaning(before):
        raise MeaningChanged(f"formatting {path} would change what it means; the file is left as it is")
    return formatted
