"""Networks, written or derived from a base (`from BASE`: drop, freeze, add): the resolver
that drives loading, expansion and naming for each network of a file."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..base.diagnostics import Diagnostic, Span, did_you_mean, error, warning
from ..base.graph import ancestors, descendants, unread
from ..kinds import KINDS, MAX_RANK
from ..language import syntax as ast
from .bind import PLANE, Axes, input_hint, looks_channels_last, rank_surprise
from .expand import Expander, Raw, Ref, aliases, top_context
from .load import Workspace
from .names import name_layers, ref_name
from .network import INPUT, MAX_DEPTH, MAX_EXPANSION, Budget, Layer, Network


def _kept_outputs(base: Network, kept: list[Layer], attach: str) -> tuple[str, ...]:
    """A derived network that adds nothing: the base's outputs that were kept, or its end."""
    kept_names = {layer.name for layer in kept}
    return tuple(name for name in base.outputs if name in kept_names) or (
        (attach,) if attach != INPUT else ()
    )


@dataclass
class _Drops:
    """A base network's layers as `drop` statements cut them, in order."""

    kept: list[Layer]
    dropped: list[str] = field(default_factory=list)
    failed: bool = False  # then the new layers' shapes would only repeat that error

    def __post_init__(self) -> None:
        self.names = [layer.name for layer in self.kept]  # every layer of the base, for hints
        self.instances = {layer.block for layer in self.kept if layer.block}


class Resolver:
    def __init__(self, ws: Workspace):
        self.ws = ws
        self.diagnostics = ws.diagnostics
        self.networks: dict[str, tuple[str, ast.NetworkDef]] = {}
        self.blocks: dict[str, ast.BlockDef] = {}
        self.done: dict[str, Network | None] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.in_progress: list[str] = []
        self.budget = Budget()  # one for the whole input: see Budget
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
        if self.budget.spent:  # the input's budget is spent: no more networks are resolved
            self.done[name] = None
            return None
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
            if not 1 <= len(shape) <= MAX_RANK + 1 or any(d <= 0 for d in shape):
                self.diagnostics.append(
                    error(
                        "invalid-argument",
                        "input must be CxHxW (an image), CxL (a sequence), CxDxHxW (a volume) or N, "
                        f"with sizes above 0, got '{first.written}'",
                        first.span,
                        input_hint(shape),
                    )
                )
                return None
            surprise = rank_surprise(shape, first.written)
            if surprise is not None:
                self.diagnostics.append(warning("input-rank", surprise[0], first.span, surprise[1]))
            if looks_channels_last(shape):
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
        axes = _axes(given[0], _written(body)) if given else PLANE
        expander = Expander(self.blocks, self.diagnostics, budget=self.budget, axes=axes)
        expander.written = aliases(layers_body)
        raws: list[Raw] = []
        last = expander.statements(layers_body, top_context(), INPUT, raws)
        counts: dict[str, int] = {}
        layers = name_layers(raws, counts, set(), self.diagnostics)
        self.counts[definition.name] = counts
        layers = self._freeze(rest, layers, layers, [])
        if given is None:
            return None
        outputs = self._outputs(expander, last, layers)
        return Network(
            definition.name,
            definition.span,
            given[0],
            given[1],
            tuple(layers),
            outputs=outputs,
            instances=expander.instance_calls,
        )

    def _outputs(self, expander: Expander, last: Ref, layers: list[Layer]) -> tuple[str, ...]:
        if expander.outputs:
            names = [ref_name(ref, layers) for ref, _ in expander.outputs]
            for index, ((_, span), name) in enumerate(zip(expander.outputs, names)):
                if name == INPUT:
                    message, hint = "the network's input cannot be an output", "name a layer"
                elif name in names[:index]:
                    message, hint = f"'{name}' is already an output", "list each output once"
                else:
                    continue
                self.diagnostics.append(error("invalid-argument", message, span, hint))
            return tuple(dict.fromkeys(n for n in names if n != INPUT))
        name = ref_name(last, layers)
        return () if name == INPUT else (name,)

    def _derived(self, definition: ast.NetworkDef) -> Network | None:
        base = self._base(definition)
        if base is None:
            return None
        body = definition.body
        given = self._input(body)
        rest = body[1:] if body and isinstance(body[0], ast.InputStmt) else body
        if not self.budget.spend(len(base.layers)):  # the copy of the base counts too
            self._too_large(definition, len(base.layers))
            return None
        drops = _Drops(list(base.layers))
        for stmt in rest:
            if isinstance(stmt, ast.DropStmt):
                self._drop(definition, stmt, drops)
        # Frozen-ness belongs to a training recipe, so a derived network starts unfrozen.
        kept = [replace(layer, frozen=False, origin="base") for layer in drops.kept]
        new_body = tuple(
            s for s in rest if isinstance(s, (ast.LayerStmt, ast.RepeatStmt, ast.InputStmt, ast.OutputStmt))
        )
        attach = self._attach_point(definition, base, kept, new_body)
        axes = _axes(given[0], _written(body)) if given else _axes(base.input_shape, "")
        expander, last, raws, new_layers = self._expand_new(definition, kept, new_body, attach, axes)
        layers = self._freeze(rest, kept + new_layers, kept, drops.dropped)
        if drops.failed:
            # The new layers would read what the drop failed to cut off: their shape errors
            # would only repeat it. Their own mistakes are reported; the kept part is checked.
            layers = [layer for layer in layers if layer.origin != "new"]
        shape, span = given if given else (base.input_shape, base.input_span)
        if (expander.outputs or raws) and not drops.failed:
            outputs = self._outputs(expander, last, new_layers)  # indices count the new layers
        else:
            outputs = _kept_outputs(base, kept, attach)
        return Network(
            definition.name,
            definition.span,
            shape,
            span,
            tuple(layers),
            definition.base,
            definition.base_span,
            tuple(drops.dropped),
            outputs,
            {**base.instances, **expander.instance_calls},
        )

    def _too_large(self, definition: ast.NetworkDef, copied: int) -> None:
        if self.budget.spent:
            return
        self.budget.spent = True
        self.diagnostics.append(
            error(
                "too-large",
                f"network '{definition.name}' copies the {copied:,} layers of '{definition.base}', past the "
                f"{MAX_EXPANSION:,} layers and repeats a file and the files it uses expand to in all",
                definition.span,
                "derive fewer networks from a large base, or split them across files",
            )
        )

    def _base(self, definition: ast.NetworkDef) -> Network | None:
        """The network `from BASE` names, resolved (None after an error)."""
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
        return self.network(definition.base, definition.base_span)

    def _drop(self, definition: ast.NetworkDef, stmt: ast.DropStmt, drops: _Drops) -> None:
        """`drop from X` (X and all that reads it) or `drop last N`, applied to `drops`."""
        problem = (
            self._drop_from(definition, stmt, drops)
            if stmt.mode == "from"
            else self._drop_last(definition, stmt, drops)
        )
        if problem is not None:
            self.diagnostics.append(problem)

    def _drop_from(self, definition: ast.NetworkDef, stmt: ast.DropStmt, drops: _Drops) -> Diagnostic | None:
        left = [layer.name for layer in drops.kept]
        if stmt.target in drops.names and stmt.target not in left:  # gone with an earlier drop
            return error(
                "unknown-name",
                f"'{definition.base}' has no layer '{stmt.target}' left to drop",
                stmt.span,
                "an earlier `drop` in this network already removed it",
            )
        if stmt.target not in left and stmt.target not in drops.instances:
            drops.failed = True
            return error(
                "unknown-name",
                f"'{definition.base}' has no layer '{stmt.target}'",
                stmt.span,
                did_you_mean(str(stmt.target), drops.names) or f"its layers: {', '.join(drops.names[:12])}",
            )
        # X and everything that depends on it (a block instance: all its layers).
        roots = {layer.name for layer in drops.kept if stmt.target in (layer.name, layer.block)}
        gone = descendants(drops.kept, roots)
        drops.dropped += [layer.name for layer in drops.kept if layer.name in gone]
        drops.kept = [layer for layer in drops.kept if layer.name not in gone]
        return None

    def _drop_last(self, definition: ast.NetworkDef, stmt: ast.DropStmt, drops: _Drops) -> Diagnostic | None:
        count = int(stmt.target)
        if count < 0:
            drops.failed = True
            return error("invalid-argument", f"drop last takes a count of 0 or more, got {count}", stmt.span)
        if count > len(drops.kept):
            drops.failed = True
            return error(
                "drop-too-many",
                f"cannot drop {count} layers: '{definition.base}' has {len(drops.kept)} left",
                stmt.span,
                f"drop at most {len(drops.kept)}",
            )
        cut = len(drops.kept) - count
        drops.dropped += [layer.name for layer in drops.kept[cut:]]
        drops.kept = drops.kept[:cut]
        return None

    def _expand_new(self, definition: ast.NetworkDef, kept: list[Layer], new_body, attach: str, axes: Axes):
        """The layers a derived network adds, numbered on from its base's names."""
        assert definition.base is not None
        expander = Expander(
            self.blocks,
            self.diagnostics,
            {layer.name: layer.name for layer in kept},
            self.counts.get(definition.base, {}),
            self.budget,
            axes,
        )
        expander.written = aliases(new_body)
        raws: list[Raw] = []
        last = expander.statements(new_body, top_context(), attach, raws)
        counts = dict(self.counts.get(definition.base, {}))  # new layers number on from the base
        new_layers = name_layers(raws, counts, {layer.name for layer in kept}, self.diagnostics)
        self.counts[definition.name] = counts
        return expander, last, raws, [replace(layer, origin="new") for layer in new_layers]

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
        for stmt in body:
            if not isinstance(stmt, ast.FreezeStmt):
                continue
            if stmt.mode == "all":
                frozen |= {layer.name for layer in base_layers}
                continue
            for target in stmt.names:
                frozen |= self._frozen_by(stmt, target, layers, names, dropped)
        if not frozen:
            return layers
        return [replace(layer, frozen=layer.name in frozen) for layer in layers]

    def _frozen_by(
        self, stmt: ast.FreezeStmt, target: str, layers: list[Layer], names: list[str], dropped: list[str]
    ) -> set[str]:
        """The layers `freeze [through] target` freezes (none after an error); `names`: the
        layers' names, in order, computed once by `_freeze`."""
        instances = {layer.block for layer in layers if layer.block}
        if target in dropped and target not in names:
            self.diagnostics.append(
                error(
                    "unknown-name",
                    f"'{target}' is dropped in this network, so there is nothing to freeze",
                    stmt.span,
                    "freeze only what is kept or new: drop it, or freeze it, not both",
                )
            )
            return set()
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
            return set()
        if stmt.mode == "through":
            # X and everything X depends on (a block instance: through its last layer).
            last = max(i for i, layer in enumerate(layers) if target in (layer.name, layer.block))
            return ancestors(layers, [names[last]])
        return {layer.name for layer in layers if target in (layer.name, layer.block)}


def _written(body) -> str:
    """The input line's shape as the user wrote it ('' without one)."""
    return body[0].written if body and isinstance(body[0], ast.InputStmt) else ""


def _axes(shape: tuple[int, ...], written: str) -> Axes:
    """The spatial axes the input gives its layers' sizes; a flat input's are read as an
    image's (its conv is then an error about the flat input, not about the sizes)."""
    if len(shape) < 2:
        return PLANE
    looks_2d = rank_surprise(shape, written) is not None and len(shape) == 2
    return Axes(len(shape) - 1, written or "x".join(map(str, shape)), looks_2d)
