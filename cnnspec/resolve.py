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

from . import syntax as ast
from .diagnostics import CnnspecError, Diagnostic, Span, did_you_mean, error, with_call_sites
from .files import UnreadableFile, read_source
from .layers import ACTIVATIONS, DEFAULT_ALPHA, KINDS, LayerConfig, Shape
from .parse import parse_source

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


@dataclass(frozen=True)
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

    @property
    def kind(self) -> str:
        return self.config.kind

    def spec_text(self) -> str:
        return self.config.short()


@dataclass(frozen=True)
class Network:
    name: str
    span: Span
    input_shape: Shape
    input_span: Span
    layers: tuple[Layer, ...]
    base: str | None = None
    base_span: Span | None = None
    dropped: tuple[str, ...] = ()


@dataclass
class Resolved:
    """Every network that was resolved, the ones asked for, and what went wrong."""

    networks: dict[str, Network]
    targets: list[str]
    diagnostics: list[Diagnostic]
    sources: dict[str, str]
    files: list[Path] = field(default_factory=list)  # every file read, resolved


# ------------------------------------------------------------------ files and `use`


@dataclass
class _Workspace:
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
    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.help = help


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
            example = {
                "conv": "conv 32 3x3",
                "pool": "pool max 2",
                "dense": "dense 10",
                "dropout": "dropout 0.5",
                "globalpool": "globalpool avg",
            }.get(word, word)
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
            problems.append(error("invalid-argument", f"{word} {name}: {message}", spans.get(name, span)))
        return None, spans, problems


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


def _too_many(word: str, v: ast.Value, cls: type[LayerConfig], positional) -> Diagnostic:
    usage = f"{word} {' '.join(positional).upper()}".strip()
    hint = None
    if v.kind == "word" and v.data in cls.arguments:
        hint = f"options take a value: {v.data}=..."
    elif v.kind == "word":
        close = did_you_mean(v.data, list(cls.flags) + list(cls.arguments))
        hint = close
    message = f"unexpected argument '{v.text()}' ({usage} takes {len(positional)}"
    message += f" bare argument{'s' if len(positional) != 1 else ''}"
    if cls.flags:
        flags = sorted(cls.flags)
        shown = ", ".join(flags[:7])
        message += f" and the words {shown}"
    return error("too-many-arguments", message + ")", v.span, hint)


# ------------------------------------------------------------------ expansion


@dataclass(frozen=True)
class _Raw:
    """A layer before naming: what expansion produces."""

    word: str
    config: LayerConfig
    stmt: ast.LayerStmt
    arg_spans: dict[str, Span]
    alias: str | None
    calls: tuple[Span, ...]
    block: str | None


class _Expander:
    def __init__(self, blocks: dict[str, ast.BlockDef], diagnostics: list[Diagnostic]):
        self.blocks = blocks
        self.diagnostics = diagnostics
        self.block_uses: dict[str, int] = {}
        self.steps = 0  # see MAX_EXPANSION
        self.block_sizes: dict[str, int] = {}
        self.exhausted = False

    def size(self, body: tuple[ast.Statement, ...], env: Mapping[str, ast.Value], depth: int = 0) -> int:
        """A lower bound of the steps `body` expands to (at least 1), computed without
        expanding: nested literal repeats multiply, block calls count their bodies."""
        total = 0
        for stmt in body:
            if depth > MAX_DEPTH or total > MAX_EXPANSION:
                break
            if isinstance(stmt, ast.RepeatStmt):
                count = _substitute(stmt.count, env)
                times = count.data if count.kind == "number" and isinstance(count.data, int) else 1
                total += 1 + max(times, 0) * (1 + self.size(stmt.body, env, depth + 1))
            elif isinstance(stmt, ast.LayerStmt) and stmt.op in self.blocks:
                if stmt.op not in self.block_sizes:  # memoised: blocks calling blocks twice
                    self.block_sizes[stmt.op] = 1  # (and a recursive block) stay linear
                    self.block_sizes[stmt.op] = self.size(self.blocks[stmt.op].body, {}, depth + 1)
                total += 1 + self.block_sizes[stmt.op]
            else:
                total += 1
        return max(total, 1)

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

    def statements(
        self,
        body: tuple[ast.Statement, ...],
        env: dict[str, ast.Value],
        stack: tuple[str, ...],
        calls: tuple[Span, ...],
        instance: str | None,
        suffix: str,
        out: list[_Raw],
    ) -> None:
        for stmt in body:
            if self.exhausted:
                return
            self.steps += 1
            if self.steps > MAX_EXPANSION:
                self._over_budget(stmt.span, calls, "this network is too large")
                return
            if isinstance(stmt, ast.LayerStmt):
                self.layer(stmt, env, stack, calls, instance, suffix, out)
            elif isinstance(stmt, ast.RepeatStmt):
                count_value = _substitute(stmt.count, env)
                try:
                    count = _int(count_value)
                    if count < 0:
                        raise _ArgError(f"repeat count must be 0 or more, got {count}")
                except _ArgError as exc:
                    self.diagnostics.append(
                        with_call_sites(error("invalid-argument", str(exc), count_value.span), calls)
                    )
                    continue
                if self.steps + count * (1 + self.size(stmt.body, env)) > MAX_EXPANSION:
                    self._over_budget(count_value.span, calls, f"repeat {count:,} is too large")
                    return
                if len(stack) >= MAX_DEPTH and self._too_deep(stmt.span, calls):
                    return
                for i in range(count):
                    if self.exhausted:
                        return
                    self.steps += 1  # an empty body costs a step too
                    tag = f"{suffix}_{i + 1}" if count > 1 else suffix
                    self.statements(stmt.body, env, (*stack, _REPEAT), calls, instance, tag, out)
            else:
                where = "a block" if any(s != _REPEAT for s in stack) else "this network"
                self.diagnostics.append(
                    error(
                        "misplaced-statement",
                        f"{_statement_word(stmt)} is not allowed in {where}",
                        stmt.span,
                        _placement_help(stmt),
                    )
                )

    def layer(self, stmt, env, stack, calls, instance, suffix, out) -> None:
        args = [_substitute(v, env) for v in stmt.args]
        options = [(o.name, _substitute(o.value, env), o.span) for o in stmt.options]
        alias = stmt.alias
        if alias is not None:
            alias = f"{instance}_{alias}" if instance else alias
            alias = alias + suffix
        if stmt.op in KINDS:
            config, spans, problems = _build_config(stmt.op, args, options, stmt.span)
            self.diagnostics.extend(with_call_sites(p, calls) for p in problems)
            if config is not None:
                out.append(_Raw(stmt.op, config, stmt, spans, alias, calls, instance))
            return
        block = self.blocks.get(stmt.op)
        if block is None:
            choices = list(KINDS) + list(self.blocks)
            hint = did_you_mean(stmt.op, choices)
            self.diagnostics.append(
                error(
                    "unknown-layer",
                    f"unknown layer or block '{stmt.op}'",
                    stmt.span,
                    hint or "layers: " + ", ".join(sorted(KINDS)),
                )
            )
            return
        if block.name in stack:
            chain = " -> ".join(s for s in (*stack, block.name) if s != _REPEAT)
            self.diagnostics.append(
                error("recursive-block", f"block '{block.name}' uses itself: {chain}", stmt.span)
            )
            return
        bound = self.bind(block, stmt, args, options)
        if bound is None:
            return
        if len(stack) >= MAX_DEPTH and self._too_deep(stmt.span, calls):
            return
        self.block_uses[block.name] = self.block_uses.get(block.name, 0) + 1
        name = instance or (stmt.alias or f"{block.name}{self.block_uses[block.name]}")
        self.statements(block.body, bound, (*stack, block.name), (*calls, stmt.span), name, suffix, out)

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


def _substitute(v: ast.Value, env: Mapping[str, ast.Value]) -> ast.Value:
    if v.kind == "word" and v.data in env:
        return env[v.data]
    if v.kind in ("tuple", "list") and env:
        return ast.Value(v.kind, tuple(_substitute(x, env) for x in v.data), v.span)
    return v


def _statement_word(stmt) -> str:
    return {ast.InputStmt: "`input`", ast.DropStmt: "`drop`", ast.FreezeStmt: "`freeze`"}.get(
        type(stmt), "this"
    )


def _placement_help(stmt) -> str | None:
    if isinstance(stmt, ast.InputStmt):
        return "`input` is the first line of a network"
    if isinstance(stmt, ast.DropStmt):
        return "`drop` works on a derived network: network NAME from BASE { ... }"
    return None


def _name_layers(raws: list[_Raw], counts: dict[str, int], taken: set[str], diagnostics) -> list[Layer]:
    """conv1, conv2, bn1, ...: numbered by kind in order of appearance, names or not."""
    layers = []
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
                expect=raw.stmt.expect,
                expect_span=raw.stmt.expect_span,
                expect_text=raw.stmt.expect_text,
                calls=raw.calls,
                block=raw.block,
            )
        )
    return layers


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
                        "for example: input 3x224x224 (channels x height x width)",
                    )
                )
                return None
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
        raws: list[_Raw] = []
        expander.statements(layers_body, {}, (), (), None, "", raws)
        counts: dict[str, int] = {}
        layers = _name_layers(raws, counts, set(), self.diagnostics)
        self.counts[definition.name] = counts
        layers = self._freeze(rest, layers, layers)
        if given is None:
            return None
        return Network(definition.name, definition.span, given[0], given[1], tuple(layers))

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
        names = [layer.name for layer in kept]
        for stmt in rest:
            if not isinstance(stmt, ast.DropStmt):
                continue
            if stmt.mode == "from":
                if stmt.target not in names[: len(kept)]:
                    hint = did_you_mean(str(stmt.target), names)
                    self.diagnostics.append(
                        error(
                            "unknown-name",
                            f"'{definition.base}' has no layer '{stmt.target}'"
                            + (" left to drop" if stmt.target in names else ""),
                            stmt.span,
                            hint or f"its layers: {', '.join(names[:12])}",
                        )
                    )
                    continue
                cut = names.index(stmt.target)
            else:
                count = int(stmt.target)
                if count > len(kept) or count < 0:
                    self.diagnostics.append(
                        error(
                            "drop-too-many",
                            f"cannot drop {count} layers: '{definition.base}' has {len(kept)} left",
                            stmt.span,
                            f"drop at most {len(kept)}",
                        )
                    )
                    continue
                cut = len(kept) - count
            dropped += [layer.name for layer in kept[cut:]]
            kept = kept[:cut]
        # Frozen-ness belongs to a training recipe, so a derived network starts unfrozen.
        kept = [replace(layer, frozen=False, origin="base") for layer in kept]
        new_body = tuple(s for s in rest if isinstance(s, (ast.LayerStmt, ast.RepeatStmt, ast.InputStmt)))
        expander = _Expander(self.blocks, self.diagnostics)
        raws: list[_Raw] = []
        expander.statements(new_body, {}, (), (), None, "", raws)
        counts = dict(self.counts.get(definition.base, {}))  # new layers number on from the base
        new_layers = _name_layers(raws, counts, {layer.name for layer in kept}, self.diagnostics)
        self.counts[definition.name] = counts
        new_layers = [replace(layer, origin="new") for layer in new_layers]
        layers = self._freeze(rest, kept + new_layers, kept)
        shape, span = given if given else (base.input_shape, base.input_span)
        return Network(
            definition.name,
            definition.span,
            shape,
            span,
            tuple(layers),
            definition.base,
            definition.base_span,
            tuple(dropped),
        )

    def _freeze(self, body, layers: list[Layer], base_layers: list[Layer]) -> list[Layer]:
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
                if target not in names and target not in instances:
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
                    last = max(i for i, layer in enumerate(layers) if target in (layer.name, layer.block))
                    frozen |= set(names[: last + 1])
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
    return Resolved(networks, [t for t in targets if t in networks], ws.diagnostics, ws.sources, ws.read)
