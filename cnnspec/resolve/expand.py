"""Expansion: blocks, `repeat`, combinators and named joins become a flat list of layers,
each reading the layers before it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..base.diagnostics import Diagnostic, Span, did_you_mean, error, with_call_sites
from ..base.records import record
from ..kinds import KINDS, LayerConfig, Slice
from ..language import syntax as ast
from .bind import PLANE, ArgError, Axes, build_config, evaluate, foreign_name, glued_minus, whole_number
from .network import BODY, INPUT, MAX_DEPTH, MAX_EXPANSION, NOT_BLOCKS, REPEAT, Budget

Ref = int | str  # a layer being expanded (its index) or a final name (`input`, a base layer)


COMBINATORS = ("residual",)  # `residual { B } [shortcut { S }]`; the joins take bodies too
SPLIT = "split"  # `split 2 as a b`: one `slice` layer per part


@record
class Raw:
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


class Expander:
    def __init__(
        self,
        blocks: dict[str, ast.BlockDef],
        diagnostics: list[Diagnostic],
        external: Mapping[str, str] | None = None,
        counts: Mapping[str, int] | None = None,
        budget: Budget | None = None,
        axes: Axes = PLANE,
    ):
        self.blocks = blocks
        self.axes = axes  # the spatial axes of the network's input: how sizes are read
        self.counts = dict(counts or {})  # automatic names, numbered on as `name_layers` does
        self.final: dict[str, int] = {}  # every final name so far -> its layer
        self.written: dict[str, Span] = {}  # `as NAME` anywhere in the body, for "written later"
        self.diagnostics = diagnostics
        self.external = dict(external or {})  # a base network's layer names, readable by name
        self.block_uses: dict[str, int] = {}
        self.budget = budget or Budget()  # shared by every network of one input
        self.block_sizes: dict[str, int] = {}
        self.exhausted = False
        self.outputs: list[tuple[Ref, Span]] = []
        self.instance_calls: dict[str, str] = {}  # outermost block instance -> its call as written
        self.configs: dict[tuple[int, ...], tuple] = {}  # see _config
        self.glued: dict[int, Diagnostic | None] = {}  # glued_minus by statement

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
                # (a split makes a layer per name after `as`)
                total += 1 + len(stmt.more_names) + sum(self.size(b, env, depth + 1) for b in bodies)
                if stmt.op in self.blocks:
                    if stmt.op not in self.block_sizes:  # memoised: blocks calling blocks twice
                        self.block_sizes[stmt.op] = 1  # (and a recursive block) stay linear
                        self.block_sizes[stmt.op] = self.size(self.blocks[stmt.op].body, {}, depth + 1)
                    total += self.block_sizes[stmt.op]
            else:
                total += 1
        return total

    def _over_budget(self, span: Span, calls: tuple[Span, ...], what: str, spent: bool = True) -> None:
        """Stop expanding this network; with `spent`, the whole input (said once)."""
        self.exhausted = True
        if spent:
            if self.budget.spent:  # said once for the input; later networks are not expanded
                return
            self.budget.spent = True
        self.diagnostics.append(
            with_call_sites(
                error(
                    "too-large",
                    f"{what}: a file and the files it uses expand to at most {MAX_EXPANSION:,} "
                    "layers and repeats in all",
                    span,
                    "check the repeat counts, and how many networks repeat the same layers",
                ),
                calls,
            )
        )

    def statements(self, body: tuple[ast.Statement, ...], ctx: _Ctx, current: Ref, out: list[Raw]) -> Ref:
        """Expand `body` reading `current` first; returns what its last statement gives."""
        outputs: list[ast.OutputStmt] = []  # resolved after the body: `output` may come first
        for stmt in body:
            if self.exhausted:
                return current
            if not self.budget.spend(1):
                self._over_budget(stmt.span, ctx.calls, "this file is too large")
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
                where = "a block" if any(s not in NOT_BLOCKS for s in ctx.stack) else "this network"
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

    def repeat(self, stmt: ast.RepeatStmt, ctx: _Ctx, current: Ref, out: list[Raw]) -> Ref:
        try:
            count_value = evaluate(stmt.count, ctx.env)
            count = whole_number(count_value)
            if count < 0:
                raise ArgError(f"repeat count must be 0 or more, got {count}")
        except ArgError as exc:
            span = exc.span or stmt.count.span
            self.diagnostics.append(
                with_call_sites(error("invalid-argument", str(exc), span, exc.help), ctx.calls)
            )
            return current
        need = count * (1 + self.size(stmt.body, ctx.env))
        if need > self.budget.left:
            # Too large on its own: a mistake of this line, said every time. Too large for
            # what the other networks left: the input's budget is spent, said once.
            self._over_budget(
                stmt.count.span, ctx.calls, f"repeat {count:,} is too large", spent=need <= MAX_EXPANSION
            )
            return current
        if len(ctx.stack) >= MAX_DEPTH and self._too_deep(stmt.span, ctx.calls):
            return current
        stack = (*ctx.stack, REPEAT)
        for i in range(count):
            if self.exhausted:
                return current
            if not self.budget.spend(1):  # an empty body costs a step too
                self._over_budget(stmt.span, ctx.calls, "this file is too large")
                return current
            tag = f"{ctx.suffix}_{i + 1}" if count > 1 else ctx.suffix
            inner = _Ctx(ctx.env, stack, ctx.calls, ctx.prefix, ctx.block, tag, ctx.scope)
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
        if found is None and name == INPUT and not any(level not in NOT_BLOCKS for level in ctx.stack):
            found = INPUT  # at the top level, `input` is the network's input, as `in` is
        if found is None:
            found = self.final.get(name, self.external.get(name))
        if found is None:
            known = itertools.chain.from_iterable(  # gathered only if a suggestion is made
                names() for names in (ctx.scope.known, self.external.keys, self.final.keys)
            )
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

    def _emit(
        self, raw: Raw, stmt: ast.LayerStmt, ctx: _Ctx, out: list[Raw], written: str | None = None
    ) -> int:
        """Add the layer; `written`: its name as written (default: the statement's `as`)."""
        out.append(raw)
        index = len(out) - 1
        written = written if written is not None else stmt.alias
        if written is not None:
            ctx.scope.names[written] = index
        # The final name (`conv3`, `b1_c`) is readable from anywhere after it, as the table
        # shows it; `name_layers` gives the same names (same counts, same order).
        prefix = KINDS[raw.word].name_prefix(raw.config)
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        self.final[raw.alias or f"{prefix}{self.counts[prefix]}"] = index
        return index

    def _config(self, stmt: ast.LayerStmt, args: list[ast.Value], options: list) -> tuple:
        """`build_config`, once per statement and argument values: a `repeat 6000` or a
        block used 100 times with the same arguments builds one config, shared (it is
        immutable). Values are compared by identity: an unbound value is the statement's
        own, a bound one the caller's."""
        key = (id(stmt), *map(id, args), *(id(value) for _, value, _ in options))
        cached = self.configs.get(key)
        if cached is None:  # the entry holds what the key names, so no id is reused
            cached = self.configs[key] = (
                build_config(stmt.op, args, options, stmt.span, self.axes),
                stmt,
                args,
                options,
            )
        return cached[0]

    def layer(self, stmt: ast.LayerStmt, ctx: _Ctx, current: Ref, out: list[Raw]) -> Ref:
        evaluated = self._arguments(stmt, ctx)
        if evaluated is None:
            return current
        args, options = evaluated
        source = current
        if stmt.source is not None:
            found = self.reference(stmt.source, stmt.source_span or stmt.span, ctx)
            if found is None:
                return current
            source = found
        cls = KINDS.get(stmt.op)
        if stmt.more_names and stmt.op != SPLIT:
            self.diagnostics.append(
                with_call_sites(
                    error(
                        "invalid-argument",
                        f"{stmt.op} makes one layer: one name after `as` (only `split` names several)",
                        stmt.more_spans[0],
                        f"as {stmt.alias}",
                    ),
                    ctx.calls,
                )
            )
            return current
        if stmt.op == SPLIT and not stmt.branches:
            return self.split(stmt, ctx, source, out, args, options)
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
            config, spans, problems = self._config(stmt, args, options)
            self.diagnostics.extend(with_call_sites(p, ctx.calls) for p in problems)
            if config is None:
                return current
            raw = Raw(stmt.op, config, stmt, spans, self._alias(stmt, ctx), ctx.calls, ctx.block, (source,))
            return self._emit(raw, stmt, ctx, out)
        return self.block_call(stmt, ctx, current, source, out, args, options)

    def split(self, stmt: ast.LayerStmt, ctx: _Ctx, source: Ref, out: list[Raw], args, options) -> Ref:
        """`split N as a b ...` or `split (A, B, ...) as a b ...`: one `slice` per part,
        each reading `source`, named as written; the next line reads the last part."""
        parsed = _split_parts(stmt, args, options)
        if isinstance(parsed, Diagnostic):
            self.diagnostics.append(with_call_sites(parsed, ctx.calls))
            return source
        fields, count, spans = parsed
        names = (stmt.alias, *stmt.more_names) if stmt.alias is not None else ()
        if len(names) != count:
            given = f"{len(names)} name{'s' * (len(names) != 1)}" if names else "no names"
            example = " ".join(f"part{i + 1}" for i in range(min(count, 8)))
            problem = error(
                "missing-argument" if len(names) < count else "too-many-arguments",
                f"split makes {count} parts but has {given}: each part is read by its name",
                stmt.span,
                f"split {args[0].text()} as {example}" + (" ..." if count > 8 else ""),
            )
            self.diagnostics.append(with_call_sites(problem, ctx.calls))
            return source
        if not self.budget.spend(count - 1):  # the statement paid for one layer; a part each
            self._over_budget(stmt.span, ctx.calls, "this file is too large")
            return source
        last: Ref = source
        for part, name in enumerate(names):
            config = Slice.validate({**fields, "part": part})
            alias = (f"{ctx.prefix}_{name}" if ctx.prefix else name) + ctx.suffix
            raw = Raw("slice", config, stmt, spans, alias, ctx.calls, ctx.block, (source,))
            last = self._emit(raw, stmt, ctx, out, written=name)
        return last

    def _arguments(self, stmt: ast.LayerStmt, ctx: _Ctx) -> tuple[list[ast.Value], list] | None:
        """The statement's arguments and options with block parameters substituted (None
        after an error, reported)."""
        if id(stmt) not in self.glued:  # by statement: a repeat checks its text once
            self.glued[id(stmt)] = glued_minus(stmt)
        glued = self.glued[id(stmt)]
        if glued is not None:
            self.diagnostics.append(with_call_sites(glued, ctx.calls))
            return None
        try:
            args = [evaluate(v, ctx.env) for v in stmt.args]
            options = [(o.name, evaluate(o.value, ctx.env), o.span) for o in stmt.options]
        except ArgError as exc:
            self.diagnostics.append(
                with_call_sites(
                    error("invalid-argument", str(exc), exc.span or stmt.span, exc.help), ctx.calls
                )
            )
            return None
        return args, options

    def block_call(
        self, stmt: ast.LayerStmt, ctx: _Ctx, current: Ref, source: Ref, out, args, options
    ) -> Ref:
        """A statement naming a block: its body expanded with the arguments bound."""
        block = self.blocks.get(stmt.op)
        if block is None:
            choices = list(KINDS) + list(self.blocks) + list(COMBINATORS)
            hint = foreign_name(stmt.op) or did_you_mean(stmt.op, choices)
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
            chain = " -> ".join(s for s in (*ctx.stack, block.name) if s not in NOT_BLOCKS)
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
        if ctx.block is None:  # an instance of the network itself: its call, as written
            self.instance_calls[own] = _call_text(stmt)
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

    def combinator(self, stmt: ast.LayerStmt, ctx: _Ctx, source: Ref, out: list[Raw], args, options) -> Ref:
        """`residual {B} [shortcut {S}]`, `concat {A} {B}...`, `add {A} {B}...`, `multiply {A}`:
        each body reads `source` ({} is `source` itself); a join of their ends follows."""
        word = "add" if stmt.op == "residual" else stmt.op
        cls = KINDS.get(word)
        problem = _combinator_problem(stmt, cls, args, options)
        if problem is not None or cls is None:
            self.diagnostics.extend([problem] if problem else [])
            return source
        if len(ctx.stack) >= MAX_DEPTH and self._too_deep(stmt.span, ctx.calls):
            return source  # bodies nest as deep as blocks and repeats may
        stack = (*ctx.stack, BODY)
        ends: list[Ref] = []
        for body in stmt.branches:
            scope = _Scope(ctx.scope.input, parent=ctx.scope)
            ends.append(self.statements(body, replace(ctx, scope=scope, stack=stack), source, out))
        if stmt.op == "residual":
            scope = _Scope(ctx.scope.input, parent=ctx.scope)
            shortcut = self.statements(
                stmt.shortcut or (), replace(ctx, scope=scope, stack=stack), source, out
            )
            ends = [ends[0], shortcut]
        elif stmt.op == "multiply":
            ends = [source, *ends]
        if len(ends) < 2:
            ends = [source, *ends]
        config = cls.validate({})
        raw = Raw(
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

    def named_join(self, stmt: ast.LayerStmt, ctx: _Ctx, source: Ref, out: list[Raw], args, options) -> Ref:
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
        raw = Raw(stmt.op, config, stmt, {}, self._alias(stmt, ctx), ctx.calls, ctx.block, tuple(inputs))
        return self._emit(raw, stmt, ctx, out)

    def _too_deep(self, span: Span, calls: tuple[Span, ...]) -> bool:
        self.exhausted = True
        self.diagnostics.append(
            with_call_sites(
                error(
                    "too-deep",
                    f"blocks, repeats and {{ bodies }} nest more than {MAX_DEPTH} levels deep here",
                    span,
                    f"cnnspec expands at most {MAX_DEPTH} nested `repeat`s, block calls and combinator bodies",
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


def _combinator_problem(stmt: ast.LayerStmt, cls, args, options) -> Diagnostic | None:
    """What is wrong with a statement written with { bodies }, if anything."""
    if cls is None or not cls.joins:
        return error(
            "unknown-layer",
            f"'{stmt.op}' takes no {{ body }}: only residual, concat, add and multiply do",
            stmt.span,
            did_you_mean(stmt.op, ["residual", "concat", "add", "multiply"]),
        )
    if args or options:
        first = args[0].span if args else options[0][2]
        return error("too-many-arguments", f"{stmt.op} with bodies takes no arguments", first)
    if stmt.op == "residual" and len(stmt.branches) != 1:
        return error(
            "misplaced-statement",
            "residual takes one body (and a `shortcut { ... }`)",
            stmt.span,
            "residual { B } is input + B; residual { B } shortcut { S } is S + B",
        )
    if stmt.shortcut is not None and stmt.op != "residual":
        return error("misplaced-statement", "only residual takes a `shortcut { ... }`", stmt.span)
    return None


def _call_text(stmt: ast.LayerStmt) -> str:
    """`basic_down 128`: a block call as written (its `as` and `-> SHAPE` left out)."""
    written = [*(a.text() for a in stmt.args), *(f"{o.name}={o.value.text()}" for o in stmt.options)]
    return " ".join([stmt.op, *written])


def _block_usage(block: ast.BlockDef) -> str:
    words = [p.name.upper() if p.default is None else f"[{p.name}={p.default.text()}]" for p in block.params]
    return " ".join([block.name, *words])


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


MAX_SPLIT = 4096  # parts of one split (a channel each at most)


def _split_parts(stmt: ast.LayerStmt, args, options) -> tuple[dict, int, dict[str, Span]] | Diagnostic:
    """A split's Slice fields (parts or sizes), its number of parts and the span of the
    argument; or the diagnostic for what was written instead."""
    if options:
        return error("unknown-option", "split takes no options", options[0][2], "split 2 as left right")
    if len(args) != 1:
        span = args[1].span if args else stmt.span
        code = "too-many-arguments" if args else "missing-argument"
        return error(
            code,
            "split takes one argument: the number of equal parts, or their sizes",
            span,
            "split 2 as left right, or split (16, 48) as narrow wide",
        )
    value = args[0]
    if value.kind == "number" and isinstance(value.data, int) and 2 <= value.data <= MAX_SPLIT:
        return {"parts": value.data}, value.data, {"parts": value.span}
    if value.kind == "tuple" and all(
        v.kind == "number" and isinstance(v.data, int) and v.data > 0 for v in value.data
    ):
        sizes = tuple(v.data for v in value.data)
        if len(sizes) <= MAX_SPLIT:
            return {"sizes": sizes}, len(sizes), {"sizes": value.span}
    return error(
        "invalid-argument",
        f"split takes 2 to {MAX_SPLIT:,} equal parts, or a tuple of positive sizes; got '{value.text()}'",
        value.span,
        "split 2 as left right, or split (16, 48) as narrow wide",
    )


def aliases(body: tuple[ast.Statement, ...]) -> dict[str, Span]:
    """Every `as NAME` written in `body` (branches and repeats included), first one wins.
    Iterative: a body may nest deeper than Python's recursion limit (refused later)."""
    found: dict[str, Span] = {}
    todo = [body]
    while todo:
        for stmt in todo.pop():
            if isinstance(stmt, ast.LayerStmt):
                for name in (stmt.alias, *stmt.more_names) if stmt.alias is not None else ():
                    found.setdefault(name, stmt.span)
                todo += [*stmt.branches, *((stmt.shortcut,) if stmt.shortcut is not None else ())]
            elif isinstance(stmt, ast.RepeatStmt):
                todo.append(stmt.body)
    return found


def top_context() -> _Ctx:
    return _Ctx(env={}, stack=(), calls=(), prefix=None, block=None, suffix="", scope=_Scope(INPUT))
