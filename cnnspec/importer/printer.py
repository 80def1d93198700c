"""Layer graph -> .cnn text: the printer `import` writes its spec with.

The graph is a list of layers in a topological order, each naming the layers it reads.
Printing it one line per layer (`--flat`) is always possible: a layer that does not read
the line above says `from NAME`, a join names its inputs. The default output reads like
a person wrote it, in three passes over the graph:

1. Structure: a join whose inputs all run back, through chains of single-reader layers,
   to one tensor becomes a combinator (`residual { ... } shortcut { ... }`,
   `concat {} { ... }`, `multiply { ... }`), innermost first, so combinators nest.
2. Blocks: consecutive statements that came from one module of the source model
   (`layer3.1`, from node and tensor names) and whose structure recurs are written once as
   a `block`, its differing numbers made parameters (`conv 4*width 1x1`); each instance
   becomes one call, named after its module. Without module names, a statement run
   starting at each combinator is the candidate unit. The variant with the fewest lines
   wins, so folding never makes a spec longer.
3. Lines: a batchnorm, activation or dropout joins the line of the layer it follows
   (`conv 64 3x3 pad=1 bias=false as conv1; batchnorm as bn1; relu`).

`print_network` also returns the graph's layers in the order the resolver will expand the
text, which is how the importer knows the name each layer's weights get.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..base.diagnostics import one_line
from ..base.graph import readers
from ..kinds import LayerConfig, Shape, rule_for

INPUT = "input"
MAX_CHAIN = 10  # longer branches are clearer as named joins than as a combinator body
MAX_NESTING = 6  # combinators inside combinators; deeper is named joins (and bounded recursion)
MAX_MODULE_DEPTH = 8  # module-path depths tried as block boundaries
MAX_SKIPPED = 8  # layers a `concat {} { ... }` may skip (DenseNet's six); U-Net's are named joins
MAX_LINE = 100  # joined statements and one-line combinators stay this short
# Per kind: whether a layer of it may be written on the line of the layer it follows
# (`conv 64 3x3; batchnorm; relu`), as people write them.
FOLLOWS_ON_LINE = {
    "conv": False,
    "deconv": False,
    "dense": False,
    "pool": False,
    "globalpool": False,
    "upsample": False,
    "flatten": False,
    "add": False,
    "concat": False,
    "multiply": False,
    "batchnorm": True,
    "layernorm": True,
    "scale": True,
    "prelu": True,
    "activation": True,
    "dropout": True,
    "droppath": True,
    "slice": False,
    "pad": False,
    "shuffle": True,
}
# Integer fields a block may turn into parameters (pairs and pads when equal on every side).
SLOT_FIELDS = ("filters", "units", "kernel", "stride", "pad", "dilation", "groups", "output_pad", "scale")
PARAM_NAMES = {"kernel": "k", "output_pad": "output_pad"}
_SENTINEL_BASE = 7_100_000_000  # a number no layer has, replaced by a parameter after printing
_AUTO_NAME = re.compile(r"([a-z_]+?)(\d+)$")


@dataclass
class GraphLayer:
    """One layer of the graph to print. `name` identifies it (and is its spec name where
    one is needed); `module` is where it came from, e.g. ("layer3", "1", "conv2")."""

    name: str
    config: LayerConfig
    inputs: tuple[str, ...]
    module: tuple[str, ...] = ()
    tensors: dict = field(default_factory=dict, repr=False)  # suffix -> array (printing ignores them)

    @property
    def has_params(self) -> bool:
        return bool(self.tensors)


@dataclass
class Item:
    """A statement: one layer, or a combinator (join + bodies) reading `source`."""

    layer: GraphLayer  # the layer itself, or the combinator's join
    source: str = ""  # what a combinator reads
    kind: str = ""  # "" for a plain layer; residual | add | concat | multiply
    bodies: list[list[Item]] = field(default_factory=list)
    shortcut: list[Item] | None = None
    depth: int = 0  # combinators nested inside it, itself included

    @property
    def exit(self) -> str:
        return self.layer.name

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.source,) if self.kind else self.layer.inputs

    def expansion(self) -> Iterator[GraphLayer]:
        """Layers in the order the resolver creates them: bodies, shortcut, then the join."""
        if not self.kind:
            yield self.layer
            return
        for body in self.bodies:
            for item in body:
                yield from item.expansion()
        for item in self.shortcut or []:
            yield from item.expansion()
        yield self.layer


@dataclass
class Printed:
    text: str
    order: list[GraphLayer]  # every layer, in the resolver's expansion order
    lines: int


# ------------------------------------------------------------------ 1. structure


def recover_structure(layers: list[GraphLayer], outputs: tuple[str, ...]) -> list[Item]:
    """Top-level statements, with every join that can be a combinator turned into one."""
    items: dict[str, Item] = {layer.name: Item(layer) for layer in layers}
    position = {layer.name: i for i, layer in enumerate(layers)}
    uses = readers(layers, outputs)
    # One pass in topological order: a join inside another's branch comes first, so by the
    # time the outer join is reached the inner one is already a single statement.
    for layer in layers:
        item = items.get(layer.name)
        if item is None or not layer.config.joins or len(layer.inputs) < 2:
            continue
        combinator = _combinator(item, items, uses, set(outputs))
        if combinator is None:
            continue
        for body in [*combinator.bodies, combinator.shortcut or []]:
            for inner in body:
                del items[inner.exit]
        items[layer.name] = combinator
        uses[combinator.source] -= len(layer.inputs) - 1
    return sorted(items.values(), key=lambda it: position[it.exit])


def _combinator(join: Item, items: dict[str, Item], uses: Counter, outputs: set[str]) -> Item | None:
    """The join as a combinator over the chains that lead to it from one source (None
    when they do not start at one tensor, or the result would not read well)."""
    chains, sources = _chains_into(join, items, uses, outputs)
    if len(sources) != 1 or any(len(chain) > MAX_CHAIN for chain in chains):
        return None
    depth = 1 + max((item.depth for chain in chains for item in chain), default=0)
    if depth > MAX_NESTING or _long_skip(join, chains):
        return None
    exits = [item.exit for chain in chains for item in chain]
    if len(exits) != len(set(exits)):
        return None
    (source,) = sources
    return _as_combinator(join, source, chains, depth)


def _as_combinator(join: Item, source: str, chains: list[list[Item]], depth: int) -> Item | None:
    """add of two chains: `residual { body } [shortcut { ... }]`; multiply: a gate."""
    kind = join.layer.config.kind
    if kind == "add" and len(chains) == 2:
        body, shortcut = sorted(chains, key=len, reverse=True)
        return Item(join.layer, source, "residual", [body], shortcut or None, depth)
    if kind == "multiply":
        if len(chains) != 2 or sum(1 for chain in chains if not chain) != 1:
            return None
        gate = next(chain for chain in chains if chain)
        return Item(join.layer, source, "multiply", [gate], None, depth)
    return Item(join.layer, source, kind, chains, None, depth)


def _chains_into(join: Item, items: dict[str, Item], uses: Counter, outputs: set[str]):
    """Per input of the join, the chain of single-use layers leading to it, and the tensors
    those chains start from."""
    chains: list[list[Item]] = []
    sources = set()
    for tensor in join.layer.inputs:
        chain: list[Item] = []
        while True:
            producer = items.get(tensor)
            if producer is None or len(producer.reads) != 1 or uses[tensor] != 1 or tensor in outputs:
                break
            chain.insert(0, producer)
            tensor = producer.reads[0]
        sources.add(tensor)
        chains.append(chain)
    return chains, sources


def _long_skip(join: Item, chains: list[list[Item]]) -> bool:
    """A skip connection (`concat {} { ... }`) around a long or nested body, as in U-Net,
    reads better as a named join: the body stays at the top level."""
    if join.layer.config.kind != "concat" or all(chains):
        return False
    skipped = [layer for chain in chains for item in chain for layer in item.expansion()]
    return len(skipped) > MAX_SKIPPED or any(item.kind for chain in chains for item in chain)


# ------------------------------------------------------------------ 2. blocks


@dataclass
class _Param:
    name: str
    values: tuple[int, ...]  # one per instance
    measure: str = ""  # what it counts (SLOT_MEASURES): only a slot of the same reuses it


# A parameter stands for one measure: `groups=filters` reads well; `pad=stride`, the same
# numbers by coincidence, does not.
SLOT_MEASURES = {"filters": "channels", "units": "channels", "groups": "channels"}


@dataclass
class _Family:
    """A block: its instances (runs of statements) and the numbers that differ between them."""

    name: str
    instances: list[list[Item]]
    prefixes: list[tuple[str, ...]]  # module path of each instance (empty: anonymous)
    params: list[_Param] = field(default_factory=list)
    slots: dict[tuple[int, str], str] = field(default_factory=dict)  # (layer index, field) -> expression


@dataclass
class _Call:
    """One instance of a family where the statements stood."""

    family: _Family
    index: int

    @property
    def run(self) -> list[Item]:
        return self.family.instances[self.index]

    @property
    def args(self) -> tuple[int, ...]:
        return tuple(p.values[self.index] for p in self.family.params)


Entry = Item | _Call


def _slot_value(config: LayerConfig, name: str) -> int | None:
    """The one integer a field holds (a pair or pads equal on every side), else None."""
    value = getattr(config, name, None)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value) and len(set(value)) == 1:
        return value[0]
    return None


def _relative(layer: GraphLayer, prefix: tuple[str, ...]) -> str | None:
    """A layer's name inside its block instance: `layer3.1.conv2` in `layer3.1` -> `conv2`."""
    if prefix and layer.module[: len(prefix)] == prefix and len(layer.module) > len(prefix):
        return spec_name(layer.module[len(prefix) :]) or None
    return None


def _key(run: list[Item], prefix: tuple[str, ...]) -> tuple:
    """What the instances of one block share: everything but the numbers that become parameters."""
    parts: list = []
    for item in run:
        parts.append((item.kind, len(item.bodies), item.shortcut is not None, _shape_of(item)))
        for layer in item.expansion():
            fields = tuple(
                (
                    f.name,
                    "#" if f.name in SLOT_FIELDS and _slot_value(layer.config, f.name) is not None else value,
                )
                for f in dataclasses.fields(layer.config)
                for value in [getattr(layer.config, f.name)]
            )
            parts.append((layer.config.kind, fields, _relative(layer, prefix) if layer.has_params else None))
    return tuple(parts)


def _shape_of(item: Item) -> tuple:
    if not item.kind:
        return ()
    return tuple(tuple(_shape_of(i) for i in body) for body in [*item.bodies, item.shortcut or []])


def _make_family(name: str, runs: list[list[Item]], prefixes: list[tuple[str, ...]]) -> _Family:
    family = _Family(name, runs, prefixes)
    per_instance = [[layer for item in run for layer in item.expansion()] for run in runs]
    counts: Counter = Counter()
    for index, layer in enumerate(per_instance[0]):
        for f in SLOT_FIELDS:
            if _slot_value(layer.config, f) is None:
                continue
            values = tuple(_slot_value(instance[index].config, f) or 0 for instance in per_instance)
            if len(set(values)) == 1:
                continue  # the same everywhere: written as a number
            measure = SLOT_MEASURES.get(f, f)
            known = _known_param(family.params, values, measure)
            if known:
                family.slots[(index, f)] = known
                continue
            base = PARAM_NAMES.get(f, f)
            counts[base] += 1
            param = _Param(base if counts[base] == 1 else f"{base}{counts[base]}", values, measure)
            family.params.append(param)
            family.slots[(index, f)] = param.name
    return family


def _known_param(params: list[_Param], values: tuple[int, ...], measure: str) -> str | None:
    """An existing parameter of the same measure that gives `values`: itself, or a whole
    multiple of a channel count (`4*filters`); None when there is none."""
    same = next((p for p in params if p.values == values and p.measure == measure), None)
    if same:
        return same.name
    for p in params:
        if p.measure == measure == "channels" and p.values[0] > 0 and values[0] % p.values[0] == 0:
            times = values[0] // p.values[0]
            if all(v == w * times for v, w in zip(values, p.values)):
                return f"{times}*{p.name}"
    return None


def _item_prefix(item: Item) -> tuple[str, ...]:
    """The module path every layer of a statement shares."""
    modules = [layer.module for layer in item.expansion() if layer.module]
    if not modules:
        return ()
    common = modules[0]
    for module in modules[1:]:
        n = 0
        while n < min(len(common), len(module)) and common[n] == module[n]:
            n += 1
        common = common[:n]
    return common


Run = tuple[tuple[str, ...], list[Item]]  # (module path, or ("#",) for a combinator; its items)


def fold_blocks(items: list[Item], by_name: set[str], depth: int | None) -> list[Entry]:
    """Statements with recurring runs replaced by block calls. `depth`: the module-path
    depth whose modules are the instances; None: a run starts at each combinator."""
    runs = _runs(items, depth)
    groups: dict[tuple, list[Run]] = {}
    for prefix, run in runs:
        module = () if prefix == ("#",) else prefix
        if prefix and (len(run) > 1 or run[0].kind) and _is_chain(run, by_name, named=bool(module)):
            groups.setdefault(_key(run, module), []).append((module, run))
    calls = _calls(groups)
    out: list[Entry] = []
    for _, run in runs:
        call = calls.get(id(run[0]))
        out.extend([call] if call else run)
    return out


SPLIT_CHAINS = -1  # a `depth` for graphs without module names: see _runs


def _runs(items: list[Item], depth: int | None) -> list[Run]:
    """Consecutive items of one module (at `depth`), or from one combinator to the next;
    with SPLIT_CHAINS, the chain after a combinator is a run of its own (MobileNetV3's
    blocks without a residual, between those with one)."""
    runs: list[Run] = []
    for item in items:
        if depth is None or depth == SPLIT_CHAINS:
            after_combinator = bool(runs) and bool(runs[-1][1][-1].kind)
            if item.kind or (depth == SPLIT_CHAINS and (not runs or after_combinator)):
                runs.append((("#",), [item]))
            elif not runs or not runs[-1][0]:
                runs.append(((), [item]))
            else:
                runs[-1][1].append(item)
            continue
        prefix = _item_prefix(item)
        key = prefix[:depth] if len(prefix) >= depth else ()
        if key and runs and runs[-1][0] == key:
            runs[-1][1].append(item)
        else:
            runs.append((key, [item]))
    return runs


def _calls(groups: dict[tuple, list[Run]]) -> dict[int, _Call]:
    """A block family for each group of equal runs that recurs; the call of each run, by
    the id of its first item."""
    calls: dict[int, _Call] = {}
    stems: Counter = Counter()
    for members in groups.values():
        if len(members) < 2:
            continue
        stem = _block_stem(members[0][0])
        stems[stem] += 1
        family = _make_family(
            f"{stem}_block" + (str(stems[stem]) if stems[stem] > 1 else ""),
            [run for _, run in members],
            [prefix for prefix, _ in members],
        )
        for i, (_, run) in enumerate(members):
            calls[id(run[0])] = _Call(family, i)
    return calls


def _is_chain(run: list[Item], by_name: set[str], named: bool) -> bool:
    """One instance: each statement reads the one before; only the last is read by name
    (and only when the instance has a name to be read by)."""
    if any(item.exit in by_name for item in run[:-1]) or (not named and run[-1].exit in by_name):
        return False
    return all(len(item.reads) == 1 for item in run) and all(
        item.reads == (before.exit,) for before, item in zip(run, run[1:])
    )


def _block_stem(prefix: tuple[str, ...]) -> str:
    stem = spec_name(tuple(re.sub(r"\d+", "", part) for part in prefix))
    return stem or "unit"


# ------------------------------------------------------------------ names


MAX_COMMENT_TEXT = 200  # characters of one model-given string in a comment


def comment_text(text: str) -> str:
    """Text from a model file (its producer, a file name) as data inside a `#` comment:
    on one line (a line break would start a statement the model never held), control
    characters escaped, cut to a sensible length."""
    return one_line(text, MAX_COMMENT_TEXT)


def spec_name(parts: tuple[str, ...]) -> str:
    """`layer3.1.conv2` -> `layer3_1_conv2`: a valid .cnn name ('' when nothing is left)."""
    text = re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(parts))
    text = re.sub(r"_+", "_", text).strip("_")
    if text and text[0].isdigit():
        text = f"m{text}"
    return text


# ------------------------------------------------------------------ 3. lines


class _Writer:
    """Writes statements; `aliases` are the `as` names, `rename` the instance names that
    stand for the last layer of an instance."""

    def __init__(self, aliases: dict[str, str], rename: dict[str, str], flat: bool):
        self.aliases = aliases
        self.rename = rename
        self.flat = flat

    def ref(self, name: str) -> str:
        return "in" if name == INPUT else self.rename.get(name, name)

    def lines(self, entries: list[Entry], previous: str, indent: str) -> list[str]:
        """The lines of a body whose line above is `previous` (a layer name or INPUT)."""
        lines: list[str] = []
        joinable = False
        i = 0
        while i < len(entries):
            entry = entries[i]
            if isinstance(entry, _Call):
                same = 1
                if not entry.family.prefixes[entry.index]:  # anonymous: `repeat N { call }`
                    while (
                        i + same < len(entries)
                        and isinstance(nxt := entries[i + same], _Call)
                        and nxt.family is entry.family
                        and nxt.args == entry.args
                        and nxt.run[0].reads == (entries[i + same - 1].run[-1].exit,)  # type: ignore[union-attr]
                    ):
                        same += 1
                lines.append(indent + self.call_text(entry, previous, same))
                previous = entries[i + same - 1].run[-1].exit  # type: ignore[union-attr]
                i += same
                joinable = False
                continue
            text = self.item_text(entry, previous, indent)
            follower = (
                not self.flat
                and not entry.kind
                and rule_for(FOLLOWS_ON_LINE, entry.layer.config.kind, "the printer")
                and entry.reads == (previous,)
            )
            if follower and joinable and len(lines[-1]) + len(text) - len(indent) + 2 <= MAX_LINE:
                lines[-1] += "; " + text.strip()
            else:
                lines.append(text)
                joinable = not entry.kind and not entry.layer.config.joins
            previous = entry.exit
            i += 1
        return lines

    def call_text(self, call: _Call, previous: str, times: int) -> str:
        text = " ".join([call.family.name, *map(str, call.args)])
        source = call.run[0].reads[0]
        if source != previous:
            text += f" from {self.ref(source)}"
        instance = spec_name(call.family.prefixes[call.index])
        if instance:
            text += f" as {instance}"
        return f"repeat {times} {{ {text} }}" if times > 1 else text

    def item_text(self, item: Item, previous: str, indent: str) -> str:
        alias = self.aliases.get(item.exit)
        tail = f" as {alias}" if alias else ""
        if item.kind:
            if item.source != previous:
                tail = f" from {self.ref(item.source)}" + tail
            inner = indent + "  "
            bodies = [self.lines(list(body), item.source, inner) for body in item.bodies]
            shortcut = (
                self.lines(list(item.shortcut), item.source, inner) if item.shortcut is not None else None
            )
            return indent + _combinator_text(item.kind, bodies, shortcut, indent) + tail
        layer = item.layer
        if layer.config.joins:
            return f"{indent}{layer.config.kind} " + " ".join(self.ref(n) for n in layer.inputs) + tail
        if layer.inputs[0] != previous:
            tail = f" from {self.ref(layer.inputs[0])}" + tail
        return indent + layer.config.short() + tail


def _combinator_text(kind: str, bodies: list[list[str]], shortcut: list[str] | None, indent: str) -> str:
    def one_line(lines: list[str]) -> str:
        return "{ " + "; ".join(line.strip() for line in lines) + " }" if lines else "{}"

    def block(lines: list[str]) -> str:
        return "{\n" + "\n".join(lines) + f"\n{indent}}}" if lines else "{}"

    pieces = [*bodies, *([shortcut] if shortcut is not None else [])]
    if all("\n" not in line for lines in pieces for line in lines):
        words = [kind, *map(one_line, bodies)] + (
            ["shortcut", one_line(shortcut)] if shortcut is not None else []
        )
        if len(indent) + len(" ".join(words)) <= MAX_LINE:
            return " ".join(words)
    words = [kind, *map(block, bodies)] + (["shortcut", block(shortcut)] if shortcut is not None else [])
    return " ".join(words)


def _block_definition(family: _Family) -> list[str]:
    """`block NAME(params) { ... }` written from the first instance, parameters in place."""
    run, prefix = family.instances[0], family.prefixes[0]
    sentinels: dict[int, str] = {}
    counter = [0]
    copies = [_with_sentinels(item, family, sentinels, counter) for item in run]
    aliases = {
        layer.name: inner
        for item in run
        for layer in item.expansion()
        if layer.has_params and (inner := _relative(layer, prefix))
    }
    text = "\n".join(_Writer(aliases, {}, flat=False).lines(list(copies), run[0].reads[0], "  "))
    for value, expression in sentinels.items():
        text = text.replace(f"{value}x{value}", expression).replace(str(value), expression)
    params = ", ".join(p.name for p in family.params)
    return [f"block {family.name}({params}) {{", *text.split("\n"), "}"]


def _with_sentinels(item: Item, family: _Family, sentinels: dict[int, str], counter: list[int]) -> Item:
    """A copy of `item` whose parameter fields hold numbers no layer has (replaced by the
    parameter's name once printed)."""

    def copy(layer: GraphLayer) -> GraphLayer:
        index = counter[0]
        counter[0] += 1
        changes = {}
        for f in SLOT_FIELDS:
            expression = family.slots.get((index, f))
            if expression is not None:
                value = _SENTINEL_BASE + len(sentinels)
                sentinels[value] = expression
                current = getattr(layer.config, f)
                changes[f] = (value,) * len(current) if isinstance(current, tuple) else value
        return (
            dataclasses.replace(layer, config=dataclasses.replace(layer.config, **changes))
            if changes
            else layer
        )

    if not item.kind:
        return Item(copy(item.layer))
    bodies = [[_with_sentinels(i, family, sentinels, counter) for i in body] for body in item.bodies]
    shortcut = (
        [_with_sentinels(i, family, sentinels, counter) for i in item.shortcut]
        if item.shortcut is not None
        else None
    )
    return Item(copy(item.layer), item.source, item.kind, bodies, shortcut, item.depth)


# ------------------------------------------------------------------ the whole network


def print_network(
    name: str,
    input_shape: Shape,
    layers: list[GraphLayer],
    outputs: tuple[str, ...],
    flat: bool = False,
    header: str = "",
) -> Printed:
    """The spec text of a graph: the shortest of the block foldings tried (or one line per
    layer with `flat`), and its layers in the resolver's expansion order."""
    items = [Item(layer) for layer in layers] if flat else recover_structure(layers, outputs)
    by_name = _read_by_name(items, outputs)
    if flat:
        variants: list[list[Entry]] = [list(items)]
    else:
        depths = min(max((len(layer.module) for layer in layers), default=0), MAX_MODULE_DEPTH)
        variants = [list(items), fold_blocks(items, by_name, None), fold_blocks(items, by_name, SPLIT_CHAINS)]
        variants += [fold_blocks(items, by_name, d) for d in range(1, depths)]
    printed = [_print(name, input_shape, entries, outputs, by_name, flat, header) for entries in variants]
    fewest = min(p.lines for p in printed)
    # Deeper modules give the names a person knows (`layer3_1_conv2`): take the deepest
    # folding that is nearly as short as the shortest (a few lines more; a quarter more
    # made MobileNetV3 fold its squeeze-excite gates and leave its repeated blocks unfolded).
    return [p for p in printed if p.lines <= fewest + max(4, fewest // 10)][-1]


def _read_by_name(items: list[Item], outputs: tuple[str, ...]) -> set[str]:
    """Layers something reads by name: a `from`, a named join, `output`."""
    names: set[str] = set()
    previous = INPUT
    for item in items:
        if not item.kind and item.layer.config.joins:
            names.update(item.layer.inputs)
        elif item.reads[0] != previous:
            names.add(item.reads[0])
        previous = item.exit
    if outputs != (previous,):
        names.update(outputs)
    names.discard(INPUT)
    return names


def _print(
    name: str,
    input_shape: Shape,
    entries: list[Entry],
    outputs: tuple[str, ...],
    by_name: set[str],
    flat: bool,
    header: str,
) -> Printed:
    families, rename, order = _families_and_order(entries)
    in_blocks = {
        id(layer) for f in families for run in f.instances for item in run for layer in item.expansion()
    }
    aliases = {
        layer.name: layer.name
        for layer in order
        if id(layer) not in in_blocks and (layer.name in by_name or (layer.has_params and layer.module))
    }
    aliases = _avoid_automatic_names(order, aliases, by_name)
    rename = {k: aliases.get(k, v) for k, v in rename.items()}
    lines = [header] if header else []
    for family in families:
        lines += _block_definition(family) + [""]
    body = _Writer(aliases, rename, flat).lines(entries, INPUT, "  ")
    lines += [f"network {name} {{", f"  input {'x'.join(map(str, input_shape))}", *body]
    last = entries[-1].run[-1].exit if isinstance(entries[-1], _Call) else entries[-1].exit
    if outputs != (last,):
        lines.append("  output " + " ".join(rename.get(o, aliases.get(o, o)) for o in outputs))
    lines.append("}")
    text = "\n".join(wrapped for line in lines for wrapped in _wrap(line)) + "\n"
    return Printed(text, order, text.count("\n"))


MAX_PRINTED_LINE = 1000  # a statement longer than this continues on the next line (`\`)


def _wrap(line: str) -> list[str]:
    r"""A very long statement (a concat of thousands of layers) as lines ending in `\`, each
    well below the parser's line limit; comments and shorter lines stay as they are."""
    if len(line) <= MAX_PRINTED_LINE or "#" in line:
        return [line]
    indent = line[: len(line) - len(line.lstrip())] + "    "
    pieces, current = [], line[: len(line) - len(line.lstrip())]
    for word in line.split():
        if len(current) + len(word) + 1 > MAX_LINE and current.strip():
            pieces.append(current + " \\")
            current = indent
        current += word if current.isspace() or not current else " " + word
    return [*pieces, current]


def _families_and_order(entries: list[Entry]) -> tuple[list[_Family], dict[str, str], list[GraphLayer]]:
    """The block families called (in order of first use), the instance names their calls
    give the tensors they end in, and every layer in the resolver's expansion order."""
    families: list[_Family] = []
    rename: dict[str, str] = {}
    order: list[GraphLayer] = []
    for entry in entries:
        if isinstance(entry, _Call):
            if entry.family not in families:
                families.append(entry.family)
            instance = spec_name(entry.family.prefixes[entry.index])
            if instance:
                rename[entry.run[-1].exit] = instance
            order.extend(layer for item in entry.run for layer in item.expansion())
        else:
            order.extend(entry.expansion())
    return families, rename, order


def _avoid_automatic_names(
    order: list[GraphLayer], aliases: dict[str, str], by_name: set[str]
) -> dict[str, str]:
    """An `as` name equal to the automatic name of another layer (`conv3` is the third conv)
    would collide: such names get a suffix. One equal to the layer's own is left out."""
    counts: Counter = Counter()
    automatic = set()
    for layer in order:
        prefix = type(layer.config).name_prefix(layer.config)
        counts[prefix] += 1
        if aliases.get(layer.name) == f"{prefix}{counts[prefix]}" and layer.name not in by_name:
            del aliases[layer.name]  # the name it gets anyway: `as` would only repeat it
        if layer.name not in aliases:
            automatic.add(f"{prefix}{counts[prefix]}")
    fixed = {}
    taken = set(aliases.values())
    for key, alias in aliases.items():
        while alias in automatic:
            alias += "_"
            while alias in taken:
                alias += "_"
        fixed[key] = alias
    return fixed
