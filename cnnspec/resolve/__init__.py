"""Surface AST -> flat, named, validated layer lists (the layer graph).

This stage follows `use` between files (`load`), substitutes block arguments and
validates each layer's arguments against its kind (`bind`), expands blocks, `repeat` and
combinators (`expand`), names every layer (`names`) and applies `from BASE` (drop /
freeze / append, `derive`). It knows nothing about shapes."""

from __future__ import annotations

from pathlib import Path

from ..base.diagnostics import Span, did_you_mean, error
from .derive import Resolver
from .load import Workspace, load, looks_like_spec
from .network import (
    INPUT,
    MAX_DEPTH,
    MAX_EXPANSION,
    RESERVED_NAMES,
    TORCH_MODULE_ATTRIBUTES,
    Layer,
    Network,
    Origin,
    Resolved,
)

__all__ = [
    "INPUT",
    "MAX_DEPTH",
    "MAX_EXPANSION",
    "RESERVED_NAMES",
    "TORCH_MODULE_ATTRIBUTES",
    "Layer",
    "Network",
    "Origin",
    "Resolved",
    "looks_like_spec",
    "resolve_sources",
]


def resolve_sources(text: str, path: str, real: Path | None, only: str | None = None) -> Resolved:
    """Parse one file (and what it uses) and resolve the networks it defines."""
    ws = Workspace()
    try:
        start = real.resolve() if real else None
    except (RuntimeError, OSError):  # a symlink loop; the text was read through it anyway
        start = None
    if start is not None:
        ws.read.append(start)
    load(ws, text, path, start, (start,) if start else ())
    resolver = Resolver(ws)
    targets = _targets(ws, path, only)
    for name in targets:
        resolver.network(name)
    networks = {name: net for name, net in resolver.done.items() if net is not None}
    return Resolved(
        networks, [t for t in targets if t in networks], ws.diagnostics, ws.sources, ws.read, ws.files
    )


def _targets(ws: Workspace, path: str, only: str | None) -> list[str]:
    """The networks to resolve: every one the file defines, or the one asked for."""
    main = ws.files.get(path)
    # A network defined twice is reported (duplicate-definition) and checked once.
    targets = list(dict.fromkeys(n.name for n in main.networks)) if main else []
    if main is not None and not main.networks and not main.blocks and not main.uses:
        ws.diagnostics.append(
            error(
                "no-network",
                "this file defines no network",
                Span(path, 1, 1),
                "a spec holds `network NAME { input CxHxW ... }`",
            )
        )
    if only is None:
        return targets
    if main is None:  # with a syntax error, that error is the news
        return []
    if only not in targets:
        hint = did_you_mean(only, targets)
        listing = ", ".join(targets) or "none"
        ws.diagnostics.append(
            error("unknown-network", f"{path} has no network '{only}' (it has: {listing})", None, hint)
        )
        return []
    return [only]
