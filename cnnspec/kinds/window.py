"""Sliding-window arithmetic shared by conv, deconv and pool: output size per axis,
`same` padding, and the findings (dropped pixels, kernel larger than its input)."""

from __future__ import annotations

import math
from typing import Literal

from ..base.records import record
from .base import (
    MAP_FORMS,
    LayerConfig,
    Padding,
    Pads,
    Problem,
    Shape,
    Size,
    Window,
    axis_names,
    fit_defaults,
    format_shape,
)


def resolve_same(n: int, extent: int, stride: int) -> tuple[int, int]:
    """Pads (begin, end) so that output = ceil(n / stride); odd pixel at the end (SAME_UPPER)."""
    out = -(-n // stride)
    total = max((out - 1) * stride + extent - n, 0)
    return total // 2, total - total // 2


def _same_help(sizes: Size, extent: Size, stride: Size) -> str:
    """Why `same` pads one side more, and the symmetric pad that keeps the output size.

    The total pad is (out - 1)·s + extent - n with out = ceil(n / s): odd at stride 1 only
    for an even kernel; at a larger stride it depends on the input size as well."""
    pads, causes = [], []
    for n, e, s in zip(sizes, extent, stride):
        out = -(-n // s)
        total = max((out - 1) * s + e - n, 0)
        symmetric = -(-total // 2)
        pads.append(symmetric if (n + 2 * symmetric - e) // s + 1 == out else None)
        if total % 2:
            causes.append("the even kernel" if s == 1 else f"stride {s} on a size of {n}")
    cause = " and ".join(dict.fromkeys(causes))
    if None not in pads:
        text = size_text(tuple(p for p in pads if p is not None))
        return (
            f"the odd total pad comes from {cause}; pad={text} pads both sides evenly and gives the same size"
        )
    if all(s == 1 for s in stride):
        return "use an odd kernel for symmetric padding"
    return f"the odd total pad comes from {cause}; an input size divisible by the stride pads evenly"


# What each spatial axis calls its two sides and one step along it, for messages.
SIDES = {"length": "begin/end", "depth": "front/back", "height": "top/bottom", "width": "left/right"}
UNITS = {"length": "position", "depth": "slice", "height": "row", "width": "column"}


def joined(words: list[str]) -> str:
    """['depth', 'height', 'width'] -> 'depth, height and width'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


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


def size_text(p: Size) -> str:
    """One number where every axis is the same (`2`), else one per axis (`1x2x2`)."""
    return str(p[0]) if len(set(p)) == 1 else "x".join(map(str, p))


pair_text = size_text


def kernel_text(p: Size) -> str:
    """A kernel is written with every axis (`3x3`, `3x3x3`; a 1-D one is one number)."""
    return "x".join(map(str, p))


def pad_pairs(pads: Pads) -> list[tuple[int, int]]:
    """(top, bottom, left, right) -> [(top, bottom), (left, right)]: begin and end per axis."""
    return [(pads[i], pads[i + 1]) for i in range(0, len(pads), 2)]


class Windowed(LayerConfig):
    """Shared by conv and pool: kernel, stride, padding, dilation along each spatial axis."""

    def __post_init__(self) -> None:
        fit_defaults(self, len(self._kernel()))

    def uneven_same_matters(self) -> bool:
        """Whether uneven `same` padding changes the values (worth the asymmetric-same warning)."""
        return True

    def _kernel(self) -> Size:
        return self.kernel  # type: ignore[attr-defined]

    def _stride(self) -> Size:
        return self.stride  # type: ignore[attr-defined]

    def _dilation(self) -> Size:
        return (1,) * len(self._kernel())

    def _ceil(self) -> bool:
        return False

    def explain(self, x: Shape, y: Shape, pads: tuple[int, ...] | None) -> str:
        if pads is None or len(x) < 2 or len(x) - 1 != len(self._kernel()):
            return super().explain(x, y, pads)
        first = window_axis(
            x[1], self._kernel()[0], self._stride()[0], self._dilation()[0], pads[0], pads[1], self._ceil()
        )
        return f"{axis_names(len(x) - 1)[0]}: {first.arithmetic}"

    def resolved_pads(self, sizes: Size) -> Pads:
        """The pads as written, or `same` resolved against the input sizes."""
        pad = self.pad  # type: ignore[attr-defined]
        if pad != "same":
            return pad
        extent = [d * (k - 1) + 1 for k, d in zip(self._kernel(), self._dilation())]
        return tuple(p for n, e, s in zip(sizes, extent, self._stride()) for p in resolve_same(n, e, s))

    def spatial(self, x: Shape, what: str) -> tuple[Size | None, Window, list[Problem]]:
        kernel, stride, dilation = self._kernel(), self._stride(), self._dilation()
        sizes = x[1:]
        extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        pads = self.resolved_pads(sizes)
        window = Window(extent, stride, pads)
        rank = len(sizes)
        if not (len(kernel) == len(stride) == len(dilation) == rank and len(pads) == 2 * rank):
            mismatch = rank_problem(x, kernel, stride, dilation, pads)
            assert mismatch is not None
            return None, window, [mismatch]
        problems: list[Problem] = []
        begins, ends = pads[::2], pads[1::2]
        if self.pad == "same" and begins != ends and self.uneven_same_matters():  # type: ignore[attr-defined]
            problems.append(_uneven_same(what, kernel, stride, sizes, extent, zip(begins, ends)))
        axes, findings, ceil = [], [], self._ceil()
        for n, k, s, d, p0, p1 in zip(sizes, kernel, stride, dilation, begins, ends):
            result = window_axis(n, k, s, d, p0, p1, ceil)
            axes.append(result.size)
            findings.append(_axis_finding(what, kernel, n, k, s, d, p0 + p1, result))
        if any(findings):
            problems += _axis_problems(x, findings)
        if problems and any(p.severity == "error" for p in problems):
            return None, window, problems
        return tuple(axes), window, problems


def _uneven_same(what: str, kernel: Size, stride: Size, sizes: Size, extent: Size, pairs) -> Problem:
    """`same` padding that puts more at the end than the beginning of some axis."""
    sides = ", ".join(f"{SIDES[n]} {b}/{e}" for n, (b, e) in zip(axis_names(len(sizes)), pairs))
    return Problem(
        "warning",
        "asymmetric-same",
        f"pad=same with a {kernel_text(kernel)} {what} and stride {size_text(stride)} on a "
        f"{format_shape(sizes)} input pads unevenly: {sides} "
        f"(the extra {'row/column' if len(sizes) == 2 else 'one'} goes at the end, as ONNX "
        "SAME_UPPER and TensorFlow do; PyTorch's padding='same' differs)",
        _same_help(sizes, extent, stride),
        "pad",
    )


def _axis_problems(x: Shape, findings: list[_AxisFinding | None]) -> list[Problem]:
    """Each axis's finding, said once for all axes when they all went wrong alike (maps of
    equal sides usually do)."""
    names = axis_names(len(x) - 1)
    if len(findings) > 1 and findings[0] and all(f == findings[0] for f in findings):
        return [findings[0].problem(x, list(names))]
    return [f.problem(x, [name]) for f, name in zip(findings, names) if f]


def rank_problem(x: Shape, *sizes: tuple[int, ...]) -> Problem | None:
    """A kernel of another rank than its input (a config built in Python, not from a spec,
    whose sizes the binder fits to the network's input)."""
    rank = len(x) - 1
    if all(len(s) == rank for s in sizes[:-1]) and len(sizes[-1]) == 2 * rank:
        return None
    need = MAP_FORMS.get(len(sizes[0]), f"{len(sizes[0])}-D")
    return Problem(
        "error",
        "rank-mismatch",
        f"sizes {kernel_text(sizes[0])} have {len(sizes[0])} ax{'is' if len(sizes[0]) == 1 else 'es'}, "
        f"but the input {format_shape(x)} has {rank}",
        f"these sizes need a {need} input (a network derived from a base keeps the base's axes)",
        "kernel",
    )


@record
class _AxisFinding:
    """What went wrong along one axis, worded so that both axes can share one message."""

    severity: Literal["error", "warning"]
    code: str
    template: str  # {axis}, {unit}, {units}, {verb} are filled in by `problem`
    help: str
    field: str
    count: int = 0

    def problem(self, x: Shape, axes: list[str]) -> Problem:
        unit = [UNITS.get(a, "position") for a in axes]
        units = joined(unit if self.count == 1 else [u + "s" for u in unit])
        verb = "is" if self.count == 1 and len(axes) == 1 else "are"
        text = self.template.format(
            axis=joined(axes), unit=joined(unit), units=units, verb=verb, shape=format_shape(x)
        )
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


def pads_text(pads: Pads) -> str:
    """`1`, `1x2` (symmetric per axis) or `(0,1,0,1)` (begin and end of each axis)."""
    pairs = pad_pairs(pads)
    if all(b == e for b, e in pairs):
        return size_text(tuple(b for b, _ in pairs))
    return "(" + ",".join(map(str, pads)) + ")"


def padding_text(pad: Padding) -> str:
    if pad == "same":
        return "pad=same"
    return "" if not any(pad) else f"pad={pads_text(pad)}"
