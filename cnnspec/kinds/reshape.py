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
class Flatten(LayerConfig):
    """`flatten`: CxHxW to one vector, in C, H, W order."""

    example: ClassVar[str] = "flatten"

    kind: ClassVar[str] = "flatten"
    prefix: ClassVar[str] = "flatten"

    def infer(self, x: Shape) -> Inferred:
        return Inferred((math.prod(x),), covers_input=True)
