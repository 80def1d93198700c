"""Joins: `add`, `concat`, `multiply` read every tensor named on their line."""

from __future__ import annotations

import math
from typing import ClassVar

from ..base.records import record
from .base import Inferred, LayerConfig, Problem, Shape, format_shape


def _listed(labels: list[str], shapes: list[Shape]) -> str:
    return ", ".join(f"{label} {format_shape(shape)}" for label, shape in zip(labels, shapes))


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
    if len(target) == 3 and len(other) == 3 and other[1] >= target[1] > 0:
        stride = other[1] // target[1]
        return f"conv {target[0]} 1x1" + (f" stride={stride}" if stride > 1 else "")
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
        if ranks == {3} and len({s[1:] for s in shapes}) == 1:
            return Inferred((sum(s[0] for s in shapes), *shapes[0][1:]))
        return Inferred(
            None,
            problems=[
                Problem(
                    "error",
                    "merge-shape-mismatch",
                    f"concat joins along the channels and needs equal height and width, but gets "
                    f"{_listed(labels, shapes)}",
                    "resize one branch (pool, stride or upsample) so that H and W match",
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
            gate = len(shape) == 3 and len(full) == 3 and shape == (full[0], 1, 1)
            if shape != full and not gate:
                return Inferred(
                    None,
                    problems=[
                        Problem(
                            "error",
                            "merge-shape-mismatch",
                            f"multiply needs equal shapes or a Cx1x1 gate with the same C, but gets "
                            f"{_listed(labels, shapes)}",
                            f"a gate for {format_shape(full)} is {full[0]}x1x1 (globalpool, then conv {full[0]} 1x1)"
                            if len(full) == 3
                            else "make the shapes match",
                        )
                    ],
                )
        return Inferred(full)
