"""Checked networks -> what people read (an 80-column table) and what programs read (JSON).

Hand-written rather than rich: `cnnspec check` must start in well under 0.2 s, and a
fixed-width table is twenty lines of code.
"""

from __future__ import annotations

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
    net: CheckedNetwork, color: bool = False, dense_equivalent: bool = False, costing: Costing | None = None
) -> str:
    style = _Style(color)
    memory = (costing or Costing()).memory(net)
    latency = (costing or Costing()).latency(net)
    rows = _rows(net, dense_equivalent, memory, latency)
    extra = [("as dense", 12, ">")] if dense_equivalent else []
    extra += [("kept/img", 9, ">")] if memory else []
    extra += [("time", 9, ">"), ("bound", 7, "<")] if latency else []
    columns = _fitted(COLUMNS + extra, rows)
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


def _rows(
    net: CheckedNetwork, dense_equivalent: bool, memory: TrainingMemory | None, latency: Latency | None
) -> list[tuple[str | None, list[str] | None, bool]]:
    """(block, cells or None for the block's title, frozen) per row."""
    kept = {row.name: row.saved_per_image for row in memory.layers} if memory else {}
    times = {row.name: row for row in latency.layers} if latency else {}
    rows: list[tuple[str | None, list[str] | None, bool]] = []
    previous, group = "input", None
    for entry in net.layers:
        if entry.layer.block != group:  # a block instance's layers under its name
            group = entry.layer.block
            if group is not None:
                rows.append((group, None, False))
        cells = _cells(entry, previous, group is not None, dense_equivalent)
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


def _fitted(columns: list[tuple[str, int, str]], rows: list) -> list[tuple[str, int, str]]:
    """Columns as wide as their longest cell: a name, a shape or a number is never cut
    (only the spec text is, at its width, with …)."""
    fitted = []
    for index, (title, width, align) in enumerate(columns):
        if title != "spec":
            width = max([width, *(len(cells[index]) for _, cells, _ in rows if cells is not None)])
        fitted.append((title, width, align))
    return fitted


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


def _totals(net: CheckedNetwork) -> list[str]:
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
    result: CheckResult, color: bool = False, dense_equivalent: bool = False, costing: Costing | None = None
) -> str:
    return "\n\n".join(render_network(net, color, dense_equivalent, costing) for net in result.networks)


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
