"""The layer kinds: one class per kind, in one module per family, holding its arguments
(each with the Pydantic schema that validates it), its output-shape rule, its tensors
(hence its parameter count), its multiply-accumulates, an example line and what other
frameworks call it. Each later stage keeps a table keyed by the kind (ONNX lowerings in
`deploy/export.py`, PyTorch factories in `training/modules.py`, ...): see
docs/architecture.md; tests/test_kinds_registry.py checks every table has every kind.

Validation runs on pydantic-core, Pydantic's validation engine, with schemas written
out below: the same checks and messages as Pydantic models, without the ~70 ms that
importing pydantic and building model schemas adds to every `cnnspec check`.

Shapes are channels first, then one size per spatial axis: `(C, L)` for 1-D networks,
`(C, H, W)` for images, `(C, D, H, W)` for video and volumes, or `(N,)` for a flat vector;
the batch dimension is never part of a shape here. Kernels, strides and pads hold one
entry per spatial axis (pads a begin and an end per axis), so every rule is written once
for every rank.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from .activations import ActivationLayer, PReLU
from .base import (
    MAP_FORMS,
    MAX_RANK,
    PADDING,
    PADS,
    PAIR,
    POSITIVE,
    SIZE,
    Argument,
    Inferred,
    LayerConfig,
    Matrix,
    Padding,
    Pads,
    Pair,
    Problem,
    Shape,
    Size,
    Window,
    axis_names,
    format_shape,
    needs_spatial,
    spatial_rank,
)
from .channels import Shuffle, Slice
from .conv import Conv, Deconv
from .dense import Dense
from .functions import ACTIVATION, ACTIVATION_FLAGS, ACTIVATIONS, DEFAULT_ALPHA, RELU_FAMILY, Activation
from .joins import Add, Concat, Multiply
from .norm import BatchNorm, LayerNorm, Scale
from .pool import GlobalPool, Pool
from .reshape import DROPPATH_NOTE, Dropout, DropPath, Flatten, Pad
from .upsample import Upsample
from .window import (
    AxisResult,
    Windowed,
    kernel_text,
    pad_pairs,
    padding_text,
    pads_text,
    pair_text,
    rank_problem,
    resolve_same,
    size_text,
    window_axis,
)

T = TypeVar("T")

KINDS: dict[str, type[LayerConfig]] = {
    cls.kind: cls
    for cls in (
        Conv,
        Pool,
        GlobalPool,
        BatchNorm,
        LayerNorm,
        Scale,
        PReLU,
        Dropout,
        DropPath,
        Flatten,
        Pad,
        Dense,
        Deconv,
        Upsample,
        Slice,
        Shuffle,
        Add,
        Concat,
        Multiply,
    )
}
KINDS.update({fn: ActivationLayer for fn in ACTIVATIONS})


class UnsupportedKind(Exception):
    """A stage's table lacks a kind: a bug in cnnspec, named at once, never a fallthrough."""


def rule_for(table: Mapping[str, T], kind: str, stage: str) -> T:
    """The entry of a stage's table (ONNX lowerings, torch factories, ...) for a kind."""
    try:
        return table[kind]
    except KeyError:
        raise UnsupportedKind(f"{stage} has no rule for the layer kind '{kind}'") from None


__all__ = [
    "ACTIVATION",
    "ACTIVATIONS",
    "ACTIVATION_FLAGS",
    "Activation",
    "ActivationLayer",
    "PReLU",
    "Add",
    "Argument",
    "AxisResult",
    "BatchNorm",
    "Concat",
    "Conv",
    "DEFAULT_ALPHA",
    "Deconv",
    "Dense",
    "DROPPATH_NOTE",
    "DropPath",
    "Dropout",
    "Flatten",
    "GlobalPool",
    "Inferred",
    "LayerConfig",
    "LayerNorm",
    "Matrix",
    "Multiply",
    "MAP_FORMS",
    "MAX_RANK",
    "PADDING",
    "PADS",
    "SIZE",
    "Size",
    "axis_names",
    "spatial_rank",
    "pad_pairs",
    "pads_text",
    "rank_problem",
    "size_text",
    "Pad",
    "PAIR",
    "POSITIVE",
    "Padding",
    "Pads",
    "Pair",
    "Pool",
    "Problem",
    "RELU_FAMILY",
    "Shape",
    "Shuffle",
    "Slice",
    "Upsample",
    "Window",
    "Windowed",
    "format_shape",
    "kernel_text",
    "needs_spatial",
    "padding_text",
    "pair_text",
    "resolve_same",
    "window_axis",
    "KINDS",
]
