"""Checked networks -> what people read (an 80-column table) and what programs read (JSON).

Hand-written rather than rich: `cnnspec check` must start in well under 0.2 s, and a
fixed-width table is twenty lines of code.
"""

from __future__ import annotations

from ..base.diagnostics import printable, render
from ..infer import CheckedNetwork, CheckResult
from ..kinds import format_shape


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


def render_network(net: CheckedNetwork, color: bool = False, dense_equivalent: bool = False) -> str:
    style = _Style(color)
    rows: list[tuple[str | None, list[str] | None, bool]] = []  # (block, cells or None for its title, frozen)
    previous, group = "input", None
    for entry in net.layers:
        if entry.layer.block != group:  # a block instance's layers under its name
            group = entry.layer.block
            if group is not None:
                rows.append((group, None, False))
        rows.append((group, _cells(entry, previous, group is not None, dense_equivalent), entry.layer.frozen))
        previous = entry.name
    columns = _fitted(COLUMNS + ([("as dense", 12, ">")] if dense_equivalent else []), rows)
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
    lines += _notes(net)
    if dense_equivalent:
        lines += _dense_equivalent(net)
    return "\n".join(lines)


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
    rf_text = "" if rf is None else (str(rf[0]) if rf[0] == rf[1] else f"{rf[0]}x{rf[1]}")
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
    lines.append(
        f"activations: {nbytes(net.activation_bytes)} per image (fp32, input and every layer output)"
    )
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


def render_table(result: CheckResult, color: bool = False, dense_equivalent: bool = False) -> str:
    return "\n\n".join(render_network(net, color, dense_equivalent) for net in result.networks)


def render_diagnostics(result: CheckResult, color: bool = False) -> str:
    parts = [render(d, result.sources, color) for d in result.diagnostics]
    parts += [hidden.line() for hidden in result.hidden]
    errors = len(result.errors) + sum(h.errors for h in result.hidden)
    warnings = len(result.warnings) + sum(h.warnings for h in result.hidden)
    if errors or warnings:
        summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        parts.append(_Style(color)(summary, "1"))
    return "\n".join(parts)


def to_json(result: CheckResult) -> str:
    import json  # only for --format json: the table is the common case

    return json.dumps(result.to_json(), indent=2)
