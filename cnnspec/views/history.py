"""Training history: one JSON object per epoch (JSON lines), and a PNG of the curves
drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..base.files import write_atomically

WIDTH, HEIGHT, PAD = 900, 340, 48


def write_jsonl(path: Path, history: list) -> None:
    """Rewritten whole, atomically, after every epoch: a reader never sees half a line."""
    text = "".join(json.dumps(dataclasses.asdict(h)) + "\n" for h in history)
    write_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def plot(path: Path, history: list, title: str) -> None:
    """Loss (left) and accuracy (right) per epoch, training solid and validation dashed."""
    from PIL import Image, ImageDraw, ImageFont

    from .draw import load_font

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = load_font(ImageFont, 12)
    draw.text((PAD, 8), title, fill="black", font=load_font(ImageFont, 14))
    epochs = [h.epoch for h in history]
    panels = (
        ("loss", [h.loss for h in history], [h.val_loss for h in history], None),
        ("accuracy", [h.accuracy for h in history], [h.val_accuracy for h in history], (0.0, 1.0)),
    )
    half = WIDTH // 2
    for index, (name, train, val, fixed) in enumerate(panels):
        left, top, right, bottom = index * half + PAD, PAD, (index + 1) * half - 16, HEIGHT - PAD
        values = [v for v in train + val if v is not None]
        low, high = fixed or (min(values, default=0.0), max(values, default=1.0))
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5
        draw.rectangle((left, top, right, bottom), outline="#999999")
        draw.text((left, top - 16), name, fill="black", font=font)
        draw.text((left - 40, top - 6), f"{high:.3g}", fill="#555555", font=font)
        draw.text((left - 40, bottom - 6), f"{low:.3g}", fill="#555555", font=font)
        first, last = epochs[0], max(epochs[-1], epochs[0] + 1)
        draw.text((left, bottom + 4), f"epoch {first}", fill="#555555", font=font)
        draw.text((right - 50, bottom + 4), f"{epochs[-1]}", fill="#555555", font=font)

        box = (left, top, right, bottom, first, last, low, high)
        _series(draw, box, epochs, train, val)
        # Loss falls and accuracy rises: the legend goes where the curves end up not being.
        legend = top + 6 if name == "loss" else bottom - 40
        draw.text((right - 160, legend), "training", fill="#1f6fb2", font=font)
        if any(v is not None for v in val):
            draw.text((right - 160, legend + 16), "validation", fill="#c05a00", font=font)
    write_atomically(path, lambda temp: image.save(temp, format="PNG"))


def _series(draw, box: tuple, epochs: list, train: list, val: list) -> None:
    """Training solid, validation dashed, a dot per epoch."""
    for series, colour, dashed in ((train, "#1f6fb2", False), (val, "#c05a00", True)):
        points = [_point(box, e, v) for e, v in zip(epochs, series) if v is not None]
        for a, b in zip(points, points[1:]):
            for piece in _dashes(a, b) if dashed else [(a, b)]:
                draw.line(piece, fill=colour, width=2)
        for x, y in points:
            draw.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=colour)


def _dashes(a: tuple[float, float], b: tuple[float, float], on: float = 6.0, off: float = 4.0) -> list:
    """The segment a-b as dashes of `on` pixels with gaps of `off` (validation's line)."""
    length = ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5
    pieces, start = [], 0.0
    while start < length:
        end = min(start + on, length)
        t0, t1 = start / length, end / length
        pieces.append(
            (
                (a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1),
            )
        )
        start = end + off
    return pieces


def _point(box: tuple, epoch: int, value: float) -> tuple[float, float]:
    left, top, right, bottom, first, last, low, high = box
    return (
        left + (epoch - first) / (last - first) * (right - left),
        bottom - (value - low) / (high - low) * (bottom - top),
    )
