"""Automatic names (conv1, bn1, ...) and the checks on names people choose."""

from __future__ import annotations

from types import MappingProxyType

from ..base.diagnostics import error, with_call_sites
from ..kinds import KINDS
from .expand import Raw, Ref
from .network import RESERVED_NAMES, TORCH_MODULE_ATTRIBUTES, Layer


def name_layers(raws: list[Raw], counts: dict[str, int], taken: set[str], diagnostics) -> list[Layer]:
    """conv1, conv2, bn1, ...: numbered by kind in order of appearance, names or not;
    each layer's inputs named too (an index into `raws` becomes that layer's name)."""
    layers: list[Layer] = []
    for raw in raws:
        prefix = KINDS[raw.word].name_prefix(raw.config)
        counts[prefix] = counts.get(prefix, 0) + 1
        name = raw.alias or f"{prefix}{counts[prefix]}"
        if name in RESERVED_NAMES or name in TORCH_MODULE_ATTRIBUTES:
            what = "the exported graph" if name in ("input", "output", "in") else "cnnspec's PyTorch backend"
            diagnostics.append(
                with_call_sites(
                    error(
                        "reserved-name",
                        f"'{name}' cannot name a layer: {what} uses it",
                        raw.stmt.span,
                        f"choose another name with `as NAME`, e.g. `as {name}_1`",
                    ),
                    raw.calls,
                )
            )
        elif name in taken:
            diagnostics.append(
                error(
                    "duplicate-name",
                    f"a layer named '{name}' already exists in this network",
                    raw.stmt.span,
                    "choose another name with `as NAME`",
                )
            )
        taken.add(name)
        layers.append(
            Layer(
                name=name,
                config=raw.config,
                span=raw.stmt.span,
                arg_spans=MappingProxyType(raw.arg_spans),
                expect=(raw.asserted or raw.stmt).expect,
                expect_span=(raw.asserted or raw.stmt).expect_span,
                expect_text=(raw.asserted or raw.stmt).expect_text,
                calls=raw.calls,
                block=raw.block,
                inputs=tuple(ref if isinstance(ref, str) else layers[ref].name for ref in raw.inputs),
                residual=raw.residual,
            )
        )
    return layers


def ref_name(ref: Ref, layers: list[Layer]) -> str:
    return ref if isinstance(ref, str) else layers[ref].name
