"""Every layer's output as pictures: a PNG grid per layer (a tile per channel, each
channel scaled to its own range) and an index.html that shows them in order.

    cnnspec run NET.cnn --input image.png --activations DIR

The first example of the batch is drawn. Small maps are enlarged (nearest neighbour) so
that a 4x4 edge map is visible; a flat vector becomes one row of cells.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TILE = 96  # a tile's longer side in pixels, at least (maps are enlarged by whole factors)
GAP = 2
MAX_TILES = 1024  # channels drawn per layer (the rest are counted on the page)


@dataclass
class Picture:
    name: str
    spec: str
    shape: tuple[int, ...]
    file: str
    note: str = ""


def _scaled(channel: np.ndarray) -> np.ndarray:
    """0..255, per channel: its own minimum black, its maximum white (flat: mid grey)."""
    finite = np.nan_to_num(channel.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(finite.min()), float(finite.max())
    if high - low < 1e-12:
        return np.full(channel.shape, 128, np.uint8)
    return np.round((finite - low) / (high - low) * 255).astype(np.uint8)


def grid(array: np.ndarray) -> np.ndarray:
    """A CxHxW (or flat) array as one greyscale image of tiles; a CxL sequence as one strip
    per channel, a CxDxHxW volume by its middle slice."""
    if array.ndim == 1:  # a vector: one row of square cells
        array = array.reshape(1, 1, -1)
    elif array.ndim == 2:
        array = array[:, None, :]
    elif array.ndim == 4:
        array = array[:, array.shape[1] // 2]
    channels = array.shape[0]
    shown = array[:MAX_TILES]
    h, w = shown.shape[1:]
    factor = max(1, TILE // max(h, w))
    columns = math.ceil(math.sqrt(len(shown))) if h > 1 else 1
    rows = math.ceil(len(shown) / columns)
    th, tw = h * factor, w * factor
    image = np.full((rows * (th + GAP) - GAP, columns * (tw + GAP) - GAP), 255, np.uint8)
    for index, channel in enumerate(shown):
        r, c = divmod(index, columns)
        tile = np.kron(_scaled(channel), np.ones((factor, factor), np.uint8))
        image[r * (th + GAP) : r * (th + GAP) + th, c * (tw + GAP) : c * (tw + GAP) + tw] = tile
    del channels
    return image


def _file_name(index: int, name: str) -> str:
    return f"{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:60]}.png"


def save(folder: Path, network_name: str, layers: list[tuple[str, str, np.ndarray]]) -> list[Picture]:
    """Write the pictures and index.html into `folder` (created; it must not exist or be
    empty), atomically: a half-written folder is never left behind."""
    from PIL import Image

    parent = folder.resolve().parent
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder} exists and is not an empty folder; give a new folder")
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    try:
        pictures = []
        for index, (name, spec, array) in enumerate(layers):
            file = _file_name(index, name)
            Image.fromarray(grid(array)).save(scratch / file)
            notes = (
                [f"first {MAX_TILES} of {array.shape[0]} channels"]
                if array.ndim >= 2 and array.shape[0] > MAX_TILES
                else []
            )
            if array.ndim == 4:
                notes.append(f"slice {array.shape[1] // 2 + 1} of {array.shape[1]} along the depth")
            note = "; ".join(notes)
            pictures.append(Picture(name, spec, tuple(array.shape), file, note))
        (scratch / "index.html").write_text(_index(network_name, pictures), encoding="utf-8")
        os.chmod(scratch, 0o777 & ~_umask())
        if folder.exists():
            folder.rmdir()  # empty, checked above
        os.replace(scratch, folder)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return pictures


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _index(network_name: str, pictures: list[Picture]) -> str:
    e = html.escape
    rows = "\n".join(
        f"<section><h2>{e(p.name)} <small>{e(p.spec)} → {'x'.join(map(str, p.shape))}</small></h2>"
        f"<img src='{e(p.file)}' alt='{e(p.name)}'>{f'<p>{e(p.note)}</p>' if p.note else ''}</section>"
        for p in pictures
    )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{e(network_name)}: feature maps</title>"
        "<style>body{font-family:sans-serif;margin:16px} small{color:#555;font-weight:normal}"
        " img{image-rendering:pixelated;border:1px solid #ccc;max-width:100%} section{margin-bottom:24px}</style>"
        f"</head><body><h1>{e(network_name)}: feature maps</h1>"
        "<p>One tile per channel, each scaled from its own minimum (black) to its maximum (white); "
        "the first example of the batch.</p>\n"
        f"{rows}\n</body></html>\n"
    )
