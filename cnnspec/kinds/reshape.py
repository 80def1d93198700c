"""`dropout` and `flatten`: layers that change no value (dropout at inference) or only the layout."""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import (
    PADS,
    Argument,
    Inferred,
    LayerConfig,
    Pads,
    Problem,
    Shape,
    axis_names,
    format_shape,
    needs_spatial,
)
from .window import UNITS, joined, pad_pairs, pads_text, rank_problem


@record
class Dropout(LayerConfig):
    """`dropout RATE`: zeroes a fraction of the values while training; the identity otherwise."""

    example: ClassVar[str] = "dropout 0.5"
    foreign_names: ClassVar[dict[str, str]] = {"dropout2d": "dropout"}

    kind: ClassVar[str] = "dropout"
    prefix: ClassVar[str] = "dropout"
    positional: ClassVar[tuple[str, ...]] = ("rate",)
    arguments: ClassVar[dict[str, Argument]] = {"rate": Argument("float", cs.float_schema(ge=0, lt=1))}

    rate: float

    def short(self) -> str:
        return f"dropout {self.rate:g}"


@record
class DropPath(LayerConfig):
    """`droppath RATE`: stochastic depth. While training, each sample's whole tensor is
    zeroed with probability RATE (the rest scaled by 1/(1-RATE)); the identity otherwise.
    Written at the end of a residual body, it drops the body and keeps the shortcut."""

    example: ClassVar[str] = "droppath 0.1"
    foreign_names: ClassVar[dict[str, str]] = {"stochasticdepth": "droppath"}

    kind: ClassVar[str] = "droppath"
    prefix: ClassVar[str] = "droppath"
    positional: ClassVar[tuple[str, ...]] = ("rate",)
    arguments: ClassVar[dict[str, Argument]] = {"rate": Argument("float", cs.float_schema(ge=0, lt=1))}

    rate: float

    def short(self) -> str:
        return f"droppath {self.rate:g}"


DROPPATH_NOTE = "droppath {rate!r}: identity at inference"  # an exported node's doc string ends so


@record
class Flatten(LayerConfig):
    """`flatten`: CxHxW to one vector, in C, H, W order."""

    example: ClassVar[str] = "flatten"

    kind: ClassVar[str] = "flatten"
    prefix: ClassVar[str] = "flatten"

    def infer(self, x: Shape) -> Inferred:
        return Inferred((math.prod(x),), covers_input=True)


PAD_SIZES = PADS
PAD_MODES = ("zero", "reflect", "edge")


@record
class Pad(LayerConfig):
    """`pad P [zero|reflect|edge]`: rows and columns added around a map: zeros, the map
    mirrored at its border (reflect), or the border repeated (edge). P is one size, PHxPW,
    or (top, bottom, left, right)."""

    example: ClassVar[str] = "pad 1"
    foreign_names: ClassVar[dict[str, str]] = {
        "zeropad2d": "pad",
        "zeropadding2d": "pad",
        "constantpad2d": "pad",
        "reflectionpad2d": "pad reflect",
        "replicationpad2d": "pad edge",
    }

    kind: ClassVar[str] = "pad"
    prefix: ClassVar[str] = "pad"
    positional: ClassVar[tuple[str, ...]] = ("sizes",)
    flags: ClassVar[dict] = {mode: ("mode", mode) for mode in PAD_MODES}
    arguments: ClassVar[dict[str, Argument]] = {
        "sizes": Argument("pad_sizes", PAD_SIZES),
        "mode": Argument("word", cs.literal_schema(list(PAD_MODES))),
    }

    sizes: Pads
    mode: str = "zero"

    def short(self) -> str:
        return f"pad {pads_text(self.sizes)}" + ("" if self.mode == "zero" else f" {self.mode}")

    def infer(self, x: Shape) -> Inferred:
        flat = needs_spatial(x, "pad")
        if flat:
            return flat
        mismatch = rank_problem(x, self.sizes[::2], self.sizes)
        if mismatch:
            return Inferred(None, problems=[mismatch])
        pairs = pad_pairs(self.sizes)
        if self.mode == "reflect" and any(max(p) >= n for p, n in zip(pairs, x[1:])):
            most = joined([f"{n - 1} {UNITS[a]}s" for n, a in zip(x[1:], axis_names(len(x) - 1))])
            problem = Problem(
                "error",
                "invalid-argument",
                f"reflect padding of ({','.join(map(str, self.sizes))}) mirrors at most {most} "
                f"of a {format_shape(x[1:])} map",
                "pad less, or `pad ... edge`, which repeats the border as often as needed",
                "sizes",
            )
            return Inferred(None, problems=[problem])
        return Inferred((x[0], *(n + b + e for n, (b, e) in zip(x[1:], pairs))))
