"""`pool max|avg` and `globalpool`."""

from __future__ import annotations

from typing import ClassVar, Optional

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import PADDING, SIZE, Argument, Inferred, LayerConfig, Padding, Problem, Shape, Size, needs_spatial
from .window import Windowed, kernel_text, pad_pairs, padding_text, size_text


@record
class Pool(Windowed):
    """`pool max|avg KERNEL`: max or average pooling (ONNX MaxPool/AveragePool)."""

    example: ClassVar[str] = "pool max 2"
    foreign_names: ClassVar[dict[str, str]] = {
        "maxpool": "pool max",
        "maxpool2d": "pool max",
        "maxpooling2d": "pool max",
        "avgpool": "pool avg",
        "avgpool2d": "pool avg",
        "averagepooling2d": "pool avg",
    }

    kind: ClassVar[str] = "pool"
    prefix: ClassVar[str] = "pool"
    positional: ClassVar[tuple[str, ...]] = ("mode", "kernel")
    flags: ClassVar[dict] = {"ceil": ("ceil", True), "count_pad": ("count_pad", True)}
    arguments: ClassVar[dict[str, Argument]] = {
        "mode": Argument("word", cs.literal_schema(["max", "avg"])),
        "kernel": Argument("size", SIZE),
        "stride": Argument("size", cs.nullable_schema(SIZE)),
        "pad": Argument("padding", PADDING),
        "ceil": Argument("bool", cs.bool_schema()),
        "count_pad": Argument("bool", cs.bool_schema()),
    }

    mode: str  # max | avg
    kernel: Size
    stride: Optional[Size] = None  # default: the kernel
    pad: Padding = (0, 0, 0, 0)
    ceil: bool = False
    # Whether an average counts the padding's zeros (ONNX count_include_pad=1, PyTorch's
    # default) or only the real pixels of each window (Keras, and cnnspec's default).
    count_pad: bool = False

    def uneven_same_matters(self) -> bool:
        # Padding never enters a max, nor an average that leaves padding out of the count.
        return self.mode == "avg" and self.count_pad

    @property
    def window_stride(self) -> Size:
        """The stride written, or the window (a pool's default: windows side by side)."""
        return self.stride or self.kernel

    def _stride(self) -> Size:
        return self.window_stride

    def _ceil(self) -> bool:
        return self.ceil

    def short(self) -> str:
        parts = [f"pool {self.mode} {size_text(self.kernel)}"]
        if self.stride and self.stride != self.kernel:
            parts.append(f"stride={size_text(self.stride)}")
        parts.append(padding_text(self.pad))
        if self.ceil:
            parts.append("ceil")
        if self.count_pad:
            parts.append("count_pad")
        return " ".join(p for p in parts if p)

    def infer(self, x: Shape) -> Inferred:
        flat = needs_spatial(x, "pool")
        if flat:
            return flat
        sizes, window, problems = self.spatial(x, "window")
        if sizes is not None and any(max(p) >= k for p, k in zip(pad_pairs(window.pads), self.kernel)):
            # A window made only of padding pools nothing; ONNX Runtime rejects it too.
            problems.append(
                Problem(
                    "error",
                    "invalid-argument",
                    f"pool padding {padding_text(self.pad)} must be smaller than the "
                    f"{kernel_text(self.kernel)} window on every side",
                    "use pad=same or a smaller pad",
                    "pad",
                )
            )
            sizes = None
        problems.extend(self._count_pad_problems())
        return Inferred(None if sizes is None else (x[0], *sizes), {}, 0, window, problems=problems)

    def _count_pad_problems(self) -> list[Problem]:
        if not self.count_pad:
            return []
        if self.mode == "max":
            message = "count_pad is for average pooling; padding never enters a max"
            return [Problem("error", "invalid-argument", message, "remove count_pad", "count_pad")]
        if self.ceil:
            # Runtimes count the windows' overhang past the padding differently.
            message = "count_pad with ceil: PyTorch and ONNX Runtime disagree on what a window past the padding counts"
            return [Problem("error", "invalid-argument", message, "pad explicitly instead of ceil", "ceil")]
        return []


@record
class GlobalPool(LayerConfig):
    """`globalpool max|avg`: one value per channel (ONNX GlobalMaxPool/GlobalAveragePool)."""

    example: ClassVar[str] = "globalpool avg"
    foreign_names: ClassVar[dict[str, str]] = {
        "adaptiveavgpool2d": "globalpool avg",
        "globalavgpool": "globalpool avg",
        "globalaveragepooling2d": "globalpool avg",
        "adaptivemaxpool2d": "globalpool max",
        "globalmaxpooling2d": "globalpool max",
    }

    kind: ClassVar[str] = "globalpool"
    prefix: ClassVar[str] = "gpool"
    positional: ClassVar[tuple[str, ...]] = ("mode",)
    arguments: ClassVar[dict[str, Argument]] = {"mode": Argument("word", cs.literal_schema(["max", "avg"]))}

    mode: str  # max | avg

    def short(self) -> str:
        return f"globalpool {self.mode}"

    def infer(self, x: Shape) -> Inferred:
        return needs_spatial(x, "globalpool") or Inferred((x[0],) + (1,) * (len(x) - 1), covers_input=True)
