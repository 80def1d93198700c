"""`batchnorm` and `scale`: per-channel affine layers."""

from __future__ import annotations

from typing import ClassVar

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import Argument, Inferred, LayerConfig, Shape


@record
class BatchNorm(LayerConfig):
    """`batchnorm`: per-channel normalisation with learned scale and shift."""

    example: ClassVar[str] = "batchnorm"
    foreign_names: ClassVar[dict[str, str]] = {
        "batchnorm2d": "batchnorm",
        "batchnormalization": "batchnorm",
        "bn": "batchnorm",
    }

    kind: ClassVar[str] = "batchnorm"
    prefix: ClassVar[str] = "bn"
    arguments: ClassVar[dict[str, Argument]] = {
        "eps": Argument("float", cs.float_schema(gt=0)),
        "momentum": Argument("float", cs.float_schema(gt=0, lt=1)),
    }

    eps: float = 1e-5
    momentum: float = 0.1  # PyTorch's convention, used in training

    def short(self) -> str:
        parts = ["batchnorm"]
        if self.eps != 1e-5:
            parts.append(f"eps={self.eps!r}")
        if self.momentum != 0.1:
            parts.append(f"momentum={self.momentum!r}")
        return " ".join(parts)

    def infer(self, x: Shape) -> Inferred:
        c: Shape = (x[0],)
        # As Keras counts: gamma and beta train, the running statistics do not.
        tensors = {
            "weight": (c, True),
            "bias": (c, True),
            "running_mean": (c, False),
            "running_var": (c, False),
        }
        return Inferred(x, tensors)


@record
class Scale(LayerConfig):
    """`scale`: each channel times a learned factor (ConvNeXt's layer scale; starts at 1)."""

    example: ClassVar[str] = "scale"
    foreign_names: ClassVar[dict[str, str]] = {"layerscale": "scale"}

    kind: ClassVar[str] = "scale"
    prefix: ClassVar[str] = "scale"

    def infer(self, x: Shape) -> Inferred:
        # One factor per channel (per feature of a vector); an element-wise product, which
        # counts no MACs, as batch norm does not.
        return Inferred(x, {"weight": ((x[0],), True)})
