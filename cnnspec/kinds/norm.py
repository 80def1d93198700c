"""`batchnorm` and `scale`: per-channel affine layers."""

from __future__ import annotations

from typing import ClassVar

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import Argument, Inferred, LayerConfig, Problem, Shape


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
    """`scale [init=V]`: each channel times a learned factor (ConvNeXt's layer scale, which
    starts at 1e-6; cnnspec's default start is 1, the identity)."""

    example: ClassVar[str] = "scale"
    foreign_names: ClassVar[dict[str, str]] = {"layerscale": "scale"}

    kind: ClassVar[str] = "scale"
    prefix: ClassVar[str] = "scale"
    arguments: ClassVar[dict[str, Argument]] = {
        "init": Argument("float", cs.float_schema(allow_inf_nan=False)),
    }

    init: float = 1.0

    def short(self) -> str:
        return "scale" if self.init == 1.0 else f"scale init={self.init!r}"

    def initial(self, suffix: str) -> float | None:
        return self.init

    def infer(self, x: Shape) -> Inferred:
        # One factor per channel (per feature of a vector); an element-wise product, which
        # counts no MACs, as batch norm does not.
        return Inferred(x, {"weight": ((x[0],), True)})


@record
class LayerNorm(LayerConfig):
    """`layernorm [eps=E]`: each position's C channels normalised to mean 0 and variance 1,
    then scaled and shifted by a learned factor and offset per channel (ConvNeXt's
    LayerNorm2d; PyTorch's nn.LayerNorm(C) over a channels-last map). Unlike batch norm it
    keeps no running statistics: it computes the same in training and inference."""

    example: ClassVar[str] = "layernorm"
    foreign_names: ClassVar[dict[str, str]] = {
        "layernorm2d": "layernorm",
        "layernormalization": "layernorm",
        "ln": "layernorm",
    }

    kind: ClassVar[str] = "layernorm"
    prefix: ClassVar[str] = "ln"
    arguments: ClassVar[dict[str, Argument]] = {"eps": Argument("float", cs.float_schema(gt=0))}

    eps: float = 1e-5  # PyTorch's default; ConvNeXt uses 1e-6

    def short(self) -> str:
        return "layernorm" if self.eps == 1e-5 else f"layernorm eps={self.eps!r}"

    def infer(self, x: Shape) -> Inferred:
        if len(x) < 2:
            problem = Problem(
                "error",
                "needs-spatial-input",
                f"layernorm normalises the channels at each position of a map, but gets a flat "
                f"vector of {x[0]}",
                "move it before `flatten` (a ConvNeXt head: globalpool avg; layernorm; flatten)",
            )
            return Inferred(None, problems=[problem])
        c: Shape = (x[0],)
        # As Keras counts: gamma and beta, 2C, both trainable; no statistics are kept.
        return Inferred(x, {"weight": (c, True), "bias": (c, True)})
