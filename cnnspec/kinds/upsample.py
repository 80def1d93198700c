"""`upsample SCALE [nearest|bilinear]`."""

from __future__ import annotations

from typing import ClassVar

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import POSITIVE, Argument, Inferred, LayerConfig, Shape, needs_spatial


@record
class Upsample(LayerConfig):
    """`upsample 2 [nearest|bilinear]`: H and W times SCALE (ONNX Resize, F.interpolate)."""

    example: ClassVar[str] = "upsample 2"
    foreign_names: ClassVar[dict[str, str]] = {"upsampling2d": "upsample"}

    kind: ClassVar[str] = "upsample"
    prefix: ClassVar[str] = "up"
    positional: ClassVar[tuple[str, ...]] = ("scale", "mode")
    arguments: ClassVar[dict[str, Argument]] = {
        "scale": Argument("int", POSITIVE),
        "mode": Argument("word", cs.literal_schema(["nearest", "bilinear"])),
    }

    scale: int
    mode: str = "nearest"

    def short(self) -> str:
        return f"upsample {self.scale}" + ("" if self.mode == "nearest" else f" {self.mode}")

    def infer(self, x: Shape) -> Inferred:
        flat = needs_spatial(x, "upsample")
        if flat:
            return flat
        return Inferred((x[0], x[1] * self.scale, x[2] * self.scale))
