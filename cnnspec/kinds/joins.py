"""Joins: `add`, `concat`, `multiply` read every tensor named on their line."""

from __future__ import annotations

import math
from typing import ClassVar

from ..base.records import record
from .base import Inferred, LayerConfig, Problem, Shape, axis_names, format_shape
from .window import kernel_text


def _listed(labels: list[str], shapes: list[Shape]) -> str:
    return ", ".join(f"{label} {format_shape(shape)}" for label, shape in zip(labels, shapes))


def _gate(full: Shape) -> Shape:
    """The shape of a per-channel gate for `full`: Cx1x1 for an image, Cx1 for a sequence."""
    return (full[0],) + (1,) * (len(full) - 1)


def _axes_of(shape: Shape) -> str:
    """'height and width' for an image; 'length'; 'depth, height and width'."""
    names = list(axis_names(len(shape) - 1)) if len(shape) > 1 else ["sizes"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _rank_mismatch(kind: str, shapes: list[Shape], labels: list[str]) -> Inferred:
    """Maps of different ranks (a 1-D and a 2-D map) meet: no resize makes them one."""
    message = f"{kind} joins maps with different numbers of axes: {_listed(labels, shapes)}"
    help = "every branch of a network keeps its input's axes; a join reads maps of one rank"
    return Inferred(None, problems=[Problem("error", "merge-shape-mismatch", message, help)])


@record
class _Join(LayerConfig):
    """What every join shares: several inputs, no tensors, no arguments of its own."""

    joins: ClassVar[bool] = True

    def infer(self, x: Shape) -> Inferred:  # one input: passes it through
        return Inferred(output=x)


@record
class Add(_Join):
    """Element-wise sum of equally shaped tensors (ResNet)."""

    example: ClassVar[str] = "add {} { relu }"

    kind: ClassVar[str] = "add"
    prefix: ClassVar[str] = "add"

    def infer_many(self, shapes: list[Shape], labels: list[str], residual: bool = False) -> Inferred:
        if len(set(shapes)) == 1:
            return Inferred(shapes[0])
        if len({len(s) for s in shapes}) > 1 and min(map(len, shapes)) >= 2:
            return _rank_mismatch("add", shapes, labels)
        return Inferred(
            None,
            problems=[
                Problem(
                    "error",
                    "merge-shape-mismatch",
                    f"add needs equal shapes, but gets {_listed(labels, shapes)}",
                    _residual_help(shapes) if residual else _projection_help(shapes),
                )
            ],
        )


def _projection(shapes: list[Shape]) -> str | None:
    """The 1x1 conv that turns the first input that differs into the first input's shape
    (channels, and the stride that shrinks it), or None when no such conv does."""
    target, other = shapes[0], next(s for s in shapes if s != shapes[0])
    if len(target) == len(other) >= 2 and other[1] >= target[1] > 0:
        stride = other[1] // target[1]
        return f"conv {target[0]} {kernel_text((1,) * (len(target) - 1))}" + (
            f" stride={stride}" if stride > 1 else ""
        )
    return None


def _residual_help(shapes: list[Shape]) -> str:
    """`residual`: the first input is the body's end, the other the shortcut's."""
    conv = _projection(shapes)
    if conv is None:
        return "make the shapes match"
    return f"when the body changes the shape, project the input: `shortcut {{ {conv} }}` (or make the shapes match)"


def _projection_help(shapes: list[Shape]) -> str:
    """`add a b` and `add { } { }`: what gives the input that differs the first one's shape."""
    conv = _projection(shapes)
    if conv is None:
        return "make the shapes match"
    return (
        f"give every input the first one's shape {format_shape(shapes[0])}: e.g. `{conv}` on the one that "
        "differs (`from NAME` reads it)"
    )


@record
class Concat(_Join):
    """Concatenation along the channels (or of vectors)."""

    example: ClassVar[str] = "concat {} { relu }"

    kind: ClassVar[str] = "concat"
    prefix: ClassVar[str] = "concat"

    def infer_many(self, shapes: list[Shape], labels: list[str], residual: bool = False) -> Inferred:
        ranks = {len(s) for s in shapes}
        if ranks == {1}:
            return Inferred((sum(s[0] for s in shapes),))
        if len(ranks) == 1 and min(ranks) >= 2 and len({s[1:] for s in shapes}) == 1:
            return Inferred((sum(s[0] for s in shapes), *shapes[0][1:]))
        if len(ranks) > 1:
            return _rank_mismatch("concat", shapes, labels)
        return Inferred(
            None,
            problems=[
                Problem(
                    "error",
                    "merge-shape-mismatch",
                    f"concat joins along the channels and needs equal {_axes_of(shapes[0])}, but gets "
                    f"{_listed(labels, shapes)}",
                    f"resize one branch (pool, stride or upsample) so that the {_axes_of(shapes[0])} match",
                )
            ],
        )


@record
class Multiply(_Join):
    """Element-wise product; a Cx1x1 gate broadcasts over H and W (squeeze-and-excitation)."""

    example: ClassVar[str] = "multiply { globalpool avg; sigmoid }"

    kind: ClassVar[str] = "multiply"
    prefix: ClassVar[str] = "mul"

    def infer_many(self, shapes: list[Shape], labels: list[str], residual: bool = False) -> Inferred:
        full = max(shapes, key=lambda s: (len(s), math.prod(s)))
        for shape in shapes:
            gate = len(shape) == len(full) >= 2 and shape == (full[0],) + (1,) * (len(full) - 1)
            if shape != full and not gate:
                return Inferred(
                    None,
                    problems=[
                        Problem(
                            "error",
                            "merge-shape-mismatch",
                            f"multiply needs equal shapes or a Cx1x1 gate with the same C, but gets "
                            f"{_listed(labels, shapes)}",
                            f"a gate for {format_shape(full)} is {format_shape(_gate(full))} (globalpool, "
                            f"then conv {full[0]} {kernel_text(_gate(full)[1:])})"
                            if len(full) >= 2
                            else "make the shapes match",
                        )
                    ],
                )
        return Inferred(full)
