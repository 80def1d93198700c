"""`record` (cnnspec/records.py): immutable to the type checker; at run time equal, hashed
and printed exactly as the frozen dataclass it stands for."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
from dataclasses import field

import pytest

from cnnspec.base.records import record
from tests.conftest import ROOT


def _twins(slots: bool):
    """The same class as a record and as a frozen dataclass."""

    def body():
        class Node:
            name: str
            size: tuple[int, ...]
            note: str = field(default="", compare=False)
            secret: str = field(default="s", repr=False)
            tags: tuple[str, ...] = ()

        return Node

    return record(slots=slots)(body()), dataclasses.dataclass(frozen=True, slots=slots)(body())


@pytest.mark.parametrize("slots", [False, True])
def test_a_record_behaves_as_a_frozen_dataclass(slots):
    ours, theirs = _twins(slots)
    args = [
        ("conv1", (6, 28, 28)),
        ("conv1", (6, 28, 28), "other note"),
        ("pool", (6, 14, 14), "", "t", ("a",)),
    ]
    for a in args:
        assert repr(ours(*a)) == repr(theirs(*a))
        for b in args:
            assert (ours(*a) == ours(*b)) == (theirs(*a) == theirs(*b))
            if ours(*a) == ours(*b):
                assert hash(ours(*a)) == hash(ours(*b))
    assert ours("a", (1,)) != theirs("a", (1,))  # another class is never equal
    assert ours("a", (1,)).__eq__(("a", (1,))) is NotImplemented
    assert len({ours(*a) for a in args}) == 2  # the note is not compared
    assert dataclasses.replace(ours("a", (1,)), name="b") == ours("b", (1,))
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(theirs)]
    assert hasattr(ours("a", (1,)), "__dict__") is not slots
    node = ours("a", (1, 2), "n", "x", ("t",))
    assert copy.deepcopy(node) == node and repr(copy.copy(node)) == repr(node)


def test_records_cross_process_boundaries():
    """DataLoader workers and torchrun ranks receive records by pickle."""
    from cnnspec.base.diagnostics import Diagnostic, Span
    from cnnspec.language import syntax

    span = Span("n.cnn", 3, 5, 9)
    value = syntax.Value("dims", (3, 3), span)  # a slots record
    diagnostic = Diagnostic("error", "bad-kernel", "too large", span, "use 3x3", ("note",))
    for original in (span, value, diagnostic):
        assert pickle.loads(pickle.dumps(original)) == original


def test_a_subclass_record_compares_its_own_fields_too():
    @record
    class Base:
        a: int

    @record
    class Child(Base):
        b: int = 0

    assert Child(1, 2) != Child(1, 3) and Child(1, 2) == Child(1, 2)
    assert (
        Child(1, 0) != Base(1)
        and repr(Child(1, 2)) == "test_a_subclass_record_compares_its_own_fields_too.<locals>.Child(a=1, b=2)"
    )


def test_the_type_checker_refuses_assignment_to_a_record_field(tmp_path):
    snippet = tmp_path / "mutate.py"
    snippet.write_text(
        "from cnnspec.base.diagnostics import Span\n"
        "from cnnspec.kinds import Conv\n"
        "span = Span('a.cnn', 1, 1)\n"
        "span.line = 2\n"
        "def widen(conv: Conv) -> None:\n"
        "    conv.filters = 3\n"
        "print(hash(span), Conv)\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental", str(snippet)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1, out.stdout
    assert 'mutate.py:4: error: Property "line" defined in "Span" is read-only' in out.stdout
    assert 'mutate.py:6: error: Property "filters" defined in "Conv" is read-only' in out.stdout
    assert out.stdout.count("error:") == 2
