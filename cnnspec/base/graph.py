"""Walks of a layer graph: a list of nodes in definition order (a topological order),
each naming the nodes it reads, as torch.fx and ONNX keep graphs. Who reads a node is
derived here, never stored twice. Any record with `name` and `inputs` is a node: the
resolved `Layer`, the importer's `GraphLayer`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol


class Node(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> tuple[str, ...] | list[str]: ...


def readers(nodes: Iterable[Node], outputs: Iterable[str] = ()) -> Counter:
    """How many times each name is read, by a node or as a graph output."""
    uses: Counter = Counter()
    for node in nodes:
        uses.update(node.inputs)
    uses.update(outputs)
    return uses


def unread(nodes: Sequence[Node]) -> list[str]:
    """Nodes no other node reads, in definition order."""
    read = readers(nodes)
    return [node.name for node in nodes if node.name not in read]


def descendants(nodes: Iterable[Node], roots: set[str]) -> set[str]:
    """`roots` and every node that reads one of them, directly or not (one pass: the
    definition order is topological)."""
    found = set(roots)
    for node in nodes:
        if any(name in found for name in node.inputs):
            found.add(node.name)
    return found


def ancestors(nodes: Iterable[Node], roots: Iterable[str]) -> set[str]:
    """`roots` and every node they read, directly or not; names outside the graph (the
    input) are left out. Iterative: a chain may be longer than the recursion limit."""
    by_name = {node.name: node for node in nodes}
    found: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or name not in by_name:
            continue
        found.add(name)
        todo.extend(by_name[name].inputs)
    return found
