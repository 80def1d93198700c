"""Surface AST -> flat, named, validated layer lists.

This stage follows `use` between files, expands blocks and `repeat`, applies `from BASE`
(drop / freeze / append), gives every layer its name and validates each layer's
arguments with its Pydantic model (`layers.py`). It knows nothing about shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic_core import ValidationError

from ..base.diagnostics import CnnspecError, Diagnostic, Span, did_you_mean, error, warning, with_call_sites
from ..base.files import UnreadableFile, read_source
from ..base.graph import ancestors, descendants, unread
from ..base.records import record
from ..kinds import ACTIVATIONS, DEFAULT_ALPHA, KINDS, LayerConfig, Shape
from ..language import syntax as ast
from ..language.parse import parse_source

Origin = Literal["own", "base", "new"]
# Expansion is bounded before it is done: every layer, block call and `repeat` pass
# (an empty one too) costs one step, and a `repeat` whose count times its body's length
# would pass the budget is refused before its first pass.
MAX_EXPANSION = 200_000
MAX_DEPTH = 64  # nested `repeat` and block calls, `use` chains, `from` chains
_REPEAT = "(repeat)"  # a `repeat` level on the expansion stack (never a block name)
MAX_WEIGHT_DEPTH = 4  # weights are at most filters x channels x height x width
# Layer names that would collide with the exported graph's tensors or with the
# attributes of a PyTorch module (`as forward` breaks `train`); checked without torch.
RESERVED_NAMES = frozenset({"input", "output", "in", "activations", "order", "frozen_names", "network_name"})
TORCH_MODULE_ATTRIBUTES = frozenset(
    """T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda
    double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
    get_submodule half ipu load_state_dict modules mtia named_buffers named_children named_modules
    named_parameters parameters register_backward_hook register_buffer register_forward_hook
    register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
    register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_
    set_extra_state set_submodule share_memory state_dict to to_empty train training type xpu
    zero_grad""".split()
)


@record
class Layer:
    """One layer of a resolved network."""

    name: str
    config: LayerConfig
    span: Span  # the line that wrote it (inside a block body for block layers)
    arg_spans: Mapping[str, Span]  # argument -> where its value was written
    expect: Shape | None = None
    expect_span: Span | None = None
    expect_text: str | None = None
    frozen: bool = False
    calls: tuple[Span, ...] = ()  # block call sites that produced it, outermost first
    block: str | None = None  # outermost block instance (`cbapd1`), freezable by name
    origin: Origin = "own"  # in a derived network: kept from the base, or new
    inputs: tuple[str, ...] = ()  # the layers it reads (`input`: the network's input)
    residual: bool = False  # an add written `residual { B } [shortcut { S }]`: B's end + S's

    @property
    def kind(self) -> str:
        return self.config.kind

    def spec_text(self) -> str:
        return self.config.short()


@record
class Network:
    """A network with blocks, repeats and derivation expanded: its layers in definition order."""

    name: str
    span: Span
    input_shape: Shape
    input_span: Span
    layers: tuple[Layer, ...]
    base: str | None = None
    base_span: Span | None = None
    dropped: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # `output a b`, else the last layer (none: the input itself)


@dataclass
class Resolved:
    """Every network that was resolved, the ones asked for, and what went wrong."""

    networks: dict[str, Network]
    targets: list[str]
    diagnostics: list[Diagnostic]
    sources: dict[str, str]
    files: list[Path] = field(default_factory=list)  # every file read, resolved
    parsed: dict[str, ast.SpecFile] = field(default_factory=dict)  # display path -> its AST


# ------------------------------------------------------------------ files and `use`


@dataclass
class _Workspace:
    """Files read so far, their diagnostics, and what `use` has loaded (cycles, duplicates)."""

    files: dict[str, ast.SpecFile] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    read: list[Path] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_SPEC_START = re.compile(r"\s*(network|block|use)\b")


def looks_like_spec(text: str) -> bool:
    """Whether the first statement of `text` is one a spec starts with."""
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return bool(_SPEC_START.match(stripped))
    return True  # empty or only comments


def _load(ws: _Workspace, text: str, path: str, real: Path | None, stack: tuple[Path, ...]) -> None:
    ws.loaded.add(path)
    try:
        spec = parse_source(text, path)
    except CnnspecError as exc:
        if not path.endswith(".cnn") and not looks_like_spec(text):
            # Not a spec (`use "/etc/passwd"`): say so, and never echo a line of it.
            ws.diagnostics.append(
                error(
                    "syntax-error",
                    "not a .cnn spec: it does not start with `network`, `block` or `use`",
                    Span(path, 1, 1),
                )
            )
            return
        ws.sources[path] = text
        ws.diagnostics.extend(exc.diagnostics)
        return
    ws.sources[path] = text
    ws.files[path] = spec
    folder = real.parent if real else Path.cwd()
    for use in spec.uses:
        try:
            target = (folder / use.path).resolve()
        except (RuntimeError, OSError):  # a symlink loop
            ws.diagnostics.append(
                error("use-not-found", f"cannot use '{use.path}': a symbolic link loop", use.span)
            )
            continue
        shown = _display_path(target)
        if target in stack:
            cycle = " -> ".join(_display_path(p) for p in (*stack, target))
            ws.diagnostics.append(error("use-cycle", f"files use each other in a cycle: {cycle}", use.span))
            continue
        if shown in ws.loaded:
            continue
        if len(stack) >= MAX_DEPTH:
            ws.diagnostics.append(
                error("too-deep", f"`use` chains are limited to {MAX_DEPTH} files", use.span)
            )
            continue
        try:
            child = read_source(target)
        except UnreadableFile as exc:
            ws.diagnostics.append(
                error(
                    "use-not-found",
                    f"cannot use '{use.path}': {exc} ({shown})",
                    use.span,
                    "paths are relative to the file that has the `use`",
                )
            )
            continue
        ws.read.append(target)
        _load(ws, child, shown, target, (*stack, target))


# ------------------------------------------------------------------ argument conversion


class _ArgError(Exception):
    def __init__(self, message: str, help: str | None = None, span: Span | None = None):
        super().__init__(message)
        self.help = help
        self.span = span


def _int(v: ast.Value) -> int:
    if v.kind == "number" and isinstance(v.data, int):
        return v.data
    if v.kind == "number" and float(v.data).is_integer():
        raise _ArgError(f"expected a whole number, got '{v.text()}'", f"write {int(v.data)}")
    raise _ArgError(f"expected a whole number, got '{v.text()}'")


def _float(v: ast.Value) -> float:
    if v.kind == "number":
        return float(v.data)
    raise _ArgError(f"expected a number, got '{v.text()}'")


def _pair(v: ast.Value) -> tuple[int, int]:
    if v.kind == "number" and isinstance(v.data, int):
        return (v.data, v.data)
    if v.kind == "dims" and len(v.data) == 2:
        return v.data
    if v.kind == "tuple" and len(v.data) == 2:
        return (_int(v.data[0]), _int(v.data[1]))
    parts = v.data.split("x") if v.kind == "word" else []
    if len(parts) == 2 and all(parts):  # `kxk` with a block parameter k: one word to the lexer
        square = parts[0] == parts[1]
        raise _ArgError(
            f"expected a size such as 3 or 3x1, got '{v.text()}'",
            f"write `{parts[0]}`: one number is a square size"
            if square
            else f"write `({parts[0]}, {parts[1]})`",
        )
    raise _ArgError(f"expected a size such as 3 or 3x1, got '{v.text()}'")


def _padding(v: ast.Value) -> object:
    if v.kind == "word" and v.data in ("same", "valid"):
        return "same" if v.data == "same" else (0, 0, 0, 0)
    if v.kind == "number" and isinstance(v.data, int):
        return (v.data,) * 4
    if v.kind == "dims" and len(v.data) == 2:
        ph, pw = v.data
        return (ph, ph, pw, pw)
    if v.kind == "tuple" and len(v.data) in (2, 4):
        values = tuple(_int(x) for x in v.data)
        return values if len(values) == 4 else (values[0], values[0], values[1], values[1])
    raise _ArgError(
        f"expected valid, same, P, PHxPW or (top,bottom,left,right), got '{v.text()}'",
        "pad=same keeps the size at stride 1; pad=1 adds one pixel on every side",
    )


def _bool(v: ast.Value) -> bool:
    if v.kind == "word" and v.data in ("true", "false"):
        return v.data == "true"
    if v.kind == "number" and v.data in (0, 1):
        return bool(v.data)
    raise _ArgError(f"expected true or false, got '{v.text()}'")


def _word(v: ast.Value) -> str:
    if v.kind == "word":
        return v.data
    raise _ArgError(f"expected a word, got '{v.text()}'")


def _activation(v: ast.Value) -> dict:
    if v.kind == "word" and v.data in ACTIVATIONS:
        return {"name": v.data}
    hint = did_you_mean(v.text(), ACTIVATIONS)
    raise _ArgError(f"unknown activation '{v.text()}'", hint)


def _matrix(v: ast.Value) -> tuple:
    def walk(x: ast.Value, depth: int = 1):
        if x.kind == "list":
            if depth > MAX_WEIGHT_DEPTH:
                raise _ArgError(f"weights nest at most {MAX_WEIGHT_DEPTH} lists deep")
            return tuple(walk(item, depth + 1) for item in x.data)
        if x.kind == "number":
            return float(x.data)
        raise _ArgError(f"weights hold numbers, got '{x.text()}'")

    if v.kind != "list":
        raise _ArgError(f"expected a nested list such as [[1,0,-1],[1,0,-1],[1,0,-1]], got '{v.text()}'")
    return walk(v)


_CONVERTERS = {
    "int": _int,
    "float": _float,
    "pair": _pair,
    "padding": _padding,
    "bool": _bool,
    "word": _word,
    "activation": _activation,
    "matrix": _matrix,
}


def _build_config(
    word: str, args: list[ast.Value], options: list[tuple[str, ast.Value, Span]], span: Span
) -> tuple[LayerConfig | None, dict[str, Span], list[Diagnostic]]:
    """Bare arguments and KEY=VALUE options -> the kind's validated Pydantic model."""
    cls = KINDS[word]
    positional = cls.positional_for(word)
    values: dict[str, object] = dict(cls.preset(word))
    spans: dict[str, Span] = {}
    problems: list[Diagnostic] = []
    slots = list(positional)
    extra: list[ast.Value] = []  # arguments past the last slot: one diagnostic for them all

    misread = _swapped_filters(word, positional, args) or _called_like_a_function(word, cls, positional, args)
    if misread is not None:
        return None, spans, [misread]
    for v in args:
        if v.kind == "word" and v.data in cls.flags and cls.flags[v.data][0] not in spans:
            name, value = cls.flags[v.data]
            values[name] = {"name": value} if name == "activation" else value
            spans[name] = v.span
            continue
        if not slots:
            extra.append(v)
            continue
        name = slots.pop(0)
        _convert_into(cls, name, v, values, spans, problems)
    if extra:
        problem = _too_many(word, extra[0], cls, positional)
        if len(extra) > 1:
            problem = replace(problem, message=problem.message + f"; {len(extra) - 1:,} more follow it")
        problems.append(problem)

    for key, v, key_span in options:
        if key not in cls.arguments or key in cls.preset(word):
            choices = [k for k in cls.arguments if k not in cls.preset(word)]
            hint = did_you_mean(key, choices)
            takes = ", ".join(choices) if choices else "no options"
            problems.append(
                error("unknown-option", f"{word} has no option '{key}' (it takes: {takes})", key_span, hint)
            )
            continue
        if key in spans:
            problems.append(error("invalid-argument", f"'{key}' is given twice", key_span))
            continue
        _convert_into(cls, key, v, values, spans, problems)

    for name in cls.required():
        if name not in values and not any(d.code == "invalid-argument" for d in problems):
            example = cls.example if word == cls.kind else word
            problems.append(
                error(
                    "missing-argument",
                    f"{word} needs {name} ({word} {' '.join(positional).upper()})",
                    span,
                    f"for example: {example}",
                )
            )
    if problems:
        return None, spans, problems
    if word in DEFAULT_ALPHA and "activation" not in values and values.get("alpha") is None:
        values["alpha"] = DEFAULT_ALPHA[word]
    activation = values.get("activation")
    if isinstance(activation, dict) and activation["name"] in DEFAULT_ALPHA:
        activation["alpha"] = DEFAULT_ALPHA[activation["name"]]
    try:
        return cls.validate(values), spans, []
    except ValidationError as exc:
        for item in exc.errors():
            name = str(item["loc"][0]) if item["loc"] else ""
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


def _convert_into(cls, name, v, values, spans, problems) -> None:
    spans[name] = v.span
    converter = cls.arguments[name].converter
    try:
        if converter == "word":  # a closed set of words, e.g. pool max|avg
            choices = cls.choices(name)
            if v.kind != "word" or v.data not in choices:
                raise _ArgError(
                    f"expected {' or '.join(choices)}, got '{v.text()}'",
                    did_you_mean(v.text(), choices)
                    if v.kind == "word"
                    else f"for example: {cls.kind} {choices[0]} {v.text()}",
                )
        values[name] = _CONVERTERS[converter](v)
    except _ArgError as exc:
        problems.append(error("invalid-argument", f"{cls.kind} {name}: {exc}", v.span, exc.help))


# Layer names from PyTorch and Keras (lower case, no underscores) -> how cnnspec writes them.
# `Linear`, `Conv2d`, `MaxPooling2D`, ...: each kind lists what other frameworks call it.
FOREIGN_NAMES = {alias: ours for cls in set(KINDS.values()) for alias, ours in cls.foreign_names.items()}


def _foreign_name(word: str) -> str | None:
    """`Linear`, `Conv2d`, `MaxPooling2D`: say what cnnspec calls it."""
    ours = FOREIGN_NAMES.get(word.lower().replace("_", ""))
    if ours is None or ours == word:
        return None
    return f"cnnspec writes {word} as `{ours}`"


def _input_hint(shape: tuple[int, ...]) -> str:
    """What a wrong `input` line probably meant: channels forgotten, or the batch included."""
    if len(shape) == 2 and all(d > 0 for d in shape):
        return f"give the channels first: input 1x{shape[0]}x{shape[1]} for one channel (grayscale)"
    if len(shape) == 4 and all(d > 0 for d in shape):
        return f"leave the batch out: input {shape[1]}x{shape[2]}x{shape[3]}"
    return "for example: input 3x224x224 (channels x height x width)"


def _looks_channels_last(shape: tuple[int, ...]) -> bool:
    """224x224x3, 28x28x1: an image written height x width x channels, as Keras and NumPy
    images are. A network's input with 16+ channels on a map 4 or fewer pixels wide is
    not something people build."""
    return len(shape) == 3 and shape[2] <= 4 and shape[0] >= 16 and shape[1] >= 16


def _glued_minus(stmt: ast.LayerStmt) -> Diagnostic | None:
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
    if cls.arguments[positional[0]].converter == "pair":
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


# ------------------------------------------------------------------ expansion


Ref = int | str  # a layer being expanded (its index) or a final name (`input`, a base layer)
INPUT = "input"  # the network's input tensor, as layers name what they read
COMBINATORS = ("residual",)  # `residual { B } [shortcut { S }]`; the joins take bodies too


@record
class _Raw:
    """A layer before naming: what expansion produces."""

    word: str
    config: LayerConfig
    stmt: ast.LayerStmt
    arg_spans: dict[str, Span]
    alias: str | None
    calls: tuple[Span, ...]
    block: str | None
    inputs: tuple[Ref, ...] = ()
    asserted: ast.LayerStmt | None = None  # a block call's `-> SHAPE`, checked on its last layer
    residual: bool = False  # made by `residual { }`


@dataclass
class _Scope:
    """The names a statement can refer to: those written in this block instance (or
    network) so far, then the enclosing body's; `in` is the block's input."""

    input: Ref
    names: dict[str, Ref] = field(default_factory=dict)
    parent: _Scope | None = None

    def lookup(self, name: str) -> Ref | None:
        if name == "in":
            return self.input
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def known(self) -> list[str]:
        found: list[str] = ["in"]
        scope: _Scope | None = self
        while scope is not None:
            found += list(scope.names)
            scope = scope.parent
        return found


@record
class _Ctx:
    """Where a statement is expanded: parameters, block nesting, naming, visible names."""

    env: Mapping[str, ast.Value]
    stack: tuple[str, ...]  # block names and repeat levels, outermost first
    calls: tuple[Span, ...]  # block call sites, outermost first
    prefix: str | None  # names given with `as` inside a block instance start with it
    block: str | None  # the outermost block instance (`cbapd1`), freezable by name
    suffix: str  # `_1`, `_2`, ... inside a repeat
    scope: _Scope


class _Expander:
    def __init__(
        self,
        blocks: dict[str, ast.BlockDef],
        diagnostics: list[Diagnostic],
        external: Mapping[str, str] | None = None,
        counts: Mapping[str, int] | None = None,
    ):
        self.blocks = blocks
        self.counts = dict(counts or {})  # automatic names, numbered on as `_name_layers` does
        self.final: dict[str, int] = {}  # every final name so far -> its layer
        self.written: dict[str, Span] = {}  # `as NAME` anywhere in the body, for "written later"
        self.diagnostics = diagnostics
        self.external = dict(external or {})  # a base network's layer names, readable by name
        self.block_uses: dict[str, int] = {}
        self.steps = 0  # see MAX_EXPANSION
        self.block_sizes: dict[str, int] = {}
        self.exhausted = False
        self.outputs: list[tuple[Ref, Span]] = []

    def size(self, body: tuple[ast.Statement, ...], env: Mapping[str, ast.Value], depth: int = 0) -> int:
        """A lower bound of the steps `body` expands to, computed without expanding:
        nested literal repeats multiply, block calls and branches count their bodies."""
        total = 0
        for stmt in body:
            if depth > MAX_DEPTH or total > MAX_EXPANSION:
                break
            if isinstance(stmt, ast.RepeatStmt):
                count = env.get(stmt.count.data, stmt.count) if stmt.count.kind == "word" else stmt.count
                times = count.data if count.kind == "number" and isinstance(count.data, int) else 1
                total += 1 + max(times, 0) * (1 + self.size(stmt.body, env, depth + 1))
            elif isinstance(stmt, ast.LayerStmt):
                bodies = (*stmt.branches, *((stmt.shortcut,) if stmt.shortcut is not None else ()))
                total += 1 + sum(self.size(b, env, depth + 1) for b in bodies)
                if stmt.op in self.blocks:
                    if stmt.op not in self.block_sizes:  # memoised: blocks calling blocks twice
                        self.block_sizes[stmt.op] = 1  # (and a recursive block) stay linear
                        self.block_sizes[stmt.op] = self.size(self.blocks[stmt.op].body, {}, depth + 1)
                    total += self.block_sizes[stmt.op]
            else:
                total += 1
        return total

    def _over_budget(self, span: Span, calls: tuple[Span, ...], what: str) -> None:
        self.exhausted = True
        self.diagnostics.append(
            with_call_sites(
                error(
                    "too-large",
                    f"{what}: a network expands to at most {MAX_EXPANSION:,} layers and repeats",
                    span,
                    "check the repeat count",
                ),
                calls,
            )
        )

    def statements(self, body: tuple[ast.Statement, ...], ctx: _Ctx, current: Ref, out: list[_Raw]) -> Ref:
        """Expand `body` reading `current` first; returns what its last statement gives."""
        outputs: list[ast.OutputStmt] = []  # resolved after the body: `output` may come first
        for stmt in body:
            if self.exhausted:
                return current
            self.steps += 1
            if self.steps > MAX_EXPANSION:
                self._over_budget(stmt.span, ctx.calls, "this network is too large")
                return current
            if isinstance(stmt, ast.LayerStmt):
                current = self.layer(stmt, ctx, current, out)
            elif isinstance(stmt, ast.RepeatStmt):
                current = self.repeat(stmt, ctx, current, out)
            elif isinstance(stmt, ast.OutputStmt) and not ctx.stack:
                outputs.append(stmt)
            elif isinstance(stmt, ast.InputStmt) and not ctx.stack:  # the first line was taken already
                self.diagnostics.append(
                    error(
                        "misplaced-statement",
                        "a second `input`: a network has one input, its first line",
                        stmt.span,
                        "remove this line; the layers after it read the layer above it",
                    )
                )
            else:
                where = "a block" if any(s != _REPEAT for s in ctx.stack) else "this network"
                self.diagnostics.append(
                    error(
                        "misplaced-statement",
                        f"{_statement_word(stmt)} is not allowed in {where}",
                        stmt.span,
                        _placement_help(stmt),
                    )
                )
        for stmt in outputs:
            self.output(stmt, ctx)
        return current

    def repeat(self, stmt: ast.RepeatStmt, ctx: _Ctx, current: Ref, out: list[_Raw]) -> Ref:
        try:
            count_value = _evaluate(stmt.count, ctx.env)
            count = _int(count_value)
            if count < 0:
                raise _ArgError(f"repeat count must be 0 or more, got {count}")
        except _ArgError as exc:
            span = exc.span or stmt.count.span
            self.diagnostics.append(
                with_call_sites(error("invalid-argument", str(exc), span, exc.help), ctx.calls)
            )
            return current
        if self.steps + count * (1 + self.size(stmt.body, ctx.env)) > MAX_EXPANSION:
            self._over_budget(stmt.count.span, ctx.calls, f"repeat {count:,} is too large")
            return current
        if len(ctx.stack) >= MAX_DEPTH and self._too_deep(stmt.span, ctx.calls):
            return current
        for i in range(count):
            if self.exhausted:
                return current
            self.steps += 1  # an empty body costs a step too
            tag = f"{ctx.suffix}_{i + 1}" if count > 1 else ctx.suffix
            inner = replace(ctx, stack=(*ctx.stack, _REPEAT), suffix=tag)
            current = self.statements(stmt.body, inner, current, out)
        return current

    def output(self, stmt: ast.OutputStmt, ctx: _Ctx) -> None:
        for name, span in zip(stmt.names, stmt.spans):
            found = self.reference(name, span, ctx)
            if found is not None:
                self.outputs.append((found, span))

    def reference(self, name: str, span: Span, ctx: _Ctx) -> Ref | None:
        """The layer `name` refers to here, or None after an unknown-reference error."""
        found = ctx.scope.lookup(name)
        if found is None and name == INPUT and not any(level != _REPEAT for level in ctx.stack):
            found = INPUT  # at the top level, `input` is the network's input, as `in` is
        if found is None:
            found = self.final.get(name, self.external.get(name))
        if found is None:
            known = [*ctx.scope.known(), *self.external, *self.final]
            written = self.written.get(name)
            later = (
                written.line if written and written.path == span.path and written.line > span.line else None
            )
            self.diagnostics.append(
                with_call_sites(
                    error(
                        "unknown-reference",
                        f"no layer named '{name}' here"
                        + (f": it is written later, on line {later}" if later else ""),
                        span,
                        "a layer reads only layers written before it"
                        if later
                        else did_you_mean(name, known)
                        or "name a layer with `as NAME` before the line that reads it; `in` is the block's input",
                    ),
                    ctx.calls,
                )
            )
        return found

    def _alias(self, stmt: ast.LayerStmt, ctx: _Ctx) -> str | None:
        if stmt.alias is None:
            return None
        return (f"{ctx.prefix}_{stmt.alias}" if ctx.prefix else stmt.alias) + ctx.suffix

    def _emit(self, raw: _Raw, stmt: ast.LayerStmt, ctx: _Ctx, out: list[_Raw]) -> int:
        out.append(raw)
        index = len(out) - 1
        if stmt.alias is not None:
            ctx.scope.names[stmt.alias] = index
        # The final name (`conv3`, `b1_c`) is readable from anywhere after it, as the table
        # shows it; `_name_layers` gives the same names (same counts, same order).
        prefix = KINDS[raw.word].name_prefix(raw.config)
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        self.final[raw.alias or f"{prefix}{self.counts[prefix]}"] = index
        return index

    def layer(self, stmt: ast.LayerStmt, ctx: _Ctx, current: Ref, out: list[_Raw]) -> Ref:
        glued = _glued_minus(stmt)
        if glued is not None:
            self.diagnostics.append(with_call_sites(glued, ctx.calls))
            return current
        try:
            args = [_evaluate(v, ctx.env) for v in stmt.args]
            options = [(o.name, _evaluate(o.value, ctx.env), o.span) for o in stmt.options]
        except _ArgError as exc:
            self.diagnostics.append(
                with_call_sites(
                    error("invalid-argument", str(exc), exc.span or stmt.span, exc.help), ctx.calls
                )
            )
            return current
        source = current
        if stmt.source is not None:
            found = self.reference(stmt.source, stmt.source_span or stmt.span, ctx)
            if found is None:
                return current
            source = found
        cls = KINDS.get(stmt.op)
        if stmt.op == "shortcut":
            self.diagnostics.append(
                error(
                    "misplaced-statement",
                    "`shortcut` goes on the line of the residual's closing brace: `} shortcut {`",
                    stmt.span,
                    "residual { ... } shortcut { ... }",
                )
            )
            return current
        if stmt.op in COMBINATORS or stmt.branches:
            return self.combinator(stmt, ctx, source, out, args, options)
        if cls is not None and cls.joins:
            return self.named_join(stmt, ctx, source, out, args, options)
        if cls is not None:
            config, spans, problems = _build_config(stmt.op, args, options, stmt.span)
            self.diagnostics.extend(with_call_sites(p, ctx.calls) for p in problems)
            if config is None:
                return current
            raw = _Raw(stmt.op, config, stmt, spans, self._alias(stmt, ctx), ctx.calls, ctx.block, (source,))
            return self._emit(raw, stmt, ctx, out)
        block = self.blocks.get(stmt.op)
        if block is None:
            choices = list(KINDS) + list(self.blocks) + list(COMBINATORS)
            hint = _foreign_name(stmt.op) or did_you_mean(stmt.op, choices)
            self.diagnostics.append(
                error(
                    "unknown-layer",
                    f"unknown layer or block '{stmt.op}'",
                    stmt.span,
                    hint or "layers: " + ", ".join(sorted(k for k in KINDS if k not in ("swish",))),
                )
            )
            return current
        if block.name in ctx.stack:
            chain = " -> ".join(s for s in (*ctx.stack, block.name) if s != _REPEAT)
            self.diagnostics.append(
                error("recursive-block", f"block '{block.name}' uses itself: {chain}", stmt.span)
            )
            return current
        bound = self.bind(block, stmt, args, options)
        if bound is None:
            return current
        if len(ctx.stack) >= MAX_DEPTH and self._too_deep(stmt.span, ctx.calls):
            return current
        self.block_uses[block.name] = self.block_uses.get(block.name, 0) + 1
        own = stmt.alias or f"{block.name}{self.block_uses[block.name]}"
        inner = _Ctx(
            env=bound,
            stack=(*ctx.stack, block.name),
            calls=(*ctx.calls, stmt.span),
            prefix=f"{ctx.prefix}_{own}" if ctx.prefix else own,
            block=ctx.block or own,
            suffix=ctx.suffix,
            scope=_Scope(source),
        )
        last = self.statements(block.body, inner, source, out)
        if stmt.alias is not None:  # the instance's name refers to its output
            ctx.scope.names[stmt.alias] = last
        if stmt.expect is not None and isinstance(last, int):  # `cbapd 32 -> 32x16x16`
            out[last] = replace(out[last], asserted=stmt)
        return last

    def combinator(self, stmt: ast.LayerStmt, ctx: _Ctx, source: Ref, out: list[_Raw], args, options) -> Ref:
        """`residual {B} [shortcut {S}]`, `concat {A} {B}...`, `add {A} {B}...`, `multiply {A}`:
        each body reads `source` ({} is `source` itself); a join of their ends follows."""
        word = "add" if stmt.op == "residual" else stmt.op
        cls = KINDS.get(word)
        if cls is None or not cls.joins:
            self.diagnostics.append(
                error(
                    "unknown-layer",
                    f"'{stmt.op}' takes no {{ body }}: only residual, concat, add and multiply do",
                    stmt.span,
                    did_you_mean(stmt.op, ["residual", "concat", "add", "multiply"]),
                )
            )
            return source
        if args or options:
            first = args[0].span if args else options[0][2]
            self.diagnostics.append(
                error("too-many-arguments", f"{stmt.op} with bodies takes no arguments", first)
            )
            return source
        if stmt.op == "residual" and len(stmt.branches) != 1:
            self.diagnostics.append(
                error(
                    "misplaced-statement",
                    "residual takes one body (and a `shortcut { ... }`)",
                    stmt.span,
                    "residual { B } is input + B; residual { B } shortcut { S } is S + B",
                )
            )
            return source
        if stmt.shortcut is not None and stmt.op != "residual":
            self.diagnostics.append(
                error("misplaced-statement", "only residual takes a `shortcut { ... }`", stmt.span)
            )
            return source
        ends: list[Ref] = []
        for body in stmt.branches:
            scope = _Scope(ctx.scope.input, parent=ctx.scope)
            ends.append(self.statements(body, replace(ctx, scope=scope), source, out))
        if stmt.op == "residual":
            scope = _Scope(ctx.scope.input, parent=ctx.scope)
            shortcut = self.statements(stmt.shortcut or (), replace(ctx, scope=scope), source, out)
            ends = [ends[0], shortcut]
        elif stmt.op == "multiply":
            ends = [source, *ends]
        if len(ends) < 2:
            ends = [source, *ends]
        config = cls.validate({})
        raw = _Raw(
            word,
            config,
            stmt,
            {},
            self._alias(stmt, ctx),
            ctx.calls,
            ctx.block,
            tuple(ends),
            residual=stmt.op == "residual",
        )
        return self._emit(raw, stmt, ctx, out)

    def named_join(self, stmt: ast.LayerStmt, ctx: _Ctx, source: Ref, out: list[_Raw], args, options) -> Ref:
        """`add a b`, `concat a b`, `multiply a b`: the named layers, in this order."""
        if options:
            self.diagnostics.append(
                error(
                    "unknown-option", f"{stmt.op} takes no options, only the layers it joins", options[0][2]
                )
            )
            return source
        if len(args) < 2:
            self.diagnostics.append(
                error(
                    "missing-argument",
                    f"{stmt.op} needs the names of two or more layers, or bodies",
                    stmt.span,
                    f"for example: {stmt.op} a b, or {stmt.op} {{ ... }} {{ ... }}",
                )
            )
            return source
        inputs: list[Ref] = []
        for value in args:
            if value.kind != "word":
                self.diagnostics.append(
                    error(
                        "invalid-argument",
                        f"{stmt.op} joins layers by name, got '{value.text()}'",
                        value.span,
                    )
                )
                return source
            found = self.reference(value.data, value.span, ctx)
            if found is None:
                return source
            inputs.append(found)
        config = KINDS[stmt.op].validate({})
        raw = _Raw(stmt.op, config, stmt, {}, self._alias(stmt, ctx), ctx.calls, ctx.block, tuple(inputs))
        return self._emit(raw, stmt, ctx, out)

    def _too_deep(self, span: Span, calls: tuple[Span, ...]) -> bool:
        self.exhausted = True
        self.diagnostics.append(
            with_call_sites(
                error(
                    "too-deep",
                    f"blocks and repeats nest more than {MAX_DEPTH} levels deep here",
                    span,
                    f"cnnspec expands at most {MAX_DEPTH} nested `repeat`s and block calls",
                ),
                calls[-3:],
            )
        )
        return True

    def bind(self, block: ast.BlockDef, stmt: ast.LayerStmt, args, options) -> dict[str, ast.Value] | None:
        names = [p.name for p in block.params]
        signature = f"{block.name}({', '.join(names)})"
        bound: dict[str, ast.Value] = {}
        ok = True
        for param, value in zip(block.params, args):
            bound[param.name] = value
        for value in args[len(block.params) :]:
            self.diagnostics.append(
                error(
                    "block-arguments",
                    f"too many arguments for block {signature}: '{value.text()}'",
                    value.span,
                )
            )
            ok = False
        for key, value, key_span in options:
            if key not in names:
                self.diagnostics.append(
                    error(
                        "block-arguments",
                        f"block {signature} has no parameter '{key}'",
                        key_span,
                        did_you_mean(key, names),
                    )
                )
                ok = False
            elif key in bound:
                self.diagnostics.append(
                    error("block-arguments", f"parameter '{key}' of {signature} is given twice", key_span)
                )
                ok = False
            else:
                bound[key] = value
        for param in block.params:
            if param.name not in bound:
                if param.default is None:
                    self.diagnostics.append(
                        error(
                            "block-arguments",
                            f"block {signature} needs a value for '{param.name}'",
                            stmt.span,
                            f"usage: {_block_usage(block)}",
                        )
                    )
                    ok = False
                else:
                    bound[param.name] = param.default
        return bound if ok else None


def _block_usage(block: ast.BlockDef) -> str:
    words = [p.name.upper() if p.default is None else f"[{p.name}={p.default.text()}]" for p in block.params]
    return " ".join([block.name, *words])


def _evaluate(v: ast.Value, env: Mapping[str, ast.Value]) -> ast.Value:
    """Block parameters replaced by their values and integer arithmetic done:
    `4*growth` with growth=32 is 128. Raises _ArgError (with the span) on a division by
    zero, a decimal in arithmetic, or a result beyond int64."""
    if v.kind == "word" and v.data in env:
        return env[v.data]
    if v.kind in ("tuple", "list"):
        return ast.Value(v.kind, tuple(_evaluate(x, env) for x in v.data), v.span)
    if v.kind != "expr":
        return v
    op, left, right = v.data
    a, b = _evaluate(left, env), _evaluate(right, env)
    for operand in (a, b):
        if not (operand.kind == "number" and isinstance(operand.data, int)):
            what = "an unknown name" if operand.kind == "word" else "not a whole number"
            raise _ArgError(
                f"arithmetic takes whole numbers and block parameters; '{operand.text()}' is {what}",
                span=operand.span,
            )
    if op == "//" and b.data == 0:
        raise _ArgError(f"division by zero in '{v.text()}'", span=v.span)
    result = {"+": a.data + b.data, "-": a.data - b.data, "*": a.data * b.data}.get(op)
    if op == "//":
        result = a.data // b.data
    assert result is not None
    if abs(result) > 2**63 - 1:
        raise _ArgError(f"'{v.text()}' is beyond int64", span=v.span)
    return ast.Value("number", result, v.span)


def _statement_word(stmt) -> str:
    return {
        ast.InputStmt: "`input`",
        ast.DropStmt: "`drop`",
        ast.FreezeStmt: "`freeze`",
        ast.OutputStmt: "`output`",
    }.get(type(stmt), "this")


def _placement_help(stmt) -> str | None:
    if isinstance(stmt, ast.InputStmt):
        return "`input` is the first line of a network"
    if isinstance(stmt, ast.DropStmt):
        return "`drop` works on a derived network: network NAME from BASE { ... }"
    if isinstance(stmt, ast.OutputStmt):
        return "`output` names a network's outputs, at the network's top level"
    return None


def _name_layers(raws: list[_Raw], counts: dict[str, int], taken: set[str], diagnostics) -> list[Layer]:
    """conv1, conv2, bn1, ...: numbered by kind in order of appearance, names or not;
    each layer's inputs named too (an index into `raws` becomes that layer's name)."""
    layers: list[Layer] = []
    for raw in raws:
        prefix = KINDS[raw.word].name_prefix(raw.config)
        counts[prefix] = counts.get(prefix, 0) + 1
        name = raw.alias or f"{prefix}{counts[prefix]}"
        if name in RESERVED_NAMES or name in TORCH_MODULE_ATTRIBUTES:
            what = "the exported graph" if name in ("input", "output", "in") else "cnnspec's PyTorch backend"
            diagnostics.append(
                with_call_sites(
                    error(
                        "reserved-name",
                        f"'{name}' cannot name a layer: {what} uses it",
                        raw.stmt.span,
                        f"choose another name with `as NAME`, e.g. `as {name}_1`",
                    ),
                    raw.calls,
                )
            )
        elif name in taken:
            diagnostics.append(
                error(
                    "duplicate-name",
                    f"a layer named '{name}' already exists in this network",
                    raw.stmt.span,
                    "choose another name with `as NAME`",
                )
            )
        taken.add(name)
        layers.append(
            Layer(
                name=name,
                config=raw.config,
                span=raw.stmt.span,
                arg_spans=MappingProxyType(raw.arg_spans),
                expect=(raw.asserted or raw.stmt).expect,
                expect_span=(raw.asserted or raw.stmt).expect_span,
                expect_text=(raw.asserted or raw.stmt).expect_text,
                calls=raw.calls,
                block=raw.block,
                inputs=tuple(ref if isinstance(ref, str) else layers[ref].name for ref in raw.inputs),
                residual=raw.residual,
            )
        )
    return layers


def _ref_name(ref: Ref, layers: list[Layer]) -> str:
    return ref if isinstance(ref, str) else layers[ref].name


def _aliases(body: tuple[ast.Statement, ...]) -> dict[str, Span]:
    """Every `as NAME` written in `body` (branches and repeats included), first one wins.
    Iterative: a body may nest deeper than Python's recursion limit (refused later)."""
    found: dict[str, Span] = {}
    todo = [body]
    while todo:
        for stmt in todo.pop():
            if isinstance(stmt, ast.LayerStmt):
                if stmt.alias is not None:
                    found.setdefault(stmt.alias, stmt.span)
                todo += [*stmt.branches, *((stmt.shortcut,) if stmt.shortcut is not None else ())]
            elif isinstance(stmt, ast.RepeatStmt):
                todo.append(stmt.body)
    return found


def _top_context() -> _Ctx:
    return _Ctx(env={}, stack=(), calls=(), prefix=None, block=None, suffix="", scope=_Scope(INPUT))


# ------------------------------------------------------------------ networks


class _Resolver:
    def __init__(self, ws: _Workspace):
        self.ws = ws
        self.diagnostics = ws.diagnostics
        self.networks: dict[str, tuple[str, ast.NetworkDef]] = {}
        self.blocks: dict[str, ast.BlockDef] = {}
        self.done: dict[str, Network | None] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.in_progress: list[str] = []
        for path, spec in ws.files.items():
            definitions: tuple[ast.NetworkDef | ast.BlockDef, ...] = (*spec.networks, *spec.blocks)
            for definition in definitions:
                known = self.networks.get(definition.name)
                first = known[1] if known else self.blocks.get(definition.name)
                if first is not None:
                    self.diagnostics.append(
                        error(
                            "duplicate-definition",
                            f"'{definition.name}' is defined twice (first at line {first.span.line} "
                            f"of {first.span.path})",
                            definition.span,
                        )
                    )
                    continue
                if definition.name in KINDS and isinstance(definition, ast.BlockDef):
                    self.diagnostics.append(
                        error(
                            "duplicate-definition",
                            f"block '{definition.name}' has the name of a layer kind",
                            definition.span,
                            "rename the block",
                        )
                    )
                    continue
                if isinstance(definition, ast.BlockDef):
                    self._check_params(definition)
                    self.blocks[definition.name] = definition
                else:
                    self.networks[definition.name] = (path, definition)

    def _check_params(self, block: ast.BlockDef) -> None:
        seen: set[str] = set()
        for param in block.params:
            if param.name in seen:
                self.diagnostics.append(
                    error(
                        "block-arguments",
                        f"block '{block.name}' has two parameters named '{param.name}'",
                        param.span,
                        "rename one of them",
                    )
                )
            elif param.name == "in":  # `from in`, `add a in` name the block's input
                self.diagnostics.append(
                    error(
                        "reserved-name",
                        f"'in' cannot name a parameter of block '{block.name}': inside a block, "
                        "`in` is the block's input",
                        param.span,
                        "choose another name, e.g. `channels`",
                    )
                )
            seen.add(param.name)

    def network(self, name: str, use_span: Span | None = None) -> Network | None:
        if name in self.done:
            return self.done[name]
        if name in self.in_progress:
            chain = " -> ".join((*self.in_progress, name))
            self.diagnostics.append(
                error("unknown-network", f"networks derive from each other in a cycle: {chain}", use_span)
            )
            return None
        if len(self.in_progress) >= MAX_DEPTH:
            self.diagnostics.append(
                error("too-deep", f"networks derive through more than {MAX_DEPTH} levels of `from`", use_span)
            )
            self.done[name] = None
            return None
        self.in_progress.append(name)
        try:
            _, definition = self.networks[name]
            result = self._derived(definition) if definition.base else self._plain(definition)
        finally:
            self.in_progress.pop()
        self.done[name] = result
        return result

    def _input(self, body) -> tuple[tuple[int, ...], Span] | None:
        first = body[0] if body else None
        if isinstance(first, ast.InputStmt):
            shape = first.shape
            if len(shape) not in (1, 3) or any(d <= 0 for d in shape):
                self.diagnostics.append(
                    error(
                        "invalid-argument",
                        f"input must be CxHxW or N with sizes above 0, got '{first.written}'",
                        first.span,
                        _input_hint(shape),
                    )
                )
                return None
            if _looks_channels_last(shape):
                height, width, channels = shape
                self.diagnostics.append(
                    warning(
                        "channels-last",
                        f"input {first.written} reads as {height} channels of {width}x{channels}: "
                        "cnnspec shapes are channels x height x width",
                        first.span,
                        f"for {channels} channel{'s' if channels > 1 else ''} of {height}x{width}: "
                        f"input {channels}x{height}x{width}",
                    )
                )
            return shape, first.span
        return None

    def _plain(self, definition: ast.NetworkDef) -> Network | None:
        body = definition.body
        given = self._input(body)
        if not body or not isinstance(body[0], ast.InputStmt):
            self.diagnostics.append(
                error(
                    "missing-input",
                    f"network '{definition.name}' must start with an `input` line",
                    definition.span,
                    "for example: input 3x32x32 (channels x height x width)",
                )
            )
        rest = body[1:] if body and isinstance(body[0], ast.InputStmt) else body
        layers_body = tuple(s for s in rest if not isinstance(s, ast.FreezeStmt))
        expander = _Expander(self.blocks, self.diagnostics)
        expander.written = _aliases(layers_body)
        raws: list[_Raw] = []
        last = expander.statements(layers_body, _top_context(), INPUT, raws)
        counts: dict[str, int] = {}
        layers = _name_layers(raws, counts, set(), self.diagnostics)
        self.counts[definition.name] = counts
        layers = self._freeze(rest, layers, layers, [])
        if given is None:
            return None
        outputs = self._outputs(expander, last, layers)
        return Network(definition.name, definition.span, given[0], given[1], tuple(layers), outputs=outputs)

    def _outputs(self, expander: _Expander, last: Ref, layers: list[Layer]) -> tuple[str, ...]:
        if expander.outputs:
            names = [_ref_name(ref, layers) for ref, _ in expander.outputs]
            for index, ((_, span), name) in enumerate(zip(expander.outputs, names)):
                if name == INPUT:
                    message, hint = "the network's input cannot be an output", "name a layer"
                elif name in names[:index]:
                    message, hint = f"'{name}' is already an output", "list each output once"
                else:
                    continue
                self.diagnostics.append(error("invalid-argument", message, span, hint))
            return tuple(dict.fromkeys(n for n in names if n != INPUT))
        name = _ref_name(last, layers)
        return () if name == INPUT else (name,)

    def _derived(self, definition: ast.NetworkDef) -> Network | None:
        assert definition.base is not None
        if definition.base not in self.networks:
            hint = did_you_mean(definition.base, self.networks)
            self.diagnostics.append(
                error(
                    "unknown-network",
                    f"no network named '{definition.base}'",
                    definition.base_span,
                    hint or 'define it in this file or bring its file in with `use "file.cnn"`',
                )
            )
            return None
        base = self.network(definition.base, definition.base_span)
        if base is None:
            return None
        body = definition.body
        given = self._input(body)
        rest = body[1:] if body and isinstance(body[0], ast.InputStmt) else body
        kept = list(base.layers)
        dropped: list[str] = []
        drop_failed = False  # then the new layers' shapes would only repeat that error
        names = [layer.name for layer in kept]
        instances = {layer.block for layer in kept if layer.block}
        for stmt in rest:
            if not isinstance(stmt, ast.DropStmt):
                continue
            if stmt.mode == "from":
                left = [layer.name for layer in kept]
                if stmt.target in names and stmt.target not in left:  # gone with an earlier drop
                    self.diagnostics.append(
                        error(
                            "unknown-name",
                            f"'{definition.base}' has no layer '{stmt.target}' left to drop",
                            stmt.span,
                            "an earlier `drop` in this network already removed it",
                        )
                    )
                    continue
                if stmt.target not in left and stmt.target not in instances:
                    hint = did_you_mean(str(stmt.target), names)
                    self.diagnostics.append(
                        error(
                            "unknown-name",
                            f"'{definition.base}' has no layer '{stmt.target}'",
                            stmt.span,
                            hint or f"its layers: {', '.join(names[:12])}",
                        )
                    )
                    drop_failed = True
                    continue
                # X and everything that depends on it (a block instance: all its layers).
                roots = {layer.name for layer in kept if stmt.target in (layer.name, layer.block)}
                gone = descendants(kept, roots)
                dropped += [layer.name for layer in kept if layer.name in gone]
                kept = [layer for layer in kept if layer.name not in gone]
                continue
            else:
                count = int(stmt.target)
                if count < 0:
                    self.diagnostics.append(
                        error(
                            "invalid-argument",
                            f"drop last takes a count of 0 or more, got {count}",
                            stmt.span,
                        )
                    )
                    drop_failed = True
                    continue
                if count > len(kept):
                    self.diagnostics.append(
                        error(
                            "drop-too-many",
                            f"cannot drop {count} layers: '{definition.base}' has {len(kept)} left",
                            stmt.span,
                            f"drop at most {len(kept)}",
                        )
                    )
                    drop_failed = True
                    continue
                cut = len(kept) - count
            dropped += [layer.name for layer in kept[cut:]]
            kept = kept[:cut]
        # Frozen-ness belongs to a training recipe, so a derived network starts unfrozen.
        kept = [replace(layer, frozen=False, origin="base") for layer in kept]
        new_body = tuple(
            s for s in rest if isinstance(s, (ast.LayerStmt, ast.RepeatStmt, ast.InputStmt, ast.OutputStmt))
        )
        attach = self._attach_point(definition, base, kept, new_body)
        expander = _Expander(
            self.blocks,
            self.diagnostics,
            {layer.name: layer.name for layer in kept},
            self.counts.get(definition.base, {}),
        )
        expander.written = _aliases(new_body)
        raws: list[_Raw] = []
        last = expander.statements(new_body, _top_context(), attach, raws)
        counts = dict(self.counts.get(definition.base, {}))  # new layers number on from the base
        new_layers = _name_layers(raws, counts, {layer.name for layer in kept}, self.diagnostics)
        self.counts[definition.name] = counts
        new_layers = [replace(layer, origin="new") for layer in new_layers]
        layers = self._freeze(rest, kept + new_layers, kept, dropped)
        if drop_failed:
            # The new layers would read what the drop failed to cut off: their shape errors
            # would only repeat it. Their own mistakes are reported; the kept part is checked.
            layers = [layer for layer in layers if layer.origin != "new"]
        shape, span = given if given else (base.input_shape, base.input_span)
        if (expander.outputs or raws) and not drop_failed:
            outputs = self._outputs(expander, last, new_layers)  # indices count the new layers
        else:  # nothing new: the base's outputs that were kept
            kept_names = {layer.name for layer in kept}
            outputs = tuple(name for name in base.outputs if name in kept_names) or (
                (attach,) if attach != INPUT else ()
            )
        return Network(
            definition.name,
            definition.span,
            shape,
            span,
            tuple(layers),
            definition.base,
            definition.base_span,
            tuple(dropped),
            outputs,
        )

    def _attach_point(self, definition, base: Network, kept: list[Layer], new_body) -> str:
        """What new layers read: the one end left after dropping (the base's output when
        nothing was dropped). Several ends are an error that lists them."""
        if not kept:
            return INPUT
        left = {layer.name for layer in kept}
        ends = [name for name in base.outputs if name in left] or unread(kept)
        if len(ends) > 1 and any(isinstance(s, (ast.LayerStmt, ast.RepeatStmt)) for s in new_body):
            first = next(s for s in new_body if isinstance(s, (ast.LayerStmt, ast.RepeatStmt)))
            if not (isinstance(first, ast.LayerStmt) and first.source):
                self.diagnostics.append(
                    error(
                        "unknown-reference",
                        f"the new layers could attach to any of {', '.join(ends)}: "
                        f"'{definition.base}' has several ends left",
                        first.span,
                        f"say which with `from NAME` on the first new line, e.g. `... from {ends[0]}`",
                    )
                )
        return ends[-1] if ends else kept[-1].name

    def _freeze(self, body, layers: list[Layer], base_layers: list[Layer], dropped: list[str]) -> list[Layer]:
        frozen: set[str] = set()
        names = [layer.name for layer in layers]
        instances = {layer.block for layer in layers if layer.block}
        for stmt in body:
            if not isinstance(stmt, ast.FreezeStmt):
                continue
            if stmt.mode == "all":
                frozen |= {layer.name for layer in base_layers}
                continue
            for target in stmt.names:
                if target in dropped and target not in names:
                    self.diagnostics.append(
                        error(
                            "unknown-name",
                            f"'{target}' is dropped in this network, so there is nothing to freeze",
                            stmt.span,
                            "freeze only what is kept or new: drop it, or freeze it, not both",
                        )
                    )
                elif target not in names and target not in instances:
                    hint = did_you_mean(target, [*names, *instances])
                    self.diagnostics.append(
                        error(
                            "unknown-name",
                            f"no layer or block named '{target}' to freeze",
                            stmt.span,
                            hint or f"layers: {', '.join(names[:12])}",
                        )
                    )
                elif stmt.mode == "through":
                    # X and everything X depends on (a block instance: through its last layer).
                    last = max(i for i, layer in enumerate(layers) if target in (layer.name, layer.block))
                    frozen |= ancestors(layers, [names[last]])
                else:
                    frozen |= {layer.name for layer in layers if target in (layer.name, layer.block)}
        if not frozen:
            return layers
        return [replace(layer, frozen=layer.name in frozen) for layer in layers]


def resolve_sources(text: str, path: str, real: Path | None, only: str | None = None) -> Resolved:
    """Parse one file (and what it uses) and resolve the networks it defines."""
    ws = _Workspace()
    try:
        start = real.resolve() if real else None
    except (RuntimeError, OSError):  # a symlink loop; the text was read through it anyway
        start = None
    if start is not None:
        ws.read.append(start)
    _load(ws, text, path, start, (start,) if start else ())
    resolver = _Resolver(ws)
    main = ws.files.get(path)
    # A network defined twice is reported (duplicate-definition) and checked once.
    targets = list(dict.fromkeys(n.name for n in main.networks)) if main else []
    if main is not None and not main.networks and not main.blocks and not main.uses:
        ws.diagnostics.append(
            error(
                "no-network",
                "this file defines no network",
                Span(path, 1, 1),
                "a spec holds `network NAME { input CxHxW ... }`",
            )
        )
    if only is not None and main is not None:  # with a syntax error, that error is the news
        if only not in targets:
            hint = did_you_mean(only, targets)
            listing = ", ".join(targets) or "none"
            ws.diagnostics.append(
                error("unknown-network", f"{path} has no network '{only}' (it has: {listing})", None, hint)
            )
            targets = []
        else:
            targets = [only]
    elif only is not None:
        targets = []
    for name in targets:
        resolver.network(name)
    networks = {name: net for name, net in resolver.done.items() if net is not None}
    return Resolved(
        networks, [t for t in targets if t in networks], ws.diagnostics, ws.sources, ws.read, ws.files
    )
