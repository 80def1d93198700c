"""An activation on a line of its own (`relu`, `leakyrelu 0.1`, ...)."""

from __future__ import annotations

from typing import ClassVar, Optional

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import Argument, Inferred, LayerConfig, Shape
from .functions import ACTIVATIONS, DEFAULT_ALPHA, Activation


@record
class ActivationLayer(LayerConfig):
    """`relu`, `leakyrelu 0.1`, ... on a line of their own; the word is the function."""

    example: ClassVar[str] = "relu"

    kind: ClassVar[str] = "activation"
    arguments: ClassVar[dict[str, Argument]] = {
        "fn": Argument("word", cs.literal_schema(list(ACTIVATIONS))),
        "alpha": Argument("float", cs.nullable_schema(cs.float_schema())),
    }

    fn: str
    alpha: Optional[float] = None

    @classmethod
    def preset(cls, word: str) -> dict:
        return {"fn": word}

    @classmethod
    def positional_for(cls, word: str) -> tuple[str, ...]:
        return ("alpha",) if word in DEFAULT_ALPHA else ()

    @classmethod
    def name_prefix(cls, config: LayerConfig) -> str:
        return config.fn  # type: ignore[attr-defined]

    @property
    def activation_name(self) -> str | None:
        return self.fn

    def short(self) -> str:
        return Activation(name=self.fn, alpha=self.alpha).short()


@record
class PReLU(LayerConfig):
    """`prelu [shared]`: max(0, x) + a·min(0, x) with a learned slope a per channel, or one
    slope for all (`shared`, PyTorch's nn.PReLU() default); slopes start at 0.25."""

    example: ClassVar[str] = "prelu"
    foreign_names: ClassVar[dict[str, str]] = {}

    kind: ClassVar[str] = "prelu"
    prefix: ClassVar[str] = "prelu"
    flags: ClassVar[dict] = {"shared": ("shared", True)}
    arguments: ClassVar[dict[str, Argument]] = {"shared": Argument("bool", cs.bool_schema())}

    shared: bool = False

    def short(self) -> str:
        return "prelu shared" if self.shared else "prelu"

    def initial(self, suffix: str) -> float | None:
        return 0.25  # He et al. 2015, and PyTorch's default

    def infer(self, x: Shape) -> Inferred:
        # Like batch norm's scale, an element-wise product: no MACs.
        return Inferred(x, {"weight": ((1 if self.shared else x[0],), True)})
