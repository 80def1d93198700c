"""Sliding-window arithmetic shared by conv, deconv and pool: output size per axis,
`same` padding, and the findings (dropped pixels, kernel larger than its input)."""

from __future__ import annotations

import math
from typing import Literal

from ..base.records import record
from .base import LayerConfig, Padding, Problem, Shape, Window, format_shape


def resolve_same(n: int, extent: int, stride: int) -> tuple[int, int]:
    """Pads (begin, end) so that output = ceil(n / stride); odd pixel at the end (SAME_UPPER)."""
    out = -(-n // stride)
    total = max((out - 1) * stride + extent - n, 0)
    return total // 2, total - total // 2


def _same_help(hw: tuple[int, int], extent: tuple[int, int], stride: tuple[int, int], kernel) -> str:
    """Why `same` pads one side more, and the symmetric pad that keeps the output size.

    The total pad is (out - 1)·s + extent - n with out = ceil(n / s): odd at stride 1 only
    for an even kernel; at a larger stride it depends on the input size as well."""
    pads, causes = [], []
    for n, e, s in zip(hw, extent, stride):
        out = -(-n // s)
        total = max((out - 1) * s + e - n, 0)
        symmetric = -(-total // 2)
        pads.append(symmetric if (n + 2 * symmetric - e) // s + 1 == out else None)
        if total % 2:
            causes.append("the even kernel" if s == 1 else f"stride {s} on a size of {n}")
    cause = " and ".join(dict.fromkeys(causes))
    if None not in pads:
        text = str(pads[0]) if pads[0] == pads[1] else f"{pads[0]}x{pads[1]}"
        return (
            f"the odd total pad comes from {cause}; pad={text} pads both sides evenly and gives the same size"
        )
    if all(s == 1 for s in stride):
        return "use an odd kernel for symmetric padding"
    return f"the odd total pad comes from {cause}; an input size divisible by the stride pads evenly"


@record
class AxisResult:
    """A sliding window along one axis: the output size, its arithmetic, and the rows left out."""

    size: int
    arithmetic: str
    unused: int  # input rows/columns (not padding) that no window reaches


def window_axis(n: int, kernel: int, stride: int, dilation: int, p0: int, p1: int, ceil: bool) -> AxisResult:
    """floor((n + p0 + p1 - d*(f-1) - 1) / s) + 1, or the ceil form used by pooling."""
    extent = dilation * (kernel - 1) + 1
    span = n + p0 + p1 - extent
    rounding = "ceil" if ceil else "floor"
    if ceil and span >= 0:
        size = -(-span // stride) + 1
        # ONNX/PyTorch: a window that would start in the right padding is dropped.
        if (size - 1) * stride >= n + p0:
            size -= 1
        unused = 0
    else:
        size = span // stride + 1 if span >= 0 else math.floor(span / stride) + 1
        # After the last window, span % stride rows are left. A window narrower than its
        # stride leaves stride - extent rows after every window by design (a 1x1 conv with
        # stride 2 reads every other row): a remainder no wider than that gap is the same
        # pattern, not an edge the user loses.
        gap = max(stride - extent, 0)
        left = span % stride if span >= 0 else 0
        # The tail holds the right padding, and with a left padding wider than the input
        # it can reach into that too: count only the real rows in it.
        unused = max(min(left - p1, n), 0) if left > gap else 0
    arithmetic = f"{rounding}(({n} + {p0 + p1} - {extent}) / {stride}) + 1 = {size}"
    return AxisResult(size, arithmetic, unused)


def pair_text(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def kernel_text(p: tuple[int, int]) -> str:
    return f"{p[0]}x{p[1]}"


class Windowed(LayerConfig):
    """Shared by conv and pool: kernel, stride, padding, dilation over H and W."""

    def uneven_same_matters(self) -> bool:
        """Whether uneven `same` padding changes the values (worth the asymmetric-same warning)."""
        return True

    def _stride(self) -> tuple[int, int]:
        return self.stride  # type: ignore[attr-defined]

    def _dilation(self) -> tuple[int, int]:
        return (1, 1)

    def _ceil(self) -> bool:
        return False

    def explain(self, x: Shape, y: Shape, pads: tuple[int, ...] | None) -> str:
        if pads is None or len(x) != 3:
            return super().explain(x, y, pads)
        kernel: tuple[int, int] = self.kernel  # type: ignore[attr-defined]
        h = window_axis(
            x[1], kernel[0], self._stride()[0], self._dilation()[0], pads[0], pads[1], self._ceil()
        )
        return f"height: {h.arithmetic}"

    def spatial(self, x: Shape, what: str) -> tuple[tuple[int, int] | None, Window, list[Problem]]:
        kernel: tuple[int, int] = self.kernel  # type: ignore[attr-defined]
        stride, dilation = self._stride(), self._dilation()
        extent = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
        _, h, w = x
        problems: list[Problem] = []
        pad = self.pad  # type: ignore[attr-defined]
        if pad == "same":
            top, bottom = resolve_same(h, extent[0], stride[0])
            left, right = resolve_same(w, extent[1], stride[1])
            if (top != bottom or left != right) and self.uneven_same_matters():
                problems.append(
                    Problem(
                        "warning",
                        "asymmetric-same",
                        f"pad=same with a {kernel_text(kernel)} {what} and stride {pair_text(stride)} on a "
                        f"{h}x{w} input pads unevenly: top/bottom {top}/{bottom}, left/right {left}/{right} "
                        "(the extra row/column goes at the end, as ONNX SAME_UPPER and "
                        "TensorFlow do; PyTorch's padding='same' differs)",
                        _same_help((h, w), extent, stride, kernel),
                        "pad",
                    )
                )
        else:
            top, bottom, left, right = pad
        pads = (top, bottom, left, right)
        window = Window(extent, stride, pads)
        axes, findings = [], []
        for n, k, s, d, p0, p1 in (
            (h, kernel[0], stride[0], dilation[0], top, bottom),
            (w, kernel[1], stride[1], dilation[1], left, right),
        ):
            result = window_axis(n, k, s, d, p0, p1, self._ceil())
            axes.append(result.size)
            findings.append(_axis_finding(what, kernel, n, k, s, d, p0 + p1, result))
        # Square maps usually go wrong the same way along both axes: say it once.
        if findings[0] and findings[0] == findings[1]:
            problems.append(findings[0].problem(x, "height and width", "row and column"))
        else:
            problems += [
                f.problem(x, axis, unit)
                for f, axis, unit in zip(findings, ("height", "width"), ("row", "column"))
                if f
            ]
        if any(p.severity == "error" for p in problems):
            return None, window, problems
        return (axes[0], axes[1]), window, problems


@record
class _AxisFinding:
    """What went wrong along one axis, worded so that both axes can share one message."""

    severity: Literal["error", "warning"]
    code: str
    template: str  # {axis}, {unit}, {units}, {verb} are filled in by `problem`
    help: str
    field: str
    count: int = 0

    def problem(self, x: Shape, axis: str, unit: str) -> Problem:
        units = unit if self.count == 1 else unit.replace("row", "rows").replace("column", "columns")
        verb = "is" if self.count == 1 and " and " not in unit else "are"
        text = self.template.format(axis=axis, unit=unit, units=units, verb=verb, shape=format_shape(x))
        return Problem(self.severity, self.code, text, self.help, self.field)


def _axis_finding(what, kernel, n, k, s, d, pad, result: AxisResult) -> _AxisFinding | None:
    if k > n + pad:
        return _AxisFinding(
            "error",
            "kernel-too-large",
            f"{what} {kernel_text(kernel)} is larger than its padded input along the {{axis}} "
            f"({n} + {pad} padding): {result.arithmetic}",
            "use a smaller kernel, pad=same, or remove a pooling layer before it",
            "kernel",
        )
    if result.size <= 0:
        return _AxisFinding(
            "error",
            "empty-output",
            f"output {{axis}} would be {result.size}: {result.arithmetic} "
            f"(dilation {d} widens the {k}-wide {what} to {d * (k - 1) + 1})",
            "reduce dilation or add padding",
            "dilation" if d > 1 else "kernel",
        )
    if result.unused:
        return _AxisFinding(
            "warning",
            "dropped-pixels",
            f"the last {result.unused} {{units}} of the {{shape}} input {{verb}} never covered: "
            f"{result.arithmetic} (the floor drops the remainder)",
            "use pad=same, `ceil` (pooling), or an input size that fits the stride",
            "stride" if s != k else "kernel",
            result.unused,
        )
    return None


def padding_text(pad: Padding) -> str:
    if pad == "same":
        return "pad=same"
    t, b, l_, r = pad
    if t == b == l_ == r:
        return "" if t == 0 else f"pad={t}"
    if t == b and l_ == r:
        return f"pad={t}x{l_}"
    return f"pad=({t},{b},{l_},{r})"
