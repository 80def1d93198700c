"""`slice`, `split`'s parts and `shuffle`: layers that pick or reorder channels."""

from __future__ import annotations

from typing import ClassVar, Optional

from pydantic_core import core_schema as cs

from ..base.records import record
from .base import POSITIVE, Argument, Inferred, LayerConfig, Problem, Shape

RANGE = cs.tuple_schema([cs.int_schema(), cs.nullable_schema(cs.int_schema())])


@record
class Slice(LayerConfig):
    """`slice START:END`: channels START to END-1 (END `end`: to the last; a negative one
    counts from the end, as in Python). `split` writes its parts as slices too: part
    `part` of `parts` equal ones, or of the given `sizes`."""

    example: ClassVar[str] = "slice 0:16"
    foreign_names: ClassVar[dict[str, str]] = {"narrow": "slice"}

    kind: ClassVar[str] = "slice"
    prefix: ClassVar[str] = "slice"
    positional: ClassVar[tuple[str, ...]] = ("channels",)
    arguments: ClassVar[dict[str, Argument]] = {
        "channels": Argument("range", cs.nullable_schema(RANGE)),
        "part": Argument("int", cs.int_schema(ge=0)),
        "parts": Argument("int", cs.int_schema(ge=0)),
        "sizes": Argument("int", cs.tuple_schema([POSITIVE], variadic_item_index=0)),
    }

    channels: Optional[tuple[int, Optional[int]]] = None
    part: int = 0
    parts: int = 0  # a part of `split N`: N equal parts
    sizes: tuple[int, ...] = ()  # a part of `split (A, B, ...)`

    def short(self) -> str:
        if self.channels is not None:
            start, end = self.channels
            return f"slice {start}:{'end' if end is None else end}"
        what = self.parts if self.parts else "(" + ",".join(map(str, self.sizes)) + ")"
        return f"split {what} part {self.part + 1}"

    def bounds(self, channels: int) -> tuple[int, int] | None:
        """[start, end) of the channels this layer keeps; None when it cannot be computed."""
        if self.channels is not None:
            start, end = self.channels
            end = channels if end is None else end
            start, end = (start + channels if start < 0 else start), (end + channels if end < 0 else end)
            return (start, end) if 0 <= start < end <= channels else None
        if self.parts:
            if channels % self.parts:
                return None
            size = channels // self.parts
            return (self.part * size, (self.part + 1) * size)
        if sum(self.sizes) != channels:
            return None
        start = sum(self.sizes[: self.part])
        return (start, start + self.sizes[self.part])

    def infer(self, x: Shape) -> Inferred:
        bounds = self.bounds(x[0])
        if bounds is None:
            # A split's parts fail together: the first one says why.
            problems = [self._problem(x[0])] if self.channels is not None or self.part == 0 else []
            return Inferred(None, problems=problems)
        start, end = bounds
        return Inferred((end - start, *x[1:]))

    def _problem(self, channels: int) -> Problem:
        if self.channels is not None:
            start, end = self.channels
            written = f"{start}:{'end' if end is None else end}"
            real_start = start + channels if start < 0 else start
            real_end = channels if end is None else (end + channels if end < 0 else end)
            if not (0 <= real_start <= channels and 0 <= real_end <= channels):
                message = f"slice {written} reaches outside the {channels} channels (0:{channels})"
                help = f"ranges run from 0 (or -{channels}) to {channels} (or `end`)"
            else:
                message = f"slice {written} is empty: it keeps channels {real_start} to {real_end - 1}"
                help = "START:END keeps START to END-1: END must be after START"
            return Problem("error", "slice-outside", message, help, "channels")
        if self.parts:
            return Problem(
                "error",
                "split-mismatch",
                f"split {self.parts} needs the channels to divide into {self.parts} equal parts, "
                f"but there are {channels}",
                f"parts that divide them: {_divisors(channels)}"
                + f"; or give the sizes, e.g. split ({channels // 2}, {channels - channels // 2})",
                "parts",
            )
        total = sum(self.sizes)
        last = channels - sum(self.sizes[:-1])
        fixed = ", ".join(map(str, (*self.sizes[:-1], last)))
        return Problem(
            "error",
            "split-mismatch",
            f"split sizes {' + '.join(map(str, self.sizes))} = {total} do not add up to the {channels} channels",
            f"make the sizes add up to {channels}" + (f", e.g. split ({fixed})" if last > 0 else ""),
            "sizes",
        )


@record
class Shuffle(LayerConfig):
    """`shuffle GROUPS`: channel shuffle (ShuffleNet). The C channels, read as GROUPS groups
    of C/GROUPS, are interleaved: channel i of group g moves to position i·GROUPS + g, so
    the next grouped conv's groups each see channels from every group before."""

    example: ClassVar[str] = "shuffle 2"
    foreign_names: ClassVar[dict[str, str]] = {"channelshuffle": "shuffle"}

    kind: ClassVar[str] = "shuffle"
    prefix: ClassVar[str] = "shuffle"
    positional: ClassVar[tuple[str, ...]] = ("groups",)
    arguments: ClassVar[dict[str, Argument]] = {"groups": Argument("int", POSITIVE)}

    groups: int

    def short(self) -> str:
        return f"shuffle {self.groups}"

    def infer(self, x: Shape) -> Inferred:
        if x[0] % self.groups:
            problem = Problem(
                "error",
                "groups-mismatch",
                f"shuffle {self.groups}: the {x[0]} channels do not divide into {self.groups} groups",
                f"groups that divide them: {_divisors(x[0])}",
                "groups",
            )
            return Inferred(None, problems=[problem])
        return Inferred(x)


def _divisors(channels: int) -> str:
    """The first few whole numbers above 1 that divide `channels`, for a help line."""
    found = [d for d in range(2, min(channels, 64) + 1) if channels % d == 0]
    return ", ".join(map(str, found[:8])) or "none but 1"
