"""The surface AST: mirrors the grammar (networks, blocks, repeat, derive), never mutated.

Plain frozen dataclasses: the parser builds one per token group, and they are ten times
cheaper to build than validating models. Validation happens once a line is known to be
a layer, in `cnnspec/kinds/` (Pydantic).
"""

from __future__ import annotations

from typing import Any, Literal, Union

from ..base.diagnostics import Span
from ..base.records import record

ValueKind = Literal["number", "dims", "word", "string", "tuple", "list", "expr", "range"]


@record(slots=True)
class Value:
    """One argument as written: `3`, `0.25`, `5x5`, `relu`, `(1,2,1,2)`, `[[1,0],[0,1]]`."""

    kind: ValueKind
    data: Any  # int | float | tuple[int, ...] | str | tuple[Value, ...]
    span: Span
    written: str | None = None  # a number as typed (`1e3`), for messages
    depth: int = 0  # operators nested in an `expr`, bounded by the parser

    def text(self) -> str:
        if self.written is not None:
            return self.written
        if self.kind == "expr":  # (operator, left, right)
            op, left, right = self.data
            return f"{_operand(left)} {op} {_operand(right)}"
        if self.kind == "dims":
            return "x".join(map(str, self.data))
        if self.kind == "string":
            return f'"{self.data}"'
        if self.kind == "tuple":
            return "(" + ",".join(v.text() for v in self.data) + ")"
        if self.kind == "list":
            return "[" + ",".join(v.text() for v in self.data) + "]"
        if self.kind == "range":  # (start, end)
            return f"{self.data[0].text()}:{self.data[1].text()}"
        return str(self.data)


def _operand(v: Value) -> str:
    return f"({v.text()})" if v.kind == "expr" else v.text()


@record(slots=True)
class Option:
    """`KEY=VALUE` on a layer line."""

    name: str
    value: Value
    span: Span


@record(slots=True)
class LayerStmt:
    """`OP ARG... KEY=VALUE... [as NAME] [-> SHAPE]`: a layer or a block call."""

    op: str
    args: tuple[Value, ...]
    options: tuple[Option, ...]
    alias: str | None
    expect: tuple[int, ...] | None
    span: Span
    expect_span: Span | None = None
    expect_text: str | None = None  # the `-> SHAPE` as typed, for messages
    branches: tuple[tuple[Statement, ...], ...] = ()  # `{ ... } { ... }` after a combinator
    shortcut: tuple[Statement, ...] | None = None  # `residual { ... } shortcut { ... }`
    source: str | None = None  # `from NAME`: read NAME instead of the line above
    source_span: Span | None = None
    more_names: tuple[str, ...] = ()  # `split 2 as left right`: the names after the first
    more_spans: tuple[Span, ...] = ()


@record(slots=True)
class InputStmt:
    """`input 1x32x32`."""

    shape: tuple[int, ...]  # () when what was written is not a shape
    span: Span
    written: str = ""  # as typed, for messages


@record(slots=True)
class RepeatStmt:
    """`repeat COUNT { ... }`."""

    count: Value
    body: tuple[Statement, ...]
    span: Span


@record(slots=True)
class DropStmt:
    """`drop from NAME` or `drop last N` (transfer learning)."""

    mode: Literal["from", "last"]
    target: str | int
    span: Span


@record(slots=True)
class FreezeStmt:
    """`freeze all`, `freeze through NAME` or `freeze NAME...` (transfer learning)."""

    mode: Literal["all", "through", "names"]
    names: tuple[str, ...]
    span: Span


@record(slots=True)
class OutputStmt:
    """`output a b`: the network's outputs, in this order."""

    names: tuple[str, ...]
    spans: tuple[Span, ...]
    span: Span


Statement = Union[LayerStmt, InputStmt, RepeatStmt, DropStmt, FreezeStmt, OutputStmt]


@record(slots=True)
class Param:
    """A block parameter, with its default if one is written."""

    name: str
    default: Value | None
    span: Span


@record(slots=True)
class BlockDef:
    """`block NAME(PARAMS) { ... }`."""

    name: str
    params: tuple[Param, ...]
    body: tuple[Statement, ...]
    span: Span


@record(slots=True)
class NetworkDef:
    """`network NAME [from BASE] { ... }`."""

    name: str
    base: str | None
    base_span: Span | None
    body: tuple[Statement, ...]
    span: Span


@record(slots=True)
class UseStmt:
    """`use "other.cnn"`."""

    path: str
    span: Span


@record(slots=True)
class SpecFile:
    """One parsed file: its text, `use` lines, networks and blocks."""

    path: str
    source: str
    uses: tuple[UseStmt, ...]
    networks: tuple[NetworkDef, ...]
    blocks: tuple[BlockDef, ...]
