"""An activation on a line of its own (`relu`, `leakyrelu 0.1`, ...)."""

from __future__ import annotations

from typing import ClassVar, Optional

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import Argument, LayerConfig
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
