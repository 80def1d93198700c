"""Activation functions: the names a spec may use, their defaults, and the activation
fused onto a conv or dense line (`conv 32 3x3 relu`)."""

from __future__ import annotations

from typing import Optional

from pydantic_core import core_schema as cs

from ..base.records import record

ACTIVATIONS = (
    "relu",
    "leakyrelu",
    "sigmoid",
    "tanh",
    "softmax",
    "elu",
    "gelu",
    "relu6",
    "silu",
    "swish",  # = silu
    "hardswish",
    "hardsigmoid",
    "mish",  # x·tanh(softplus(x)) (YOLOv4, CSPDarknet)
    "softplus",  # ln(1 + e^x)
)


DEFAULT_ALPHA = {"leakyrelu": 0.01, "elu": 1.0}
# He initialisation suits these; Glorot the others (see deploy/weights.py).


RELU_FAMILY = ("relu", "leakyrelu", "elu", "gelu", "relu6", "silu", "swish", "hardswish", "mish")


@record
class Activation:
    """An activation fused onto a conv or dense line (`relu`, `leakyrelu 0.2`)."""

    name: str
    alpha: Optional[float] = None

    def short(self) -> str:
        default = DEFAULT_ALPHA.get(self.name)
        return self.name if self.alpha in (None, default) else f"{self.name} {self.alpha:g}"


ACTIVATION = cs.typed_dict_schema(
    {
        "name": cs.typed_dict_field(cs.literal_schema(list(ACTIVATIONS))),
        "alpha": cs.typed_dict_field(cs.nullable_schema(cs.float_schema()), required=False),
    }
)


ACTIVATION_FLAGS = {name: ("activation", name) for name in ACTIVATIONS}
