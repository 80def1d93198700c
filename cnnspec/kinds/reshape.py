"""`dropout` and `flatten`: layers that change no value (dropout at inference) or only the layout."""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import Argument, Inferred, LayerConfig, Shape


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
