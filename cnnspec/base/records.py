"""`record`: the immutable dataclass that cnnspec's stages pass to one another.

To mypy (run over cnnspec/ in CI) a record is a frozen dataclass: assigning to a field is
an error. At run time it is a dataclass whose `__init__` the dataclasses module writes, and
whose `__eq__`, `__hash__` and `__repr__` are shared functions reading the fields through
one `operator.attrgetter`. The reason is start-up: dataclasses compiles every generated
method from source text when the class is created, and a frozen one has six: with some
fifty records, frozen dataclasses made a whole `cnnspec check specs/lenet5.cnn` execute
19% more instructions (607M against 492M, valgrind). Equality, hashing and the repr
behave as a frozen dataclass's do (tests/test_base_records.py).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, overload

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - Python 3.10
    from typing_extensions import dataclass_transform

_T = TypeVar("_T")


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        return self.__record_key__(self) == other.__record_key__(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__record_key__(self))


def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_repr__)
    return f"{self.__class__.__qualname__}({shown})"


@overload
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, slots: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(frozen_default=True)
def record(cls: Any = None, /, *, slots: bool = False) -> Any:
    """`@record` or `@record(slots=True)` on a class: an immutable dataclass (see above)."""

    def wrap(klass: Any) -> Any:
        klass = dataclasses.dataclass(klass, repr=False, eq=False, slots=slots)
        fields = dataclasses.fields(klass)
        names = [f.name for f in fields if f.compare]
        # attrgetter of one name returns the value, of several a tuple: either compares.
        klass.__record_key__ = staticmethod(attrgetter(*names)) if names else staticmethod(lambda _: ())
        klass.__record_repr__ = tuple(f.name for f in fields if f.repr)
        klass.__eq__, klass.__hash__, klass.__repr__ = _eq, _hash, _repr
        return klass

    return wrap if cls is None else wrap(cls)
