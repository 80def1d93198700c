"""Arguments: a statement's written values, with block parameters substituted and arithmetic
done, become a kind's validated config; and the hints for arguments written as other tools
write them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import NamedTuple

from pydantic_core import ValidationError

from ..base.diagnostics import Diagnostic, Span, did_you_mean, error
from ..kinds import ACTIVATIONS, DEFAULT_ALPHA, KINDS, MAP_FORMS, LayerConfig, axis_names
from ..language import syntax as ast
from .network import MAX_WEIGHT_DEPTH


class ArgError(Exception):
    def __init__(self, message: str, help: str | None = None, span: Span | None = None):
        super().__init__(message)
        self.help = help
        self.span = span


def whole_number(v: ast.Value) -> int:
    if v.kind == "number" and isinstance(v.data, int):
        return v.data
    if v.kind == "number" and float(v.data).is_integer():
        raise ArgError(f"expected a whole number, got '{v.text()}'", f"write {int(v.data)}")
    raise ArgError(f"expected a whole number, got '{v.text()}'")


# Every decimal a spec gives (a rate, eps, momentum, alpha, a weight) is computed in
# float32 by ONNX and PyTorch: beyond its range it would become infinity there.
FLOAT32_MAX = 3.4028234663852886e38


def _float32(v: ast.Value) -> float:
    value = float(v.data)
    if abs(value) > FLOAT32_MAX:
        raise ArgError(
            f"'{v.text()}' is beyond float32's range (about 3.4e38): it would become infinity", span=v.span
        )
    return value


def _float(v: ast.Value) -> float:
    if v.kind == "number":
        return _float32(v)
    raise ArgError(f"expected a number, got '{v.text()}'")


class Axes(NamedTuple):
    """The spatial axes of the network a layer is in, as its input gives them: sizes written
    with one number apply to every axis, sizes written per axis must name each."""

    rank: int  # 1: CxL, 2: CxHxW, 3: CxDxHxW
    written: str = ""  # the input line's shape as written, for messages
    looks_2d: bool = False  # a CxL input that reads like an image without its channel (28x28)

    def names(self) -> str:
        return " x ".join(axis_names(self.rank))

    def mismatch(self, v: ast.Value, count: int, example: str) -> ArgError:
        where = f"the input {self.written}" if self.written else "its input"
        hint = (
            f"one number for every axis, or {self.rank} joined by x, e.g. {example}"
            if self.rank > 1
            else f"one number: the window's length, e.g. {example}"
        )
        if self.looks_2d and count == 2:  # `input 28x28` meant as an image
            hint += f"; for a {self.written} image with one channel: input 1x{self.written}"
        return ArgError(
            f"'{v.text()}' gives {count} ax{'is' if count == 1 else 'es'}, but this network has {self.rank} "
            f"({self.names()}): {where} is {MAP_FORMS[self.rank]}",
            hint,
            v.span,
        )


PLANE = Axes(2)  # images, and what a flat input's sizes are read as (its conv is an error later)


def _size(v: ast.Value, axes: Axes = PLANE) -> tuple[int, ...]:
    """`3` -> one 3 per spatial axis; `3x1`, `1x3x3` or `(1, 3, 3)` -> one size per axis."""
    example = "x".join(["3"] * axes.rank) if axes.rank > 1 else "3"
    if v.kind == "number" and isinstance(v.data, int):
        return (v.data,) * axes.rank
    if v.kind in ("dims", "tuple"):
        values = v.data if v.kind == "dims" else tuple(whole_number(x) for x in v.data)
        if len(values) != axes.rank:
            raise axes.mismatch(v, len(values), example)
        return values
    parts = v.data.split("x") if v.kind == "word" else []
    if len(parts) >= 2 and all(parts):  # `kxk` with a block parameter k: one word to the lexer
        square = len(set(parts)) == 1
        raise ArgError(
            f"expected a size such as 3 or {example}, got '{v.text()}'",
            f"write `{parts[0]}`: one number is the same size along every axis"
            if square
            else f"write `({', '.join(parts)})`",
        )
    raise ArgError(f"expected a size such as 3 or {example}, got '{v.text()}'")


# How pads are written, per rank: one number, one per axis, or a begin and end per axis.
PAD_FORMS = {
    1: "P or (begin,end)",
    2: "P, PHxPW or (top,bottom,left,right)",
    3: "P, PDxPHxPW or (front,back,top,bottom,left,right)",
}


def _pad_values(v: ast.Value, axes: Axes) -> tuple[int, ...] | None:
    """Begin and end per axis from `1` (everywhere), `1x2` (symmetric per axis) or a tuple of
    one value per axis or of every side; None when `v` is none of these."""
    rank = axes.rank
    if v.kind == "number" and isinstance(v.data, int):
        return (v.data,) * 2 * rank
    if v.kind not in ("dims", "tuple"):
        return None
    values = v.data if v.kind == "dims" else tuple(whole_number(x) for x in v.data)
    if v.kind == "tuple" and len(values) == 2 * rank:
        return values
    if len(values) == rank:
        return tuple(p for p in values for _ in (0, 1))
    if v.kind == "dims":
        raise axes.mismatch(v, len(values), "x".join(["1"] * rank))
    sides = f"{rank} (one per axis) or {2 * rank}" if rank > 1 else "2"
    raise ArgError(
        f"'{v.text()}' gives {len(values)} values; this network's {rank} ax{'is' if rank == 1 else 'es'} "
        f"({axes.names()}) take{'s' if rank == 1 else ''} {sides} (the begin and end of each)",
        f"for example: {PAD_FORMS[rank]}",
        v.span,
    )


def _padding(v: ast.Value, axes: Axes = PLANE) -> object:
    """A conv's or pool's pads: `same`, `valid`, or begin and end per axis."""
    if v.kind == "word" and v.data in ("same", "valid"):
        return "same" if v.data == "same" else (0,) * 2 * axes.rank
    values = _pad_values(v, axes)
    if values is None:
        raise ArgError(
            f"expected valid, same, {PAD_FORMS[axes.rank]}, got '{v.text()}'",
            "pad=same keeps the size at stride 1; pad=1 adds one pixel on every side",
        )
    return values


def _pad_sizes(v: ast.Value, axes: Axes = PLANE) -> object:
    """A `pad` layer's sizes: as a conv's pads, but given, never `same`, and 0 or more."""
    sizes = _pad_values(v, axes)
    if sizes is None:
        raise ArgError(
            f"expected {PAD_FORMS[axes.rank]}, got '{v.text()}'",
            "`same` is a conv's or pool's padding; a pad layer says how much, e.g. pad 1",
        )
    if min(sizes) < 0:
        raise ArgError(
            f"expected sizes of 0 or more, got '{v.text()}'", "a pad layer only adds rows and columns"
        )
    return sizes


def _bool(v: ast.Value) -> bool:
    if v.kind == "word" and v.data in ("true", "false"):
        return v.data == "true"
    if v.kind == "number" and v.data in (0, 1):
        return bool(v.data)
    raise ArgError(f"expected true or false, got '{v.text()}'")


def _range(v: ast.Value) -> tuple[int, int | None]:
    """`0:64` -> (0, 64); `64:end` -> (64, None). Negative ends count from the end, as in Python."""
    if v.kind != "range":
        raise ArgError(
            f"expected a channel range such as 0:64 or 64:end, got '{v.text()}'",
            "START:END keeps channels START to END-1; `end` is the last channel",
        )
    start, end = v.data
    if end.kind == "word" and end.data == "end":
        return (whole_number(start), None)
    return (whole_number(start), whole_number(end))


def _word(v: ast.Value) -> str:
    if v.kind == "word":
        return v.data
    raise ArgError(f"expected a word, got '{v.text()}'")


def _activation(v: ast.Value) -> dict:
    if v.kind == "word" and v.data in ACTIVATIONS:
        return {"name": v.data}
    hint = did_you_mean(v.text(), ACTIVATIONS)
    raise ArgError(f"unknown activation '{v.text()}'", hint)


def _matrix(v: ast.Value) -> tuple:
    def walk(x: ast.Value, depth: int = 1):
        if x.kind == "list":
            if depth > MAX_WEIGHT_DEPTH:
                raise ArgError(f"weights nest at most {MAX_WEIGHT_DEPTH} lists deep")
            return tuple(walk(item, depth + 1) for item in x.data)
        if x.kind == "number":
            return _float32(x)
        raise ArgError(f"weights hold numbers, got '{x.text()}'")

    if v.kind != "list":
        raise ArgError(f"expected a nested list such as [[1,0,-1],[1,0,-1],[1,0,-1]], got '{v.text()}'")
    return walk(v)


_CONVERTERS = {
    "int": whole_number,
    "float": _float,
    "bool": _bool,
    "range": _range,
    "word": _word,
    "activation": _activation,
    "matrix": _matrix,
}


_PER_AXIS = {"size": _size, "padding": _padding, "pad_sizes": _pad_sizes}  # read with the network's axes


def build_config(
    word: str,
    args: list[ast.Value],
    options: list[tuple[str, ast.Value, Span]],
    span: Span,
    axes: Axes = PLANE,
) -> tuple[LayerConfig | None, dict[str, Span], list[Diagnostic]]:
    """Bare arguments and KEY=VALUE options -> the kind's validated Pydantic model; sizes are
    read against `axes`, the spatial axes of the network's input."""
    cls = KINDS[word]
    positional = cls.positional_for(word)
    values: dict[str, object] = dict(cls.preset(word))
    spans: dict[str, Span] = {}
    problems: list[Diagnostic] = []
    misread = _swapped_filters(word, positional, args) or _called_like_a_function(word, cls, positional, args)
    if misread is not None:
        return None, spans, [misread]
    _bind_arguments(word, cls, args, values, spans, problems, axes)
    _bind_options(word, cls, options, values, spans, problems, axes)
    if not any(d.code == "invalid-argument" for d in problems):
        problems += _missing(word, cls, values, span)
    if problems:
        return None, spans, problems
    return _validated(word, cls, values, spans, span)


def _bind_arguments(
    word: str, cls, args: list[ast.Value], values: dict, spans: dict, problems: list, axes: Axes
) -> None:
    """Bare arguments: flags (`relu`, `ceil`) anywhere, the rest fill the slots in order."""
    slots = list(cls.positional_for(word))
    extra: list[ast.Value] = []  # arguments past the last slot: one diagnostic for them all
    for v in args:
        if v.kind == "word" and v.data in cls.flags and cls.flags[v.data][0] not in spans:
            name, value = cls.flags[v.data]
            values[name] = {"name": value} if name == "activation" else value
            spans[name] = v.span
        elif slots:
            _convert_into(cls, slots.pop(0), v, values, spans, problems, axes)
        else:
            extra.append(v)
    if extra:
        problem = _too_many(word, extra[0], cls, cls.positional_for(word))
        if len(extra) > 1:
            problem = replace(problem, message=problem.message + f"; {len(extra) - 1:,} more follow it")
        problems.append(problem)


def _bind_options(word: str, cls, options, values: dict, spans: dict, problems: list, axes: Axes) -> None:
    for key, v, key_span in options:
        if key not in cls.arguments or key in cls.preset(word):
            choices = [k for k in cls.arguments if k not in cls.preset(word)]
            hint = did_you_mean(key, choices)
            takes = ", ".join(choices) if choices else "no options"
            problems.append(
                error("unknown-option", f"{word} has no option '{key}' (it takes: {takes})", key_span, hint)
            )
        elif key in spans:
            problems.append(error("invalid-argument", f"'{key}' is given twice", key_span))
        else:
            _convert_into(cls, key, v, values, spans, problems, axes)


def _missing(word: str, cls, values: dict, span: Span) -> list[Diagnostic]:
    positional = " ".join(cls.positional_for(word)).upper()
    example = cls.example if word == cls.kind else word
    return [
        error(
            "missing-argument", f"{word} needs {name} ({word} {positional})", span, f"for example: {example}"
        )
        for name in cls.required()
        if name not in values
    ]


def _validated(word: str, cls, values: dict, spans: dict, span: Span):
    """The kind's schema on the bound values; an activation's default alpha filled in."""
    if word in DEFAULT_ALPHA and "activation" not in values and values.get("alpha") is None:
        values["alpha"] = DEFAULT_ALPHA[word]
    activation = values.get("activation")
    if isinstance(activation, dict) and activation["name"] in DEFAULT_ALPHA:
        activation["alpha"] = DEFAULT_ALPHA[activation["name"]]
    try:
        return cls.validate(values), spans, []
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        # A size whose entries fail also comes out too short after validation: say the cause.
        failed = {item["loc"][0] for item in errors if item["loc"] and item["type"] != "too_short"}
        for item in errors:
            name = str(item["loc"][0]) if item["loc"] else ""
            if item["type"] == "too_short" and item["loc"] and item["loc"][0] in failed:
                continue
            message = item["msg"][0].lower() + item["msg"][1:]
            hint = _rate_hint(word, name, item.get("input"))
            problems.append(
                error("invalid-argument", f"{word} {name}: {message}", spans.get(name, span), hint)
            )
        return None, spans, problems


def _rate_hint(word: str, name: str, value: object) -> str | None:
    """`dropout 50`: a percentage where a fraction is meant."""
    if word != "dropout" or name != "rate" or not isinstance(value, (int, float)):
        return None
    if value == 1:
        return "a rate of 1 would drop everything: it is the fraction dropped, e.g. `dropout 0.5`"
    if 1 < value <= 100:
        return f"a rate is a fraction: `dropout {value / 100:g}` drops {value:g}%"
    return None


def _convert_into(cls, name, v, values, spans, problems, axes: Axes) -> None:
    spans[name] = v.span
    converter = cls.arguments[name].converter
    try:
        if converter == "word":  # a closed set of words, e.g. pool max|avg
            choices = cls.choices(name)
            if v.kind != "word" or v.data not in choices:
                raise ArgError(
                    f"expected {' or '.join(choices)}, got '{v.text()}'",
                    did_you_mean(v.text(), choices)
                    if v.kind == "word"
                    else f"for example: {cls.kind} {choices[0]} {v.text()}",
                )
        if converter in _PER_AXIS:
            values[name] = _PER_AXIS[converter](v, axes)
        else:
            values[name] = _CONVERTERS[converter](v)
    except ArgError as exc:
        problems.append(error("invalid-argument", f"{cls.kind} {name}: {exc}", exc.span or v.span, exc.help))


# Layer names from PyTorch and Keras (lower case, no underscores) -> how cnnspec writes them.
# `Linear`, `Conv2d`, `MaxPooling2D`, ...: each kind lists what other frameworks call it.
FOREIGN_NAMES = {alias: ours for cls in set(KINDS.values()) for alias, ours in cls.foreign_names.items()}


def foreign_name(word: str) -> str | None:
    """`Linear`, `Conv2d`, `MaxPooling2D`: say what cnnspec calls it."""
    ours = FOREIGN_NAMES.get(word.lower().replace("_", ""))
    if ours is None or ours == word:
        return None
    return f"cnnspec writes {word} as `{ours}`"


def input_hint(shape: tuple[int, ...]) -> str:
    """What a wrong `input` line probably meant: channels forgotten, or the batch included."""
    if len(shape) == 5 and all(d > 0 for d in shape):
        return f"leave the batch out: input {'x'.join(map(str, shape[1:]))}"
    return "for example: input 3x224x224 (channels x height x width) or 1x16000 (channels x length)"


def rank_surprise(shape: tuple[int, ...], written: str) -> tuple[str, str] | None:
    """An input whose rank is likely not the one meant: `input 28x28` (an image without its
    channel) makes a 1-D network of 28 channels, `input 1x3x32x32` (the batch written
    first) a 3-D one of depth 3. The message and the fix, or None."""
    if len(shape) == 2 and shape[0] == shape[1] >= 8:
        return (
            f"input {written} reads as {shape[0]} channels of length {shape[1]} (a 1-D network)",
            f"for a {written} image with one channel: input 1x{written}",
        )
    if len(shape) == 4 and shape[0] == 1 and shape[1] in (1, 3, 4) and min(shape[2:]) >= 16:
        rest = "x".join(map(str, shape[1:]))
        return (
            f"input {written} reads as one channel of a {rest} volume (a 3-D network)",
            f"leave the batch out: input {rest}",
        )
    return None


def looks_channels_last(shape: tuple[int, ...]) -> bool:
    """224x224x3, 28x28x1: an image written height x width x channels, as Keras and NumPy
    images are. A network's input with 16+ channels on a map 4 or fewer pixels wide is
    not something people build."""
    return len(shape) == 3 and shape[2] <= 4 and shape[0] >= 16 and shape[1] >= 16


def glued_minus(stmt: ast.LayerStmt) -> Diagnostic | None:
    """`c-1` is two arguments, `c` and `-1` (a minus sign glued to a number is its sign, as
    the grammar says). Left alone it surfaces as a puzzling "unexpected argument" or a
    wrong value: say what was read, and how to subtract."""
    values = sorted(
        [*stmt.args, *(o.value for o in stmt.options)], key=lambda v: (v.span.line, v.span.column)
    )
    for before, after in zip(values, values[1:]):
        sign = after.written or ""
        if (
            after.kind == "number"
            and sign.startswith("-")
            and before.span.line == after.span.line
            and before.span.end_column == after.span.column
        ):
            return error(
                "invalid-argument",
                f"'{before.text()}{sign}' reads as two arguments, '{before.text()}' and '{sign}': "
                "a minus sign glued to a number is its sign",
                before.span,
                f"to subtract, put spaces around the minus: `{before.text()} - {sign[1:]}`",
            )
    return None


def _swapped_filters(word: str, positional, args: list[ast.Value]) -> Diagnostic | None:
    """`conv 3x3 64`: the kernel written before the filter count."""
    if tuple(positional[:2]) != ("filters", "kernel") or len(args) < 2:
        return None
    first, second = args[0], args[1]
    if first.kind == "dims" and second.kind == "number" and isinstance(second.data, int):
        return error(
            "invalid-argument",
            f"{word} takes FILTERS then KERNEL: '{first.text()}' is a kernel size, '{second.text()}' a count",
            first.span,
            f"swap them: `{word} {second.text()} {first.text()}`",
        )
    return None


def _called_like_a_function(word: str, cls, positional, args: list[ast.Value]) -> Diagnostic | None:
    """`conv(32, 3x3)`, `dense(10, relu)`: the arguments in parentheses, as in Python (a
    tuple is a size only where the first argument is one: `pool (2, 1)` stays valid)."""
    if len(args) != 1 or args[0].kind != "tuple" or len(args[0].data) < 2 or not positional:
        return None
    if cls.arguments[positional[0]].converter in ("size", "pad_sizes"):  # a size written as a tuple
        return None
    spaced = " ".join(item.text() for item in args[0].data)
    return error(
        "invalid-argument",
        f"{word} takes its arguments separated by spaces, not in parentheses",
        args[0].span,
        f"write `{word} {spaced}`",
    )


def _too_many(word: str, v: ast.Value, cls: type[LayerConfig], positional) -> Diagnostic:
    usage = f"{word} {' '.join(positional).upper()}".strip()
    hint = None
    if v.kind == "word" and v.data in cls.arguments:
        hint = f"options take a value: {v.data}=..."
    elif v.kind == "range" and v.data[0].kind == "word":  # YAML's `stride: 2`
        hint = f"options are written KEY=VALUE: {v.data[0].text()}={v.data[1].text()}"
    elif v.kind == "word":
        close = did_you_mean(v.data, list(cls.flags) + list(cls.arguments))
        hint = close
    elif not positional and v.kind == "number":  # `batchnorm 64`, as BatchNorm2d(64)
        hint = f"{word} takes no size: it works on whatever the layer above gives; write `{word}` alone"
    message = f"unexpected argument '{v.text()}' ({usage} takes {len(positional)}"
    message += f" bare argument{'s' if len(positional) != 1 else ''}"
    if cls.flags:
        flags = sorted(cls.flags)
        shown = ", ".join(flags[:7])
        message += f" and the words {shown}"
    return error("too-many-arguments", message + ")", v.span, hint)


def evaluate(v: ast.Value, env: Mapping[str, ast.Value]) -> ast.Value:
    """Block parameters replaced by their values and integer arithmetic done:
    `4*growth` with growth=32 is 128. Raises ArgError (with the span) on a division by
    zero, a decimal in arithmetic, or a result beyond int64."""
    if v.kind == "word" and v.data in env:
        return env[v.data]
    if v.kind in ("tuple", "list", "range"):
        return ast.Value(v.kind, tuple(evaluate(x, env) for x in v.data), v.span)
    if v.kind != "expr":
        return v
    op, left, right = v.data
    a, b = evaluate(left, env), evaluate(right, env)
    for operand in (a, b):
        if not (operand.kind == "number" and isinstance(operand.data, int)):
            what = "an unknown name" if operand.kind == "word" else "not a whole number"
            raise ArgError(
                f"arithmetic takes whole numbers and block parameters; '{operand.text()}' is {what}",
                span=operand.span,
            )
    if op == "//" and b.data == 0:
        raise ArgError(f"division by zero in '{v.text()}'", span=v.span)
    result = {"+": a.data + b.data, "-": a.data - b.data, "*": a.data * b.data}.get(op)
    if op == "//":
        result = a.data // b.data
    assert result is not None
    if abs(result) > 2**63 - 1:
        raise ArgError(f"'{v.text()}' is beyond int64", span=v.span)
    return ast.Value("number", result, v.span)
