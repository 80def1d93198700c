"""One diagnostic type with a source position; collected by every stage, printed once."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import field, replace
from typing import Literal

from .records import record

Severity = Literal["error", "warning"]

# Every code the checker can emit, with the one-line explanation the README repeats.
CODES: dict[str, str] = {
    "syntax-error": "the text does not follow the .cnn grammar",
    "use-not-found": "a `use` names a file that does not exist",
    "use-cycle": "files `use` each other in a cycle",
    "duplicate-definition": "two networks or blocks have the same name",
    "duplicate-name": "two layers of one network have the same name",
    "unknown-network": "a network name (`from NAME`, `--network`) is not defined",
    "unknown-layer": "a line starts with a word that is neither a layer kind nor a block",
    "unknown-option": "a layer has an option it does not take",
    "missing-argument": "a layer lacks a required argument",
    "too-many-arguments": "a layer has more arguments than it takes",
    "invalid-argument": "an argument has the wrong type or value",
    "block-arguments": "a block call does not match the block's parameters",
    "recursive-block": "a block uses itself, directly or through other blocks",
    "missing-input": "a network has no `input` line, or it is not the first line",
    "misplaced-statement": "a statement appears where it is not allowed",
    "kernel-too-large": "a window is larger than its (padded) input",
    "empty-output": "a layer's output size is zero or negative",
    "needs-flatten": "a dense layer gets a CxHxW tensor; `flatten` is missing",
    "needs-spatial-input": "a conv or pooling layer gets a flat vector",
    "groups-mismatch": "channels or filters are not divisible by `groups`",
    "slice-outside": "a `slice` range lies outside the channels, or is empty",
    "split-mismatch": "`split` sizes do not add up to the channels, or they do not divide into equal parts",
    "shape-mismatch": "a `-> SHAPE` assertion does not hold",
    "weights-shape": "fixed weights written in the spec have the wrong shape",
    "weights-file": "a --weights file is unreadable, or lacks, adds or misshapes a tensor",
    "onnx-file": "an ONNX model given to `run` cannot be read or run",
    "bad-input": "an input image or array for `run` or data for `train` does not fit the network",
    "bad-checkpoint": "a `--resume` checkpoint that cnnspec did not write, is damaged, or is of another run",
    "drop-too-many": "`drop last K` drops more layers than the base has",
    "unknown-name": "`drop` or `freeze` names a layer that does not exist",
    "unknown-reference": "a layer reads (`from`, a join, `output`) a name that is not defined before it",
    "merge-shape-mismatch": "the inputs of add, concat or multiply have shapes that do not join",
    "unused-branch": "(warning) a layer's output reaches no output of the network",
    "reserved-name": "a layer is named `input`, `output` or a name PyTorch modules use (`forward`, ...)",
    "too-deep": "blocks, `repeat`, `use` or `from` nest deeper than cnnspec allows",
    "too-large": "a number, a file or an expansion is above cnnspec's limits",
    "no-network": "a spec file defines no network and no block",
    "import-unsupported": "`cnnspec import`: the model has ops, attributes or inputs cnnspec cannot express",
    "transfer-shape-changed": "a layer kept from the base gets a different input size",
    "dropped-pixels": "(warning) a window leaves rows or columns of the input unused",
    "channels-last": "(warning) `input` reads like height x width x channels (224x224x3)",
    "rank-mismatch": "a size gives another number of axes than the network's input has (3x3 in a 1-D network)",
    "input-rank": "(warning) `input` reads as another kind of network than it likely means (28x28: a 1-D one)",
    "asymmetric-same": "(warning) `pad=same` with an even kernel pads one side more",
    "softmax-not-last": "(warning) softmax is followed by more layers",
    "dropout-after-output": "(warning) dropout comes after the output layer",
}


@record
class Span:
    """Where something is in a source file (1-based line and column)."""

    path: str
    line: int
    column: int
    end_column: int | None = None


@record
class Diagnostic:
    """One finding: severity, code, message, where, and how to fix it."""

    severity: Severity
    code: str
    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[str, ...] = field(default=())  # e.g. the block call sites of a layer

    def to_json(self) -> dict:
        span = self.span
        return {
            "severity": self.severity,
            "code": self.code,
            "path": span.path if span else None,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "message": self.message,
            "help": self.help,
            "notes": list(self.notes),
        }


class CnnspecError(Exception):
    """The one error type: carries every diagnostic collected before giving up."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.message for d in self.diagnostics))


def error(code: str, message: str, span: Span | None, help: str | None = None) -> Diagnostic:
    assert code in CODES, code
    return Diagnostic("error", code, message, span, help)


def warning(code: str, message: str, span: Span | None, help: str | None = None) -> Diagnostic:
    assert code in CODES, code
    return Diagnostic("warning", code, message, span, help)


def fail(code: str, message: str, help: str | None = None) -> CnnspecError:
    """An error about something outside a spec (a file, an option, data): no position.
    Returned, not raised, so that call sites read `raise fail(...)`."""
    return CnnspecError([Diagnostic("error", code, message, None, help)])


def with_call_sites(diagnostic: Diagnostic, calls: Iterable[Span]) -> Diagnostic:
    """Add `in block used at path:line:col` notes for a problem inside a block body."""
    notes = tuple(f"in a block used at {c.path}:{c.line}:{c.column}" for c in reversed(tuple(calls)))
    return replace(diagnostic, notes=diagnostic.notes + notes) if notes else diagnostic


# Comparisons "did you mean" may make for one input (see suggestion_budget): a suggestion
# costs some 20 us a candidate, so N unknown names against N names grew as N^2 (193 s for
# 4,000). A mistake or two in a spec of thousands of names stays far below it.
SUGGESTION_BUDGET = 200_000
_suggestions_left: ContextVar[list[int] | None] = ContextVar("suggestions_left", default=None)


@contextlib.contextmanager
def suggestion_budget(comparisons: int = SUGGESTION_BUDGET):
    """Bound the suggestion work of everything inside (one check of one input): once spent,
    errors still come, without `did you mean`."""
    token = _suggestions_left.set([comparisons])
    try:
        yield
    finally:
        _suggestions_left.reset(token)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """`did you mean 'X'?` for the closest choice, or None when nothing is close (or the
    input's suggestion budget is spent)."""
    import difflib  # only a run with a mistake pays for it (~15 ms here)

    left = _suggestions_left.get()
    if left is not None and left[0] <= 0:  # spent: not even the candidates are gathered
        return None
    # A close match (ratio >= 0.6) is at least 3/7 and at most 7/3 of the word's length.
    length = len(word)
    candidates = sorted({c for c in choices if 3 * length <= 7 * len(c) and 3 * len(c) <= 7 * length})
    if left is not None:
        if left[0] < len(candidates):
            return None
        left[0] -= len(candidates)
    match = difflib.get_close_matches(word.lower(), candidates, n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


MAX_DIAGNOSTICS_PER_FILE = 50  # beyond this a file's diagnostics are counted, not printed


@record
class Hidden:
    """Diagnostics left out of a file's report by the cap (counted, so nothing is lost silently)."""

    path: str
    errors: int
    warnings: int

    def line(self) -> str:
        parts = [f"{self.errors:,} more error{'s' * (self.errors != 1)}"] if self.errors else []
        if self.warnings:
            parts.append(f"{self.warnings:,} more warning{'s' * (self.warnings != 1)}")
        return f"{one_line(self.path)}: ... and {' and '.join(parts)} not shown (the first {MAX_DIAGNOSTICS_PER_FILE} are)"


def cap_per_file(
    diagnostics: list[Diagnostic], limit: int = MAX_DIAGNOSTICS_PER_FILE
) -> tuple[list[Diagnostic], list[Hidden]]:
    """Keep the first `limit` diagnostics of each file (in the given order); count the rest."""
    kept: list[Diagnostic] = []
    shown: dict[str, int] = {}
    hidden: dict[str, list[int]] = {}
    for d in diagnostics:
        path = d.span.path if d.span else ""
        if shown.get(path, 0) < limit:
            shown[path] = shown.get(path, 0) + 1
            kept.append(d)
        else:
            counts = hidden.setdefault(path, [0, 0])
            counts[0 if d.severity == "error" else 1] += 1
    return kept, [Hidden(path or "cnnspec", e, w) for path, (e, w) in hidden.items()]


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


# Control characters (ESC, BEL, CR, ...) from a spec, a path or a file name would drive
# the terminal: every message and source line is printed with them escaped. So are the
# bidirectional overrides (U+202A-E, U+2066-9, the marks), which reorder what a terminal or
# an editor shows ("Trojan Source").
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")
MAX_SOURCE_WIDTH = 100  # a longer source line is cut around the caret


def printable(text: str) -> str:
    """`text` with control characters written as escapes (`\\x1b`), safe for a terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


# What must not reach a one-line message: every control character and every character
# that ends a line for a terminal, an editor or str.splitlines (and the bidi overrides).
_LINE_BREAKING = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ufeff{_BIDI}]")


def one_line(text: str, limit: int | None = None) -> str:
    """`text` (a name, a path, a string from a model file) on one line: control characters
    and line breaks escaped (`\\n`, `\\x1b`), cut to `limit` characters."""
    escaped = _LINE_BREAKING.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped if limit is None or len(escaped) <= limit else escaped[: limit - 3] + "..."


def _source_excerpt(line: str, column: int, width: int) -> tuple[str, int, int]:
    """The printable part of `line` around `column` (1-based): (text, caret column, caret width).
    Escaping may widen characters, so the caret is placed on the escaped text."""
    before, marked, after = (
        line[: column - 1],
        line[column - 1 : column - 1 + width],
        line[column - 1 + width :],
    )
    before, marked, after = printable(before), printable(marked), printable(after)
    width = max(len(marked), 1)
    if len(before) + width + len(after) <= MAX_SOURCE_WIDTH:
        return before + marked + after, len(before) + 1, width
    room = MAX_SOURCE_WIDTH // 2
    head = "…" + before[-room:] if len(before) > room else before
    marked = marked if len(marked) <= room else marked[: room - 1] + "…"
    tail = after[: max(MAX_SOURCE_WIDTH - len(head) - len(marked), 0)]
    tail = tail + "…" if len(tail) < len(after) else tail
    return head + marked + tail, len(head) + 1, max(len(marked), 1)


def render(diagnostic: Diagnostic, sources: dict[str, str], color: bool = False) -> str:
    """`path:line:col: error: message [code]`, the source line, a caret, and `help:`."""

    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    severity_color = "1;31" if diagnostic.severity == "error" else "1;33"
    span = diagnostic.span
    where = f"{one_line(span.path)}:{span.line}:{span.column}: " if span else "cnnspec: "
    lines = [
        paint(where, "1")
        + paint(f"{diagnostic.severity}:", severity_color)
        + f" {one_line(diagnostic.message)} "
        + paint(f"[{diagnostic.code}]", "2")
    ]
    source = sources.get(span.path) if span else None
    if source is not None and span is not None:
        text_lines = re.split(r"\r\n|\r|\n", source)  # as the parser counts lines
        if 1 <= span.line <= len(text_lines):
            width = 1
            if span.end_column and span.end_column > span.column:
                width = span.end_column - span.column
            text, column, width = _source_excerpt(text_lines[span.line - 1].expandtabs(1), span.column, width)
            gutter = f"{span.line:>4} | "
            lines.append(paint(gutter, "34") + text)
            marker = " " * (column - 1) + "^" + "~" * (width - 1)
            lines.append(paint(" " * (len(gutter) - 2) + "| ", "34") + paint(marker, severity_color))
    for note in diagnostic.notes:
        lines.append(paint("  note: ", "1") + one_line(note))
    if diagnostic.help:
        lines.append(paint("  help: ", "1;32") + one_line(diagnostic.help))
    return "\n".join(lines)
