"""Checked network -> a top-down diagram, as SVG, PNG (Pillow) or an HTML page.

Pure Python, no Graphviz: the graph is already in definition order, so a layer's row is
one below the lowest of its inputs (branches that run in parallel share rows) and its
column continues its first input's where that is free; arrows run in the gaps between
rows and columns, so none crosses a box. One box per layer: name,
parameters, spec text and output shape; arrows carry the tensor shape; block instances
are framed and named (or one box each with `collapse`); frozen layers are grey.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from ..infer import CheckedNetwork
from ..kinds import format_shape, rule_for

BOX_W, BOX_H = 230, 62
GAP_X, GAP_Y = 50, 46
MARGIN = 30
MAX_PNG_PIXELS = 60_000_000
COLOURS = {  # border colour by kind
    "conv": "#1f6fb2",
    "deconv": "#1f6fb2",
    "dense": "#c05a00",
    "pool": "#2e8b57",
    "globalpool": "#2e8b57",
    "upsample": "#2e8b57",
    "add": "#7b3fa0",
    "concat": "#7b3fa0",
    "multiply": "#7b3fa0",
    "batchnorm": "#777777",
    "layernorm": "#777777",
    "scale": "#777777",
    "prelu": "#777777",
    "droppath": "#777777",
    "slice": "#8c6d31",
    "pad": "#2e8b57",
    "shuffle": "#8c6d31",
    "activation": "#777777",
    "dropout": "#777777",
    "flatten": "#777777",
}
BOX_COLOURS = {"input": "#333333", "block": "#1f6fb2"}  # boxes that are not one layer


def colour_of(kind: str) -> str:
    """A box's border colour; every layer kind has one (tests/test_kinds_registry.py checks it)."""
    return BOX_COLOURS.get(kind) or rule_for(COLOURS, kind, "draw")


@dataclass
class Box:
    key: str
    title: str
    lines: list[str]
    kind: str
    shape: str
    frozen: bool = False
    rank: int = 0
    lane: int = 0
    inputs: list[str] = field(default_factory=list)
    heat: float | None = None  # --heat: its share of the hottest box's time or memory, 0 to 1
    heat_text: str = ""

    @property
    def x(self) -> int:
        return MARGIN + self.lane * (BOX_W + GAP_X)

    @property
    def y(self) -> int:
        return MARGIN + 24 + self.rank * (BOX_H + GAP_Y)


@dataclass
class Group:
    title: str
    members: list[str]


@dataclass
class Diagram:
    title: str
    boxes: dict[str, Box]
    groups: list[Group]
    summary: str
    owner: dict[str, str] = field(default_factory=dict)  # layer -> the box that shows it

    @property
    def width(self) -> int:
        lanes = max((b.lane for b in self.boxes.values()), default=0) + 1
        return 2 * MARGIN + lanes * BOX_W + lanes * GAP_X  # the last column's gap carries skips too

    @property
    def height(self) -> int:
        ranks = max((b.rank for b in self.boxes.values()), default=0) + 1
        return 2 * MARGIN + 24 + ranks * BOX_H + (ranks - 1) * GAP_Y


# ------------------------------------------------------------------ layout


HOT = (215, 48, 31)  # the fill of the box that costs most; white costs nothing


def heat_fill(heat: float | None, frozen: bool) -> str:
    if heat is None:
        return "#e6e6e6" if frozen else "white"
    r, g, b = (round(255 + (c - 255) * heat) for c in HOT)
    return f"#{r:02x}{g:02x}{b:02x}"


def add_heat(diagram: Diagram, owner: dict[str, str], values: dict[str, float], text) -> None:
    """Each box filled by its share of the largest value (a collapsed instance: the sum
    of its layers'), and the value written on it."""
    per_box: dict[str, float] = {}
    for layer, value in values.items():
        key = owner.get(layer, layer)
        per_box[key] = per_box.get(key, 0.0) + value
    hottest = max(per_box.values(), default=0.0) or 1.0
    for key, box in diagram.boxes.items():
        if key in per_box:
            box.heat = per_box[key] / hottest
            box.heat_text = text(per_box[key])


def layout(network: CheckedNetwork, collapse: bool = False) -> Diagram:
    boxes: dict[str, Box] = {"input": Box("input", "input", [], "input", format_shape(network.input_shape))}
    owner: dict[str, str] = {}  # layer -> the box that shows it
    instances: dict[str, list[str]] = {}
    for entry in network.layers:
        instance = entry.layer.block
        if instance:
            instances.setdefault(instance, []).append(entry.name)
        key = instance if collapse and instance else entry.name
        owner[entry.name] = key
        frozen = entry.layer.frozen and entry.params > 0  # layers without weights have nothing to freeze
        outside = [owner.get(name, "input") for name in entry.inputs]
        box = boxes.get(key) or boxes.setdefault(key, _new_box(entry, key, frozen, network.instances))
        box.inputs += [i for i in outside if i != key and i not in box.inputs]
        box.shape = format_shape(entry.output_shape)  # a collapsed instance: its last layer's
    if collapse:
        _summarise_instances(network, boxes, instances)
    _place(boxes)
    groups = [] if collapse else [Group(name, members) for name, members in instances.items()]
    summary = (
        f"{network.name}: input {format_shape(network.input_shape)}, {len(network.layers)} layers, "
        f"{network.total_params:,} parameters ({network.trainable_params:,} trainable), {network.macs:,} MACs"
    )
    outputs = ", ".join(network.outputs)
    return Diagram(
        f"{network.name} (outputs: {outputs})" if outputs else network.name, boxes, groups, summary, owner
    )


def _new_box(entry, key: str, frozen: bool, calls) -> Box:
    """A layer's box, or (collapsed) the box of the block instance it belongs to, with the
    call that made it as the user wrote it (`basic_down 128`)."""
    if key == entry.name:
        params = f"{entry.params:,} params" if entry.params else ""
        return Box(key, entry.name, [entry.layer.spec_text(), params], entry.kind, "", frozen)
    return Box(key, key, [calls.get(key, "block instance"), ""], "block", "", True)


def _summarise_instances(
    network: CheckedNetwork, boxes: dict[str, Box], instances: dict[str, list[str]]
) -> None:
    """A collapsed instance's box: its layer count, parameters, frozen if all its weights are."""
    by_name = {entry.name: entry for entry in network.layers}
    for name, members in instances.items():
        weighted = [by_name[n] for n in members if by_name[n].params]
        total = sum(entry.params for entry in weighted)
        boxes[name].lines[1] = f"{len(members)} layers, {total:,} params"
        boxes[name].frozen = bool(weighted) and all(entry.layer.frozen for entry in weighted)


def _place(boxes: dict[str, Box]) -> None:
    """Rows: one below the lowest input. Columns: the first input's, if nothing took it
    since; else the leftmost column free at that row."""
    last_rank: list[int] = []  # per lane, the lowest row used so far
    continued: set[str] = set()
    for box in boxes.values():
        if box.key == "input":
            box.rank, box.lane = 0, 0
            last_rank.append(0)
            continue
        box.rank = 1 + max((boxes[i].rank for i in box.inputs), default=0)
        first = boxes[box.inputs[0]] if box.inputs else None
        if first is not None and first.key not in continued and last_rank[first.lane] < box.rank:
            box.lane = first.lane
            continued.add(first.key)
        else:
            box.lane = next((lane for lane, r in enumerate(last_rank) if r < box.rank), len(last_rank))
        if box.lane == len(last_rank):
            last_rank.append(box.rank)
        last_rank[box.lane] = box.rank


# ------------------------------------------------------------------ shared geometry


def edge_path(a: Box, b: Box) -> list[tuple[float, float]]:
    """The arrow from a to b as a polyline that crosses no box. Boxes sit in rows and
    columns, so the gaps between them are free: straight down into the row gap below a;
    to the next row directly, across that gap; further, along the gap to the column gap
    right of a's column, down it to the row gap above b, and across to b."""
    x0, y0 = a.x + BOX_W / 2, a.y + BOX_H
    x1, y1 = b.x + BOX_W / 2, b.y
    below, above = y0 + GAP_Y / 2, y1 - GAP_Y / 2
    if b.rank == a.rank + 1:
        return [(x0, y0), (x0, below), (x1, below), (x1, y1)]
    # Edges leaving one column at different rows take different tracks in its gap.
    corridor = a.x + BOX_W + GAP_X / 2 + (a.rank % 3 - 1) * 10
    return [(x0, y0), (x0, below), (corridor, below), (corridor, above), (x1, above), (x1, y1)]


def _label_at(a: Box) -> tuple[float, float]:
    """Where an arrow's tensor shape is written: just below its source, right of the line."""
    return a.x + BOX_W / 2 + 6, a.y + BOX_H + 14


def _group_rect(diagram: Diagram, group: Group) -> tuple[int, int, int, int]:
    members = [diagram.boxes[m] for m in group.members if m in diagram.boxes]
    left = min(b.x for b in members) - 10
    top = min(b.y for b in members) - 22
    right = max(b.x for b in members) + BOX_W + 10
    bottom = max(b.y for b in members) + BOX_H + 8
    return left, top, right, bottom


def _tag(box: Box) -> str:
    """The box's top-right note: its cost under --heat, else its parameters; frozen or not."""
    return (box.heat_text or (box.lines[1] if box.lines else "")) + (" · frozen" if box.frozen else "")


def _clip(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ SVG


def to_svg(diagram: Diagram) -> str:
    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{diagram.width}" height="{diagram.height}" '
        f'viewBox="0 0 {diagram.width} {diagram.height}" font-family="DejaVu Sans, Arial, sans-serif">',
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7' "
        "orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' fill='#555'/></marker></defs>",
        '<rect class="background" width="100%" height="100%" fill="white"/>',
        f'<text class="title" x="{MARGIN}" y="{MARGIN}" font-size="15" font-weight="bold">{e(diagram.title)}</text>',
    ]
    for group in diagram.groups:
        left, top, right, bottom = _group_rect(diagram, group)
        parts.append(
            f'<g class="group" data-name="{e(group.title)}"><rect x="{left}" y="{top}" width="{right - left}" '
            f'height="{bottom - top}" rx="10" fill="#f3f7fc" stroke="#9bb7d4" stroke-dasharray="5 3"/>'
            f'<text x="{left + 8}" y="{top + 15}" font-size="12" fill="#4a6a8a">{e(group.title)}</text></g>'
        )
    labelled: set[str] = set()  # arrows leaving one box carry one tensor: label it once
    for box in diagram.boxes.values():
        for source in box.inputs:
            a = diagram.boxes[source]
            points = " L ".join(f"{x:.1f} {y:.1f}" for x, y in edge_path(a, box))
            label_x, label_y = _label_at(a)
            label = (
                f'<text x="{label_x:.1f}" y="{label_y:.1f}" font-size="10" fill="#555">{e(a.shape)}</text>'
                if a.key not in labelled
                else ""
            )
            labelled.add(a.key)
            parts.append(
                f'<g class="edge" data-from="{e(a.key)}" data-to="{e(box.key)}">'
                f'<path d="M {points}" fill="none" stroke="#555" stroke-width="1.3" stroke-linejoin="round" '
                f'marker-end="url(#arrow)"/>{label}</g>'
            )
    for box in diagram.boxes.values():
        colour = colour_of(box.kind)
        fill = heat_fill(box.heat, box.frozen)
        frozen = ' data-frozen="true"' if box.frozen else ""
        heat = f' data-heat="{box.heat:.3f}"' if box.heat is not None else ""
        parts.append(
            f'<g class="layer" data-name="{e(box.key)}" data-kind="{e(box.kind)}"{frozen}{heat}>'
            f'<rect x="{box.x}" y="{box.y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<text x="{box.x + 8}" y="{box.y + 17}" font-size="13" font-weight="bold">{e(_clip(box.title, 22))}</text>'
            f'<text x="{box.x + BOX_W - 8}" y="{box.y + 17}" font-size="10" text-anchor="end" fill="#555">'
            f"{e(_tag(box))}</text>"
            f'<text x="{box.x + 8}" y="{box.y + 35}" font-size="11">{e(_clip(box.lines[0] if box.lines else ""))}</text>'
            f'<text x="{box.x + 8}" y="{box.y + 53}" font-size="11" fill="{colour}">→ {e(box.shape)}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def to_html(diagram: Diagram) -> str:
    e = html.escape
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{e(diagram.title)}</title>"
        "<style>body{font-family:sans-serif;margin:16px} .summary{color:#444;margin-bottom:12px}</style>"
        f"</head><body><h1>{e(diagram.title)}</h1><p class='summary'>{e(diagram.summary)}</p>\n"
        f"{to_svg(diagram)}</body></html>\n"
    )


# ------------------------------------------------------------------ PNG


def load_font(image_font, size: int):
    """DejaVu Sans where the system has it (most Linux systems), else Pillow's own font."""
    try:
        return image_font.truetype("DejaVuSans.ttf", size)
    except OSError:
        return image_font.load_default(size=size)


def to_png(diagram: Diagram, path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    if diagram.width * diagram.height > MAX_PNG_PIXELS:
        raise ValueError(
            f"a {diagram.width}x{diagram.height} PNG is too large; draw it as .svg or .html, or with --collapse"
        )
    image = Image.new("RGB", (diagram.width, diagram.height), "white")
    draw = ImageDraw.Draw(image)
    fonts = {size: load_font(ImageFont, size) for size in (10, 11, 13, 15)}
    draw.text((MARGIN, MARGIN - 14), diagram.title, fill="black", font=fonts[15])
    for group in diagram.groups:
        left, top, right, bottom = _group_rect(diagram, group)
        draw.rounded_rectangle((left, top, right, bottom), 10, fill="#f3f7fc", outline="#9bb7d4")
        draw.text((left + 8, top + 4), group.title, fill="#4a6a8a", font=fonts[11])
    labelled: set[str] = set()
    for box in diagram.boxes.values():
        for source in box.inputs:
            a = diagram.boxes[source]
            line = edge_path(a, box)
            draw.line(line, fill="#555555", width=1, joint="curve")
            x1, y1 = line[-1]
            draw.polygon([(x1, y1), (x1 - 4, y1 - 7), (x1 + 4, y1 - 7)], fill="#555555")
            if a.key not in labelled:
                label_x, label_y = _label_at(a)
                draw.text((label_x, label_y - 10), a.shape, fill="#555555", font=fonts[10])
                labelled.add(a.key)
    for box in diagram.boxes.values():
        colour = colour_of(box.kind)
        draw.rounded_rectangle(
            (box.x, box.y, box.x + BOX_W, box.y + BOX_H), 6, fill=heat_fill(box.heat, box.frozen),
            outline=colour, width=2,
        )  # fmt: skip
        draw.text((box.x + 8, box.y + 5), _clip(box.title, 22), fill="black", font=fonts[13])
        tag = _tag(box)
        draw.text((box.x + BOX_W - 8, box.y + 7), tag, fill="#555555", font=fonts[10], anchor="ra")
        draw.text(
            (box.x + 8, box.y + 25), _clip(box.lines[0] if box.lines else ""), fill="black", font=fonts[11]
        )
        draw.text(
            (box.x + 8, box.y + 43), f"-> {box.shape}", fill=colour, font=fonts[11]
        )  # no arrow glyph in the font
    image.save(path, format="PNG")
