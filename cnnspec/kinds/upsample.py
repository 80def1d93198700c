"""`upsample SCALE [nearest|bilinear]`."""

from __future__ import annotations

from typing import ClassVar

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import SIZE, Argument, Inferred, LayerConfig, Problem, Shape, Size, needs_spatial
from .window import rank_problem, size_text

MAX_EXACT_SCALE = 2**24  # float32 holds every whole number up to here


@record
class Upsample(LayerConfig):
    """`upsample 2 [nearest|bilinear]`: every spatial axis times SCALE, or each axis by its
    own (`upsample 1x2x2`) (ONNX Resize, F.interpolate). `bilinear` interpolates linearly
    along every axis (PyTorch's linear, bilinear or trilinear)."""

    example: ClassVar[str] = "upsample 2"
    foreign_names: ClassVar[dict[str, str]] = {"upsampling2d": "upsample"}

    kind: ClassVar[str] = "upsample"
    prefix: ClassVar[str] = "up"
    positional: ClassVar[tuple[str, ...]] = ("scale", "mode")
    arguments: ClassVar[dict[str, Argument]] = {
        "scale": Argument("size", SIZE),
        "mode": Argument("word", cs.literal_schema(["nearest", "bilinear"])),
    }

    scale: Size
    mode: str = "nearest"

    def short(self) -> str:
        return f"upsample {size_text(self.scale)}" + ("" if self.mode == "nearest" else f" {self.mode}")

    def infer(self, x: Shape) -> Inferred:
        flat = needs_spatial(x, "upsample")
        if flat:
            return flat
        mismatch = rank_problem(x, self.scale, (0,) * 2 * len(self.scale))
        if mismatch:
            return Inferred(None, problems=[mismatch])
        if max(self.scale) > MAX_EXACT_SCALE:
            problem = Problem(
                "error",
                "too-large",
                f"scale {max(self.scale):,} cannot be exact: ONNX's Resize takes its scales as float32, "
                f"whose whole numbers are exact up to {MAX_EXACT_SCALE:,}",
                "upsample in two steps whose scales multiply to this one",
                "scale",
            )
            return Inferred(None, problems=[problem])
        return Inferred((x[0], *(n * s for n, s in zip(x[1:], self.scale))))
