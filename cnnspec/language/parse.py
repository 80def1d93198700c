"""Text -> surface AST. Lark (LALR, grammar in grammars/cnnspec.lark) builds the AST
directly through an inline Transformer; syntax errors become cnnspec diagnostics.

The parser is Lark's stand-alone one, generated from the grammar into `lalr_parser.py`
(`python grammars/generate.py`): no `import lark` and no parse tables loaded from a cache
file, which takes about half the instructions at start-up."""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from functools import lru_cache
from pathlib import Path

from ..base.diagnostics import CnnspecError, Diagnostic, Span, error
from . import syntax as ast
from .lalr_parser import (
    Lark,
    Lark_StandAlone,
    Token,
    Transformer,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    v_args,
)
from .plain import parse_plain

_HERE = Path(__file__).resolve().parent
# installed: cnnspec/grammars/ (the wheel maps it there); a checkout: grammars/ beside cnnspec/
GRAMMAR_CANDIDATES = (
    _HERE.parent / "grammars" / "cnnspec.lark",
    _HERE.parent.parent / "grammars" / "cnnspec.lark",
)


def grammar_path() -> Path:
    for candidate in GRAMMAR_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("cnnspec.lark is missing from the installation")


# Terminal names in Lark's messages -> words a person uses.
_PLAIN_TERMINALS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "DIMS": "a size such as 3x3",
    "STRING": 'a quoted path such as "base.cnn"',
    "_NL": "the end of the line",
    "$END": "the end of the file",
}


def _span(path: str, token: Token) -> Span:
    end = token.end_column if token.end_line == token.line else None
    return Span(path, token.line or 1, token.column or 1, end)


@v_args(inline=True)
class _ToAst(Transformer):
    """One tiny method per rule; it only builds nodes (validation lives in resolve/layers)."""

    path = "<string>"
    # Numbers too large for int64 or not finite (`1e400`): a lexical problem, collected
    # here (raising inside a Transformer would arrive wrapped) and reported after parsing.
    problems: list[Diagnostic] = []

    def _s(self, token: Token) -> Span:
        return _span(self.path, token)

    def _too_large(self, tok: Token, what: str) -> None:
        self.problems.append(
            error(
                "too-large",
                f"{what} '{_shorten(str(tok))}' is out of range: cnnspec takes whole numbers up to "
                f"{MAX_INT:,} (2^63 - 1) and finite decimals",
                self._s(tok),
            )
        )

    # values
    def number(self, tok):
        text = str(tok)
        is_int = all(c not in text for c in ".eE")
        if is_int:
            digits = text.lstrip("-").lstrip("0")
            if len(digits) > 19 or abs(int(text)) > MAX_INT:  # checked on length first: int() of
                self._too_large(tok, "number")  # 5,000 digits is refused by Python itself
                return ast.Value("number", 0, self._s(tok), text)
            return ast.Value("number", int(text), self._s(tok), text)
        value = float(text)
        if not math.isfinite(value):
            self._too_large(tok, "number")
            return ast.Value("number", 0.0, self._s(tok), text)
        return ast.Value("number", value, self._s(tok), text)

    def dims(self, tok):
        parts = tok.split("x")
        if any(len(p.lstrip("0")) > 19 or int(p) > MAX_INT for p in parts):
            self._too_large(tok, "size")
            return ast.Value("dims", tuple(0 for _ in parts), self._s(tok), str(tok))
        return ast.Value("dims", tuple(int(p) for p in parts), self._s(tok))

    def word(self, tok):
        return ast.Value("word", str(tok), self._s(tok))

    def string(self, tok):
        return ast.Value("string", str(tok)[1:-1], self._s(tok))

    def tuple(self, bracket, *values):
        return ast.Value("tuple", values, self._s(bracket))

    def group(self, bracket, value):
        return value

    def binop(self, left, op, right):
        depth = 1 + max(left.depth, right.depth)
        if depth > MAX_EXPRESSION_DEPTH:  # evaluation recurses: keep it far from the stack limit
            if depth == MAX_EXPRESSION_DEPTH + 1:
                self.problems.append(
                    error(
                        "too-deep",
                        f"arithmetic with more than {MAX_EXPRESSION_DEPTH} operators in a row",
                        left.span,
                        "compute the value, or give it a block parameter",
                    )
                )
            return ast.Value("number", 0, left.span, depth=depth)
        return ast.Value("expr", (str(op), left, right), left.span, depth=depth)

    def range(self, start, colon, end):
        depth = 1 + max(start.depth, end.depth)
        first, last = start.span, end.span
        span = dataclasses.replace(first, end_column=last.end_column if last.line == first.line else None)
        return ast.Value("range", (start, end), span, depth=depth)

    def list(self, bracket, *values):
        return ast.Value("list", tuple(v for v in values if v is not None), self._s(bracket))

    def shape(self, tok):
        text = str(tok)
        parts = text.split("x") if "x" in text else [text]
        if not all(p.isdigit() for p in parts):  # `-> 2.5`, `input -3`: not a shape
            return None, self._s(tok), text
        if any(len(p.lstrip("0")) > 19 or int(p) > MAX_INT for p in parts):
            self._too_large(tok, "size")
            return None, self._s(tok), text
        return tuple(int(p) for p in parts), self._s(tok), text

    # statements
    def option(self, name, value):
        return ast.Option(str(name), value, self._s(name))

    def alias(self, *names):
        return ("alias", tuple(str(n) for n in names), tuple(self._s(n) for n in names))

    def expect(self, shape):
        return ("expect", shape)

    def body(self, *statements):
        return ("body", tuple(statements))

    def shortcut(self, body):
        return ("shortcut", body[1])

    def branches(self, *items):
        bodies = tuple(item[1] for item in items if item[0] == "body")
        shortcut = next((item[1] for item in items if item[0] == "shortcut"), None)
        return ("branches", bodies, shortcut)

    def source(self, name):
        return ("source", str(name), self._s(name))

    def layer(self, op, *items):
        args, options, alias, expect, expect_span, expect_text = [], [], None, None, None, None
        more_names: tuple[str, ...] = ()
        more_spans: tuple[Span, ...] = ()
        branches, shortcut, source, source_span = (), None, None, None
        for item in items:
            if isinstance(item, ast.Value):
                args.append(item)
            elif isinstance(item, ast.Option):
                options.append(item)
            elif item is None:
                continue
            elif item[0] == "alias":
                alias, more_names, more_spans = item[1][0], item[1][1:], item[2][1:]
            elif item[0] == "branches":
                _, branches, shortcut = item
            elif item[0] == "source":
                _, source, source_span = item
            else:
                expect, expect_span, expect_text = item[1]
                expect = expect if expect is not None else ()
        return ast.LayerStmt(
            str(op),
            tuple(args),
            tuple(options),
            alias,
            expect,
            self._s(op),
            expect_span,
            expect_text,
            branches,
            shortcut,
            source,
            source_span,
            more_names,
            more_spans,
        )

    def output_stmt(self, *names):
        spans = tuple(self._s(n) for n in names)
        return ast.OutputStmt(tuple(map(str, names)), spans, spans[0])

    def input_stmt(self, shape):
        dims, span, text = shape
        return ast.InputStmt(dims if dims is not None else (), span, text)

    def repeat(self, count, body):
        return ast.RepeatStmt(count, body[1], count.span)

    def drop_from(self, name):
        return ast.DropStmt("from", str(name), self._s(name))

    def drop_last(self, count):
        value = self.number(count)  # a too-large count is reported by number()
        return ast.DropStmt("last", value.data, value.span)

    def freeze_all(self, keyword):
        return ast.FreezeStmt("all", (), self._s(keyword))

    def freeze_through(self, name):
        return ast.FreezeStmt("through", (str(name),), self._s(name))

    def freeze_names(self, *names):
        return ast.FreezeStmt("names", tuple(map(str, names)), self._s(names[0]))

    # definitions
    def base(self, name):
        return name

    def network(self, name, *rest):
        base, body = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
        return ast.NetworkDef(
            str(name),
            str(base) if base else None,
            self._s(base) if base else None,
            body[1],
            self._s(name),
        )

    def param(self, name, default=None):
        return ast.Param(str(name), default, self._s(name))

    def block(self, name, *rest):
        params = tuple(p for p in rest if isinstance(p, ast.Param))
        body = next(item[1] for item in rest if isinstance(item, tuple) and item and item[0] == "body")
        return ast.BlockDef(str(name), params, body, self._s(name))

    def use_stmt(self, tok):
        return ast.UseStmt(str(tok)[1:-1], self._s(tok))

    def start(self, *items):
        return items


_lock = threading.Lock()
MAX_INT = 2**63 - 1  # ONNX and numpy sizes are int64
MAX_EXPRESSION_DEPTH = 100


def _shorten(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[: keep // 2]}…{text[-keep // 2 :]} ({len(text)} characters)"


@lru_cache(maxsize=1)
def _parser() -> tuple[Lark, _ToAst]:
    transformer = _ToAst()
    lark = Lark_StandAlone(transformer=transformer)
    return lark, transformer


MAX_NESTING = 8  # tuples and lists; deeper is never meant and would exhaust the stack
MAX_LINE_CHARS = 20_000  # a line of 400,000 words is a mistake, and slow to parse


def _check_line_lengths(text: str, path: str) -> None:
    if len(text) <= MAX_LINE_CHARS:
        return
    for number, line in enumerate(text.split("\n"), 1):
        if len(line) > MAX_LINE_CHARS:
            raise CnnspecError(
                [
                    error(
                        "too-large",
                        f"line {number} is {len(line):,} characters long; lines are limited to "
                        f"{MAX_LINE_CHARS:,}",
                        Span(path, number, MAX_LINE_CHARS + 1),
                        "split it: a `\\` at the end of a line continues it",
                    )
                ]
            )


# A string or a comment is skipped whole: only brackets outside them nest.
_BRACKET_OR_SKIPPED = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[\[\]()]')


def _check_nesting(text: str, path: str) -> None:
    if text.count("[") + text.count("(") < MAX_NESTING:
        return
    depth = 0
    for match in _BRACKET_OR_SKIPPED.finditer(text):
        if match.group()[0] in '"#':
            continue
        depth += 1 if match.group() in "[(" else -1
        if depth > MAX_NESTING:
            line = text.count("\n", 0, match.start()) + 1
            column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
            raise CnnspecError(
                [
                    error(
                        "syntax-error",
                        f"brackets nest more than {MAX_NESTING} deep",
                        Span(path, line, column),
                    )
                ]
            )


def parse_source(text: str, path: str = "<string>") -> ast.SpecFile:
    """Parse one file's text; raise CnnspecError with a positioned syntax error. CR, LF
    and CRLF each end a line, as editors, fmt and the language server count lines."""
    original = text
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    _check_line_lengths(text, path)
    _check_nesting(text, path)
    plain = parse_plain(text, path)  # the plainest specs without Lark's loop (plain.py)
    if plain is not None:
        return plain if original is text else dataclasses.replace(plain, source=original)
    lark, transformer = _parser()
    source = text if text.endswith("\n") else text + "\n"
    with _lock:
        transformer.path = path
        errors: list[Diagnostic] = []
        items: tuple | None = None
        while items is None:
            transformer.problems = []
            try:
                items = lark.parse(source)  # start() returns a tuple
            except UnexpectedInput as exc:
                errors.append(_syntax_error(exc, text, path, lark))
                rest = _without_line(source, exc, errors)
                if rest is None:
                    raise CnnspecError(errors) from None
                source = rest
        if errors or transformer.problems:
            raise CnnspecError(errors + transformer.problems)
    return spec_file(path, original, items)


MAX_SYNTAX_ERRORS = 20  # then the rest of the file goes unread: the first ones are the ones to fix
MAX_REPARSED = 2 << 20  # characters parsed again to read on, in all: bounded time on a large file


def _without_line(source: str, exc: UnexpectedInput, errors: list[Diagnostic]) -> str | None:
    """The source with the line of a syntax error blanked (its columns kept, so positions
    stay right), to read on and report every syntax error of the file in one run; None
    where reading on would only repeat it: a line that opens or closes a brace, or whose body
    starts on the next line (blanking it would unbalance the rest), the end of the file, or
    after MAX_SYNTAX_ERRORS (or MAX_REPARSED characters parsed again)."""
    line = getattr(exc, "line", -1)
    lines = source.split("\n")
    if len(errors) >= MAX_SYNTAX_ERRORS or not 1 <= line <= len(lines) or isinstance(exc, UnexpectedEOF):
        return None
    if len(source) * len(errors) > MAX_REPARSED:  # a large file: its first errors are enough
        return None
    code = lines[line - 1].split("#", 1)[0]
    after = next((c for c in (x.split("#", 1)[0].strip() for x in lines[line:]) if c), "")
    if "{" in code or "}" in code or not code.strip() or after.startswith("{"):  # a body it opens
        return None
    lines[line - 1] = " " * len(lines[line - 1])
    return "\n".join(lines)


def spec_file(path: str, source: str, items: tuple) -> ast.SpecFile:
    """The file's AST from the parser's top-level items (uses, networks, blocks)."""
    return ast.SpecFile(
        path=path,
        source=source,
        uses=tuple(i for i in items if isinstance(i, ast.UseStmt)),
        networks=tuple(i for i in items if isinstance(i, ast.NetworkDef)),
        blocks=tuple(i for i in items if isinstance(i, ast.BlockDef)),
    )


def _describe_terminal(name: str, lark: Lark) -> str:
    if name in _PLAIN_TERMINALS:
        return _PLAIN_TERMINALS[name]
    try:
        pattern = lark.get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"'{pattern.value}'" if pattern.type == "str" else name.lower()


_VALUE_STARTS = {"NUMBER", "DIMS", "NAME", "STRING", "LPAR", "LSQB"}


def _expected_words(expected: set[str], lark: Lark) -> str:
    if len(expected) > 3 and expected <= _VALUE_STARTS:
        return "a value (a number, a size such as 3x3, a word, a (tuple) or a [list])"
    if "_NL" in expected and {"NAME", "NUMBER"} <= expected:  # in the middle of a layer line
        return "more arguments, KEY=VALUE, `as NAME`, `-> SHAPE` or the end of the line"
    words = sorted({_describe_terminal(name, lark) for name in expected})
    if len(words) > 6:
        return "a statement"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _unclosed_brace(text: str, path: str) -> Span | None:
    """The `{` that the end of the file leaves open (comments and strings skipped)."""
    stack: list[Span] = []
    for number, line in enumerate(text.splitlines(), 1):
        code = re.sub(r'"[^"\n]*"', lambda m: " " * len(m.group()), line.split("#", 1)[0])
        for column, char in enumerate(code, 1):
            if char == "{":
                stack.append(Span(path, number, column, column + 1))
            elif char == "}" and stack:
                stack.pop()
    return stack[-1] if stack else None


def _definition_inside(text: str, path: str, opened: Span | None) -> Span | None:
    """A `network` or `block` line after the first unclosed '{' (a '}' forgotten above it)."""
    lines = text.split("\n")
    depth = 0
    for number, line in enumerate(lines, 1):
        code = re.sub(r'"[^"\n]*"', lambda m: " " * len(m.group()), line.split("#", 1)[0])
        if depth > 0 and re.match(r"\s*(network|block)\s+\w+", code) and "{" in code:
            return Span(path, number, code.index("{") + 1, code.index("{") + 2)
        depth += code.count("{") - code.count("}")
    return None


def _end_span(text: str, path: str) -> Span:
    lines = text.splitlines() or [""]
    return Span(path, len(lines), len(lines[-1]) + 1)


def _line(text: str, number: int) -> str:
    lines = text.splitlines()
    return lines[number - 1] if 1 <= number <= len(lines) else ""


# Characters that word processors and papers put where a spec needs plain ASCII.
_LOOKALIKES = {
    "×": "write sizes with the letter x: 3x3",
    "→": "write the shape assertion's arrow as ->",
    "−": "write the minus sign as -",
    "–": "write the minus sign as -",
    "“": 'use straight double quotes: "file.cnn"',
    "”": 'use straight double quotes: "file.cnn"',
    "\u00a0": "a no-break space: use an ordinary space",
}


def _syntax_error(exc: UnexpectedInput, text: str, path: str, lark: Lark) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        return _unexpected_character(exc, text, path)
    token = getattr(exc, "token", None)
    expected = set(getattr(exc, "expected", None) or getattr(exc, "accepts", None) or ())
    at_end = isinstance(exc, UnexpectedEOF) or (token is not None and token.type == "$END")
    if at_end or token is None or token.line in (None, -1):
        return _early_end(text, path, expected, lark)
    return _unexpected_token(token, text, path, expected, lark)


def _unexpected_character(exc: UnexpectedCharacters, text: str, path: str) -> Diagnostic:
    position = exc.pos_in_stream or 0
    char = text[position] if position < len(text) else ""
    span = Span(path, exc.line, exc.column)
    help_ = _LOOKALIKES.get(char)
    if char in "\"'":
        help_ = 'strings use double quotes and end on the same line: use "file.cnn"'
    elif help_ is None and char.isalpha():
        help_ = "names use the letters a-z and A-Z, digits and _"
    elif char == ":":
        help_ = _colon_help(_line(text, exc.line))
    return error("syntax-error", f"unexpected character {char!r}", span, help_)


def _colon_help(line: str) -> str:
    """Python's `network n:` or YAML's `stride: 2`, said in cnnspec's words."""
    first = (line.split() or [""])[0]
    if first in ("network", "block", "repeat", "residual"):
        return f"a body goes in braces, not after a colon: `{first} ... {{`, the body, then `}}`"
    return "options are written KEY=VALUE, e.g. stride=2; a colon only joins a channel range (slice 0:64)"


def _early_end(text: str, path: str, expected: set[str], lark: Lark) -> Diagnostic:
    """The text ends where more was expected: most often a '}' never written."""
    span = _end_span(text, path)
    if "RBRACE" not in expected:
        return error("syntax-error", f"the file ends early; expected {_expected_words(expected, lark)}", span)
    opened = _unclosed_brace(text, path)
    nested = _definition_inside(text, path, opened)
    if nested is not None:
        word = _line(text, nested.line).split()[0]
        return error(
            "syntax-error",
            f"'{word}' starts inside another body: is a '}}' missing above?",
            nested,
            "close the network or block above with '}' before this line",
        )
    where = f" (line {span.line})" if opened else ""
    return error(
        "syntax-error",
        f"this '{{' is never closed: the file ends{where} inside its body",
        opened or span,
        "add the closing '}' on a line of its own",
    )


def _unexpected_token(token, text: str, path: str, expected: set[str], lark: Lark) -> Diagnostic:
    span = _span(path, token)
    if token.type == "_NL":
        got = "end of line"
        span = Span(path, token.line, token.column)
    else:
        got = f"'{token}'"
    message = f"unexpected {got}; expected {_expected_words(expected, lark)}"
    line = _line(text, token.line)
    before = line[: token.column - 1]
    help_ = None
    if token.type == "_NL" and "LBRACE" in expected:
        help_ = "put '{' at the end of this line"
    elif token.type == "RBRACE" and "_NL" in expected:
        help_ = "put '}' on a line of its own"
    elif token.type == "RPAR" and before.rstrip().endswith("("):
        called = re.findall(r"([A-Za-z_]\w*)\s*\(\s*$", before)
        help_ = f"write `{called[0]}` without parentheses" if called else "remove the empty parentheses"
    elif token.type == "COLON":
        help_ = _colon_help(line)
    elif token.type == "EQUAL":
        help_ = "options are written KEY=VALUE after the positional arguments, e.g. stride=2"
    elif token.type == "COMMA":  # outside brackets: a Python or Keras habit
        help_ = "separate arguments and names with spaces, not commas"
        if not any(bracket in line for bracket in "([{"):
            help_ += f": `{re.sub(r' *, *', ' ', line.strip()).strip()}`"
    elif token.type == "LBRACE":
        return _misplaced_brace(line, before, expected, span, message)
    return error("syntax-error", message, span, help_)


def _misplaced_brace(line: str, before: str, expected: set[str], span: Span, message: str) -> Diagnostic:
    """An unexpected '{': a nameless network or block, a missing '}' above, a '{' on its own line."""
    help_ = None
    if line.split()[:2] in (["network", "{"], ["block", "{"]):
        word = line.split()[0]
        message = f"'{word}' needs a name before its '{{'"
        help_ = f"for example: `{word} {'lenet5' if word == 'network' else 'cbapd(filters)'} {{`"
    elif line.lstrip().startswith(("network", "block")):
        message = f"'{line.split()[0]}' starts inside another body: is a '}}' missing above?"
        help_ = "close the network or block above with '}' before this line"
    elif not before.strip():
        help_ = "a '{' goes at the end of the line it opens: `residual {`, `repeat 3 {`"
    elif "_NL" in expected:
        help_ = "the body starts on the line after '{'"
    return error("syntax-error", message, span, help_)
