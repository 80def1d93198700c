"""`upsample SCALE [nearest|bilinear]`."""

from __future__ import annotations

from typing import ClassVar

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import POSITIVE, Argument, Inferred, LayerConfig, Problem, Shape, needs_spatial

MAX_EXACT_SCALE = 2**24  # float32 holds every whole number up to here


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
        if self.scale > MAX_EXACT_SCALE:
            problem = Problem(
                "error",
                "too-large",
                f"scale {self.scale:,} cannot be exact: ONNX's Resize takes its scales as float32, "
                f"whose whole numbers are exact up to {MAX_EXACT_SCALE:,}",
                "upsample in two steps whose scales multiply to this one",
                "scale",
            )
            return Inferred(None, problems=[problem])
        return Inferred((x[0], x[1] * self.scale, x[2] * self.scale))
