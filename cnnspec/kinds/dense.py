"""`dense UNITS`: fully connected."""

from __future__ import annotations

import math
from typing import ClassVar, Optional

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import POSITIVE, Argument, Inferred, LayerConfig, Matrix, Problem, Shape, format_shape
from .functions import ACTIVATION, ACTIVATION_FLAGS, Activation


@record
class Dense(LayerConfig):
    """`dense UNITS`: fully connected (ONNX Gemm, PyTorch Linear)."""

    example: ClassVar[str] = "dense 10"
    foreign_names: ClassVar[dict[str, str]] = {"linear": "dense", "fc": "dense"}

    kind: ClassVar[str] = "dense"
    prefix: ClassVar[str] = "dense"
    positional: ClassVar[tuple[str, ...]] = ("units",)
    flags: ClassVar[dict] = ACTIVATION_FLAGS
    arguments: ClassVar[dict[str, Argument]] = {
        "units": Argument("int", POSITIVE),
        "bias": Argument("bool", cs.bool_schema()),
        "activation": Argument("activation", ACTIVATION),
        "weights": Argument("matrix", cs.any_schema()),
    }

    units: int
    bias: bool = True
    activation: Optional[Activation] = None
    weights: Optional[Matrix] = None

    @property
    def activation_name(self) -> str | None:
        return self.activation.name if self.activation else None

    def short(self) -> str:
        parts = [f"dense {self.units}"]
        if not self.bias:
            parts.append("bias=false")
        if self.activation:
            parts.append(self.activation.short())
        return " ".join(parts)

    def explain(self, x: Shape, y: Shape, pads: tuple[int, ...] | None) -> str:
        return f"dense gives its {self.units} units"

    def infer(self, x: Shape) -> Inferred:
        problems = []
        n = math.prod(x)
        if len(x) != 1:
            problems.append(
                Problem(
                    "error",
                    "needs-flatten",
                    f"dense gets a {format_shape(x)} tensor, not a vector",
                    f"add `flatten` before it: it would give {n:,} inputs ({format_shape(x)})",
                )
            )
        tensors: dict[str, tuple[Shape, bool]] = {"weight": ((self.units, n), True)}
        if self.bias:
            tensors["bias"] = ((self.units,), True)
        return Inferred(
            (self.units,), tensors, n * self.units, problems=problems, in_features=n, covers_input=True
        )
