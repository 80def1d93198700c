"""`conv` and `deconv` (transposed convolution): filters, kernel, stride, padding, dilation, groups."""

from __future__ import annotations

import math
from typing import ClassVar, Optional

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import (
    PADDING,
    POSITIVE,
    SIZE,
    Argument,
    Inferred,
    LayerConfig,
    Matrix,
    Padding,
    Pads,
    Problem,
    Shape,
    Size,
    fit_defaults,
    needs_spatial,
)
from .functions import ACTIVATION, ACTIVATION_FLAGS, Activation
from .window import Windowed, kernel_text, pad_pairs, padding_text, rank_problem, size_text


@record
class Conv(Windowed):
    """`conv FILTERS KERNEL`: 2-D convolution (ONNX Conv, PyTorch Conv2d)."""

    example: ClassVar[str] = "conv 32 3x3"
    foreign_names: ClassVar[dict[str, str]] = {"conv2d": "conv", "convolution2d": "conv"}

    kind: ClassVar[str] = "conv"
    prefix: ClassVar[str] = "conv"
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel")
    flags: ClassVar[dict] = ACTIVATION_FLAGS
    arguments: ClassVar[dict[str, Argument]] = {
        "filters": Argument("int", POSITIVE),
        "kernel": Argument("size", SIZE),
        "stride": Argument("size", SIZE),
        "pad": Argument("padding", PADDING),
        "dilation": Argument("size", SIZE),
        "groups": Argument("int", POSITIVE),
        "bias": Argument("bool", cs.bool_schema()),
        "activation": Argument("activation", ACTIVATION),
        "weights": Argument("matrix", cs.any_schema()),
    }

    filters: int
    kernel: Size
    stride: Size = (1, 1)
    pad: Padding = (0, 0, 0, 0)
    dilation: Size = (1, 1)
    groups: int = 1
    bias: bool = True
    activation: Optional[Activation] = None
    weights: Optional[Matrix] = None

    def _dilation(self) -> Size:
        return self.dilation

    @property
    def activation_name(self) -> str | None:
        return self.activation.name if self.activation else None

    def short(self) -> str:
        return _filter_text(self)

    def infer(self, x: Shape) -> Inferred:
        flat = needs_spatial(x, "conv")
        if flat:
            return flat
        c = x[0]
        problems: list[Problem] = []
        problems += _groups_problems(c, self.filters, self.groups)
        sizes, window, spatial_problems = self.spatial(x, "kernel")
        problems += spatial_problems
        # With groups that do not divide (an error above), count one channel per group, in
        # the weight and the MACs alike, so that the row stays consistent.
        per_group = max(c // self.groups, 1)
        tensors: dict[str, tuple[Shape, bool]] = {
            "weight": ((self.filters, per_group, *self.kernel), True),
        }
        if self.bias:
            tensors["bias"] = ((self.filters,), True)
        if sizes is None:
            return Inferred(None, tensors, window=window, problems=problems)
        per_output = math.prod(self.kernel) * per_group
        macs = self.filters * math.prod(sizes) * per_output
        return Inferred((self.filters, *sizes), tensors, macs, window, problems=problems)


def _filter_text(config: Conv | Deconv, extra: str = "") -> str:
    """`conv 16 3x3 stride=2 pad=1 ... relu`: the spec line of a conv or deconv, defaults left out."""
    parts = [f"{config.kind} {config.filters} {kernel_text(config.kernel)}"]
    if any(s != 1 for s in config.stride):
        parts.append(f"stride={size_text(config.stride)}")
    parts += [padding_text(config.pad), extra]
    if any(d != 1 for d in config.dilation):
        parts.append(f"dilation={size_text(config.dilation)}")
    if config.groups != 1:
        parts.append(f"groups={config.groups}")
    if not config.bias:
        parts.append("bias=false")
    if config.activation:
        parts.append(config.activation.short())
    return " ".join(p for p in parts if p)


def _groups_problems(channels: int, filters: int, groups: int) -> list[Problem]:
    if not (channels % groups or filters % groups):
        return []
    return [
        Problem(
            "error",
            "groups-mismatch",
            f"groups={groups} must divide both the {channels} input channels and the {filters} filters",
            _groups_help(channels, filters),
            "groups",
        )
    ]


def _groups_help(channels: int, filters: int) -> str:
    common = math.gcd(channels, filters)
    choices = [g for g in range(2, common + 1) if common % g == 0]
    if channels == filters:
        return f"groups={channels} makes it depthwise; divisors that work: 1, " + ", ".join(
            map(str, choices[:8])
        )
    return "groups that divide both: 1" + "".join(f", {g}" for g in choices[:8])


@record
class Deconv(LayerConfig):
    """Transposed convolution (ONNX ConvTranspose, PyTorch ConvTranspose2d)."""

    example: ClassVar[str] = "deconv 16 2x2 stride=2"
    foreign_names: ClassVar[dict[str, str]] = {"convtranspose2d": "deconv", "conv2dtranspose": "deconv"}

    kind: ClassVar[str] = "deconv"
    prefix: ClassVar[str] = "deconv"
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel")
    flags: ClassVar[dict] = ACTIVATION_FLAGS
    arguments: ClassVar[dict[str, Argument]] = {
        "filters": Argument("int", POSITIVE),
        "kernel": Argument("size", SIZE),
        "stride": Argument("size", SIZE),
        "pad": Argument("padding", PADDING),
        "output_pad": Argument(
            "size", cs.tuple_schema([cs.int_schema(ge=0)], variadic_item_index=0, max_length=3)
        ),
        "dilation": Argument("size", SIZE),
        "groups": Argument("int", POSITIVE),
        "bias": Argument("bool", cs.bool_schema()),
        "activation": Argument("activation", ACTIVATION),
    }

    filters: int
    kernel: Size
    stride: Size = (1, 1)
    pad: Padding = (0, 0, 0, 0)  # crops of the full output, or `same`: the input times the stride
    output_pad: Size = (0, 0)
    dilation: Size = (1, 1)
    groups: int = 1
    bias: bool = True
    activation: Optional[Activation] = None

    def __post_init__(self) -> None:
        fit_defaults(self, len(self.kernel))

    @property
    def activation_name(self) -> str | None:
        return self.activation.name if self.activation else None

    def short(self) -> str:
        extra = f"output_pad={size_text(self.output_pad)}" if any(self.output_pad) else ""
        return _filter_text(self, extra)

    def resolved(self) -> tuple[Pads, Size]:
        """Explicit (top, bottom, left, right) crops and output_pad. `same` makes the output
        the input times the stride, as Keras' Conv2DTranspose(padding='same') does: the crop
        is the forward conv's `same` padding (the odd one at the end); a kernel smaller than
        the stride adds output_pad instead."""
        if self.pad != "same":
            return self.pad, self.output_pad if any(self.output_pad) else (0,) * len(self.kernel)
        crops: list[int] = []
        extras: list[int] = []
        for k, s, d in zip(self.kernel, self.stride, self.dilation):
            total = d * (k - 1) + 1 - s
            crops += [total // 2, total - total // 2] if total >= 0 else [0, 0]
            extras.append(max(-total, 0))
        return tuple(crops), tuple(extras)

    def infer(self, x: Shape) -> Inferred:
        flat = needs_spatial(x, "deconv")
        if flat:
            return flat
        c = x[0]
        problems: list[Problem] = []
        mismatch = rank_problem(x, self.kernel, self.stride, self.dilation, self.resolved()[0])
        if mismatch:
            return Inferred(None, problems=[mismatch])
        if self.pad == "same" and any(self.output_pad):
            return Inferred(
                None,
                problems=[
                    Problem(
                        "error",
                        "invalid-argument",
                        "pad=same sets the output to the input times the stride; output_pad has nothing to add",
                        "remove output_pad, or give the pads: "
                        + _deconv_scale_help(self.kernel, self.stride, self.dilation),
                        "output_pad",
                    )
                ],
            )
        problems += _groups_problems(c, self.filters, self.groups)
        pad, output_pad = self.resolved()
        problems += _output_pad_problems(output_pad, self.stride, self.dilation)
        sizes = []
        for n, k, s, d, (p0, p1), op in zip(
            x[1:], self.kernel, self.stride, self.dilation, pad_pairs(pad), output_pad
        ):
            size = (n - 1) * s - p0 - p1 + d * (k - 1) + op + 1
            if size <= 0 and not problems:
                problems.append(
                    Problem(
                        "error",
                        "empty-output",
                        f"output size would be {size}: ({n} - 1)·{s} - {p0 + p1} + {d}·({k} - 1) + {op} + 1",
                        "reduce the padding",
                        "pad",
                    )
                )
            sizes.append(size)
        tensors: dict[str, tuple[Shape, bool]] = {
            "weight": ((c, max(self.filters // self.groups, 1), *self.kernel), True),
        }
        if self.bias:
            tensors["bias"] = ((self.filters,), True)
        if any(p.severity == "error" for p in problems):
            return Inferred(None, tensors, problems=problems)
        macs = c * math.prod(x[1:]) * self.filters * math.prod(self.kernel) // self.groups
        return Inferred((self.filters, *sizes), tensors, macs, problems=problems)


def _output_pad_problems(output_pad: Size, stride: Size, dilation: Size) -> list[Problem]:
    for op, s, d in zip(output_pad, stride, dilation):
        if op >= max(s, d):
            return [
                Problem(
                    "error",
                    "invalid-argument",
                    f"output_pad {op} must be smaller than the stride or the dilation",
                    "output_pad only picks among the sizes a stride allows",
                    "output_pad",
                )
            ]
    return []


def _deconv_scale_help(kernel: Size, stride: Size, dilation: Size) -> str:
    """The pads that make a deconv multiply the size by its stride, as `same` would:
    (n-1)·s - 2p + d·(k-1) + 1 + output_pad = n·s, so 2p = d·(k-1) + 1 - s + output_pad."""
    pads: list[int] = []
    extras: list[int] = []
    for k, s, d in zip(kernel, stride, dilation):
        extent = d * (k - 1) + 1
        if extent < s:
            return "a stride-S deconv with kernel S and no padding multiplies the size by S"
        extra = (extent - s) % 2
        if extra >= max(s, d):  # output_pad must stay below the stride or the dilation
            return "a stride-S deconv with kernel S and no padding multiplies the size by S"
        pads.append((extent - s + extra) // 2)
        extras.append(extra)
    pad, output_pad = size_text(tuple(pads)), size_text(tuple(extras))
    return f"to multiply the size by {size_text(stride)}: pad={pad}" + (
        f" output_pad={output_pad}" if any(extras) else ""
    )
