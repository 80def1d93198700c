"""Checked networks -> what people read (a table that fits the terminal, or widens to its
longest cell when printed to a file or a pipe) and what programs read (JSON).

Hand-written rather than rich: `cnnspec check` must start in well under 0.2 s, and a
fixed-width table is twenty lines of code.
"""

from __future__ import annotations

import dataclasses

from ..base.diagnostics import printable, render
from ..base.records import record
from ..cost import FRAMEWORK_SHARE, TrainingMemory, fitting, inference_peak, training_memory
from ..cost.latency import Latency, Profile, predict
from ..infer import CheckedNetwork, CheckResult
from ..kinds import format_shape, size_text


@record
class Costing:
    """What `check` adds on request: memory to train at `batch` with `optimizer` (None:
    not asked), under autocast (`amp`), and the largest batch that fits `fit` bytes."""

    batch: int = 1
    optimizer: str | None = None
    amp: bool = False
    fit: int | None = None
    device: Profile | None = None  # --latency: the device profile

    def memory(self, net: CheckedNetwork) -> TrainingMemory | None:
        if self.optimizer is None or not net.complete:
            return None
        return training_memory(net, self.batch, self.optimizer, self.amp)

    def latency(self, net: CheckedNetwork) -> Latency | None:
        if self.device is None or not net.complete:
            return None
        return predict(net, self.device, self.batch)


@record
class Layout:
    """How the table is laid out. `width`: the terminal's columns (None when the output is
    a file or a pipe: then the spec column is as wide as its longest text); `depth`: block
    instances nested deeper fold into one row each, as torchinfo's depth (None: every
    layer); `columns`: optional columns after the output shape (`cli/check.py` lists them:
    input, kernel, params%, jump)."""

    width: int | None = None
    depth: int | None = None
    columns: tuple[str, ...] = ()


def si(n: float) -> str:
    """117600 -> 117.6K, 15470264320 -> 15.47G (three or four significant digits)."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.4g}{suffix}"
    return str(int(n))


def nbytes(n: int) -> str:
    for factor, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.1f} {suffix}"
    return f"{n} B"


class _Style:
    def __init__(self, color: bool):
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color and text else text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


COLUMNS = [
    ("layer", 11, "<"),
    ("spec", 22, "<"),
    ("output", 10, ">"),
    ("params", 11, ">"),
    ("MACs", 8, ">"),
    ("RF", 5, ">"),
    ("train", 5, ">"),
]


def render_network(
    net: CheckedNetwork,
    color: bool = False,
    dense_equivalent: bool = False,
    costing: Costing | None = None,
    layout: Layout | None = None,
    sources: dict[str, str] | None = None,
) -> str:
    style = _Style(color)
    layout = layout or Layout()
    memory = (costing or Costing()).memory(net)
    latency = (costing or Costing()).latency(net)
    rows = _rows(net, dense_equivalent, memory, latency, layout)
    titles = _titles(layout, dense_equivalent, memory, latency)
    if layout.depth is not None:
        folded: list[tuple[int, list]] = []
        rows = _folded(net, rows, layout, sources or {}, folded)
        _instance_costs(rows, folded, [t for t, _, _ in titles], memory, latency)
    columns = _fitted(titles, rows, layout.width)
    width = sum(w for _, w, _ in columns) + len(columns) - 1

    def row(cells) -> str:
        return " ".join(f"{_clip(c, w):{a}{w}}" for c, (_, w, a) in zip(cells, columns)).rstrip()

    title = f"network {net.name}"
    if net.base:
        title += f" from {net.base}"
    lines = [
        style(title, "1") + f"  ({printable(net.path)}:{net.line})  input {format_shape(net.input_shape)}",
        style(row([c for c, _, _ in columns]), "1"),
        "─" * width,
    ]
    for group_name, cells, frozen in rows:
        if cells is None:
            lines.append(style(f"{group_name}:", "36"))
            continue
        text = row(cells)
        lines.append(style(text, "2") if frozen else text)
    lines.append("─" * width)
    if not net.complete:
        lines.append(style("(stopped at a shape error: the totals cover the layers above)", "33"))
    lines += _totals(net)
    if memory is not None and costing is not None:
        lines += _training(memory, costing)
    if latency is not None:
        lines += _latency(latency)
    lines += _notes(net)
    if dense_equivalent:
        lines += _dense_equivalent(net)
    return "\n".join(lines)


def _titles(layout: Layout, dense_equivalent: bool, memory, latency) -> list[tuple[str, int, str]]:
    """(title, least width, alignment) of every column shown, in order."""
    chosen = [(title, len(title), ">") for title in layout.columns]
    extra = [("as dense", 12, ">")] if dense_equivalent else []
    extra += [("kept/img", 9, ">")] if memory else []
    extra += [("time", 9, ">"), ("bound", 7, "<")] if latency else []
    return COLUMNS[:3] + chosen + COLUMNS[3:] + extra


def _training(memory: TrainingMemory, costing: Costing) -> list[str]:
    precision = "autocast: activations in half precision" if memory.amp else "fp32"
    copies = {0: "none", 1: "1 per weight", 2: "2 per weight"}[
        memory.optimizer_state // max(memory.gradients, 1)
    ]
    lines = [
        f"training ({memory.optimizer}, {precision}, batch {memory.batch}): "
        f"weights {nbytes(memory.weights)} · gradients {nbytes(memory.gradients)} · "
        f"optimizer state {nbytes(memory.optimizer_state)} ({copies})"
        + (f" · half-precision weight copies {nbytes(memory.cast_weights)}" if memory.cast_weights else ""),
        f"  activations kept for backward {nbytes(memory.saved)} ({nbytes(memory.saved_per_image)} per image)"
        f" · total {nbytes(memory.total)}; not counted: workspace, the allocator's slack, the CUDA context",
    ]
    if costing.fit is not None:
        lines.append(_fit_line(memory, costing.fit))
    return lines


def _fit_line(memory: TrainingMemory, budget: int) -> str:
    batch, reserved = fitting(memory, budget)
    usable = budget - reserved
    kept = f"keeping {nbytes(reserved)} ({FRAMEWORK_SHARE:.0%}) for the framework's context, workspace and fragmentation"
    if batch:
        return f"  fits {nbytes(budget)}: batch {batch:,} at most, {kept}"
    if memory.static >= usable:
        return (
            f"  does not fit {nbytes(budget)} even at batch 1: the weights, gradients and optimizer state "
            f"alone take {nbytes(memory.static)}, {kept}"
        )
    return (
        f"  does not fit {nbytes(budget)} even at batch 1: one image's activations need "
        f"{nbytes(memory.saved_per_image)} beside {nbytes(memory.static)} of weights and state, {kept}"
    )


Row = tuple[str | None, list[str] | None, bool]  # (block, cells or None for a title, frozen)


def _rows(
    net: CheckedNetwork,
    dense_equivalent: bool,
    memory: TrainingMemory | None,
    latency: Latency | None,
    layout: Layout,
) -> list[Row]:
    """(block, cells or None for the block's title, frozen) per row."""
    kept = {row.name: row.saved_per_image for row in memory.layers} if memory else {}
    times = {row.name: row for row in latency.layers} if latency else {}
    rows: list[Row] = []
    previous, group = "input", None
    untrusted = tainted(net)
    for entry in net.layers:
        if entry.layer.block != group:  # a block instance's layers under its name
            group = entry.layer.block
            if group is not None:
                rows.append((group, None, False))
        cells = _cells(entry, previous, group is not None, dense_equivalent)
        cells[3:3] = [_optional(entry, title, net.total_params) for title in layout.columns]
        if entry.name in untrusted:  # after a shape error: no figure to trust
            at = 3 + len(layout.columns)
            cells[at : at + 4] = ["-", "-", "-", ""]
        if memory:
            cells.append(nbytes(kept[entry.name]) if kept[entry.name] else "0")
        if latency:
            cells += _time_cells(times[entry.name], latency)
        rows.append((group, cells, entry.layer.frozen))
        previous = entry.name
    return rows


def _time_cells(row, latency: Latency) -> list[str]:
    if row.seconds:
        return [_seconds(row.seconds), row.bound(latency.profile)]
    return ["fused" if row.group != row.name else "", ""]


def _seconds(value: float) -> str:
    return f"{value * 1e3:.2f} ms" if value >= 1e-3 else f"{value * 1e6:.0f} µs"


def _latency(latency: Latency) -> list[str]:
    profile = latency.profile
    kind = "calibrated on this machine" if profile.calibrated else "roofline estimate, not calibrated"
    memory_bound = sum(row.seconds for row in latency.layers if row.bound(profile) == "memory")
    return [
        f"latency on {profile.name} ({profile.description}; {kind}), batch {latency.batch}: "
        f"{_seconds(latency.total)} predicted, {memory_bound / max(latency.total, 1e-12):.0%} of it in "
        f"memory-bound kernels (ridge point {profile.ridge:.1f} FLOPs per byte)"
    ]


def _fitted(
    columns: list[tuple[str, int, str]], rows: list, terminal: int | None
) -> list[tuple[str, int, str]]:
    """Columns as wide as their longest cell: a name, a shape or a number is never cut. The
    spec text takes what the terminal leaves (at least its usual 22 characters, cut with
    … beyond), or its longest text when the output is not a terminal."""
    fitted = []
    for index, (title, width, align) in enumerate(columns):
        longest = max([width, *(len(cells[index]) for _, cells, _ in rows if cells is not None)])
        fitted.append((title, longest if title != "spec" or terminal is None else width, align))
    if terminal is not None:
        spec = next(i for i, (title, _, _) in enumerate(fitted) if title == "spec")
        others = sum(w for i, (_, w, _) in enumerate(fitted) if i != spec) + len(fitted) - 1
        longest = max([0, *(len(cells[spec]) for _, cells, _ in rows if cells is not None)])
        title, width, align = fitted[spec]
        fitted[spec] = (title, max(width, min(longest, terminal - others)), align)
    return fitted


def _optional(entry, title: str, total: int) -> str:
    """The cell of an optional column (OPTIONAL_COLUMNS)."""
    if title == "input":
        return format_shape(entry.input_shape)
    if title == "kernel":
        weight = entry.tensors.get("weight")
        return format_shape(weight) if weight and entry.kind in ("conv", "deconv", "dense") else ""
    if title == "params%":
        return _share(entry.params, total)
    return size_text(entry.jump) if entry.jump else ""


def _share(params: int, total: int) -> str:
    if not params or not total:
        return ""
    return "<0.1%" if params / total < 0.001 else f"{params / total:.1%}"


def _folded(
    net: CheckedNetwork, rows: list[Row], layout: Layout, sources: dict[str, str], folded: list
) -> list[Row]:
    """Every block instance nested `depth` deep or more as one row: its call, the output of
    its last layer, the sum of its parameters and MACs, its last receptive field. `folded`
    gets (row index, the instance's layers) of each such row."""
    out: list[Row] = []
    cells_of = [cells for _, cells, _ in rows if cells is not None]
    depth = layout.depth or 1
    key_of = [entry.layer.calls[:depth] if len(entry.layer.calls) >= depth else None for entry in net.layers]
    index, group = 0, None
    while index < len(net.layers):
        key, end = key_of[index], index + 1
        block = net.layers[index].layer.block
        if block != group and depth > 1:  # the title of an instance shown layer by layer
            group = block
            if block is not None:
                out.append((block, None, False))
        if key is None:
            out.append((block, cells_of[index], net.layers[index].layer.frozen))
            index += 1
            continue
        while end < len(net.layers) and key_of[end] == key:
            end += 1
        instance = net.layers[index:end]
        folded.append((len(out), instance))
        out.append(
            _instance_row(
                instance, cells_of[index:end], key[-1], layout, sources, net.total_params, net.instances
            )
        )
        index = end
    return out


def _instance_costs(rows: list[Row], folded: list, titles: list[str], memory, latency) -> None:
    """A folded instance's memory kept for backward and time: the sums of its layers'."""
    kept = {row.name: row.saved_per_image for row in memory.layers} if memory else {}
    times = {row.name: row.seconds for row in latency.layers} if latency else {}
    for index, entries in folded:
        cells = rows[index][1]
        assert cells is not None
        if memory:
            total = sum(kept[e.name] for e in entries)
            cells[titles.index("kept/img")] = nbytes(total) if total else "0"
        if latency:
            cells[titles.index("time")] = _seconds(sum(times[e.name] for e in entries))


def _instance_row(
    entries, cells: list[list[str]], call, layout: Layout, sources: dict[str, str], total: int, net_calls
) -> Row:
    """One row for a block instance (see _folded). The columns after the standard ones (time,
    memory kept, ...) stay empty rather than show its last layer's."""
    first, last = entries[0], cells[-1]
    optional = len(layout.columns)
    name = first.layer.block if layout.depth == 1 and first.layer.block else f"  {first.name.strip()}…"
    trains = [e for e in entries if e.params]
    macs, params = sum(e.macs for e in entries), sum(e.params for e in entries)
    written = net_calls.get(first.layer.block or "") if layout.depth == 1 else None
    row = [name, written or _call_text(call, sources) or last[1], last[2]]
    for title, cell in zip(layout.columns, last[3 : 3 + optional]):
        if title == "input":
            cell = format_shape(first.input_shape)
        elif title == "kernel":
            cell = ""
        elif title == "params%":
            cell = _share(params, total)
        row.append(cell)
    row += [f"{params:,}", si(macs) if macs else "0", last[5 + optional]]
    row.append("" if not trains else ("no" if all(e.layer.frozen for e in trains) else "yes"))
    row += [""] * (len(last) - len(row))
    return (None, row, all(e.layer.frozen for e in entries))


def _call_text(call, sources: dict[str, str]) -> str:
    """`basic_down 128` from the line that called the block (its `as NAME` left out)."""
    lines = sources.get(call.path, "").splitlines()
    if not 0 < call.line <= len(lines):
        return ""
    text = lines[call.line - 1][call.column - 1 :]
    text = text.split(";")[0].split("#")[0].strip()
    return text.split(" as ")[0].strip()


def _cells(entry, previous: str, in_block: bool, dense_equivalent: bool) -> list[str]:
    """One layer's row."""
    spec = entry.layer.spec_text()
    if entry.inputs != (previous,):  # reads something other than the row above
        spec = f"{spec} ← {', '.join(entry.inputs)}"
    rf = entry.receptive_field
    rf_text = "" if rf is None else size_text(rf)
    train = "" if not entry.params else ("no" if entry.layer.frozen else "yes")
    cells = [
        f"  {entry.name}" if in_block else entry.name,  # rows of a block instance
        spec,
        format_shape(entry.output_shape),
        f"{entry.params:,}",
        si(entry.macs) if entry.macs else "0",
        rf_text,
        train,
    ]
    if dense_equivalent:
        equivalent = entry.dense_equivalent_params
        cells.append(f"{equivalent:,}" if equivalent is not None else "")
    return cells


def tainted(net: CheckedNetwork) -> set[str]:
    """Layers with a shape error of their own that still gave an output, and every layer
    that reads one of them: their rows show `-`, the totals leave them out."""
    found: set[str] = set()
    for entry in net.layers:
        if entry.erroneous or any(name in found for name in entry.inputs):
            found.add(entry.name)
    return found


def _totals(net: CheckedNetwork) -> list[str]:
    untrusted = tainted(net)
    if untrusted:
        first = next(entry.name for entry in net.layers if entry.name in untrusted)
        kept = tuple(entry for entry in net.layers if entry.name not in untrusted)
        count = f"{len(untrusted)} layers follow" if len(untrusted) != 1 else "1 layer follows"
        note = f"(from {first} on, {count} a shape error: "
        note += "shown as -, left out of the totals)"
        return [note, *_sums(dataclasses.replace(net, layers=kept, complete=False))]
    return _sums(net)


def _sums(net: CheckedNetwork) -> list[str]:
    lines = [
        f"params: {net.total_params:,} total · {net.trainable_params:,} trainable · "
        f"{net.non_trainable_params:,} non-trainable  ({nbytes(net.param_bytes)} fp32)"
    ]
    if net.frozen_params:
        lines.append(
            f"frozen: {net.frozen_params:,} params in {sum(1 for c in net.layers if c.layer.frozen and c.params)} layers"
        )
    lines.append(f"MACs: {net.macs:,} ({si(net.macs)}) · FLOPs = 2 x MACs = {2 * net.macs:,}  per image")
    line = f"activations: {nbytes(net.activation_bytes)} per image (fp32, input and every layer output)"
    if net.complete and net.layers:
        peak = inference_peak(net)
        line += f"; at most {nbytes(peak.peak)} alive at once (at {peak.at})"
    lines.append(line)
    return lines


def _notes(net: CheckedNetwork) -> list[str]:
    """Dense in-features after flatten, what a derived network dropped, several outputs."""
    lines = []
    by_name = {entry.name: entry for entry in net.layers}
    for entry in net.layers:  # the classic "size mismatch, m1: [1 x 32768]" line, said upfront
        source = by_name.get(entry.inputs[0]) if entry.inputs else None
        if entry.in_features is not None and source is not None and source.kind == "flatten":
            lines.append(
                f"{entry.name} takes {entry.in_features:,} inputs from {source.name} ({format_shape(source.input_shape)})"
            )
    if net.dropped:
        lines.append(f"dropped from {net.base}: {', '.join(net.dropped)}")
    if len(net.outputs) > 1:
        shapes = ", ".join(f"{n} {format_shape(s)}" for n, s in zip(net.outputs, net.output_shapes))
        lines.append(f"outputs: {shapes}")
    return lines


def _dense_equivalent(net: CheckedNetwork) -> list[str]:
    convs = [c for c in net.layers if c.dense_equivalent_params]
    if not convs:
        return []
    conv_total = sum(c.params for c in convs)
    dense_total = sum(c.dense_equivalent_params or 0 for c in convs)
    return [
        f"as dense: the conv layers' {conv_total:,} params would be {dense_total:,} as fully connected "
        f"layers ({dense_total / max(conv_total, 1):,.0f}x): weight sharing and local connections"
    ]


def render_table(
    result: CheckResult,
    color: bool = False,
    dense_equivalent: bool = False,
    costing: Costing | None = None,
    layout: Layout | None = None,
) -> str:
    return "\n\n".join(
        render_network(net, color, dense_equivalent, costing, layout, result.sources)
        for net in result.networks
    )


def render_diagnostics(result: CheckResult, color: bool = False) -> str:
    parts = [render(d, result.sources, color) for d in result.diagnostics]
    parts += [hidden.line() for hidden in result.hidden]
    errors = len(result.errors) + sum(h.errors for h in result.hidden)
    warnings = len(result.warnings) + sum(h.warnings for h in result.hidden)
    if errors or warnings:
        summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        parts.append(_Style(color)(summary, "1"))
    return "\n".join(parts)


def to_json(result: CheckResult, costing: Costing | None = None) -> str:
    import json  # only for --format json: the table is the common case

    data = result.to_json()
    for net, out in zip(result.networks, data.get("networks", [])):
        if net.complete and net.layers:
            peak = inference_peak(net)
            out["inference_peak_bytes"] = peak.peak
            out["inference_peak_at"] = peak.at
        latency = (costing or Costing()).latency(net)
        if latency is not None:
            out["latency"] = {
                "device": latency.profile.name,
                "calibrated": latency.profile.calibrated,
                "batch": latency.batch,
                "total_seconds": latency.total,
            }
            for timed, layer in zip(latency.layers, out["layers"]):
                layer["latency_seconds"] = timed.seconds
                layer["bound"] = timed.bound(latency.profile) or None
                layer["fused_into"] = timed.group if timed.group != timed.name else None
        memory = (costing or Costing()).memory(net)
        if memory is None:
            continue
        out["training_memory"] = memory.to_json()
        if costing is not None and costing.fit is not None:
            out["training_memory"]["fit"] = {
                "budget_bytes": costing.fit,
                "framework_share": FRAMEWORK_SHARE,
                "largest_batch": fitting(memory, costing.fit)[0],
            }
        for row, layer in zip(memory.layers, out["layers"]):
            layer["training"] = {
                "weight_bytes": row.weights,
                "gradient_bytes": row.gradients,
                "optimizer_state_bytes": row.optimizer,
                "saved_activation_bytes_per_image": row.saved_per_image,
            }
    return json.dumps(data, indent=2)
