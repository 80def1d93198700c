"""What the importer carries while it reads a graph: the layers so far, each tensor's value
or layer, and the helpers every op handler uses (constants, attributes, names, pads)."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..base.diagnostics import one_line
from ..base.records import record
from ..kinds import (
    MAX_RANK,
    LayerConfig,
    Shape,
)
from ..resolve import RESERVED_NAMES, TORCH_MODULE_ATTRIBUTES
from .printer import GraphLayer, spec_name

BATCH = 987_654_321  # stands for the batch size while shape arithmetic is folded


ROLE_WORDS = {
    "weight",
    "bias",
    "running_mean",
    "running_var",
    "num_batches_tracked",
    "kernel",
    "gamma",
    "beta",
}


RESERVED = {"input", "output", "in", "as", "from", "network", "block", "use", "repeat", "drop", "freeze"}
RESERVED |= {"shortcut", "last", "through", "all", "true", "false", "same", "valid"}
RESERVED |= RESERVED_NAMES | TORCH_MODULE_ATTRIBUTES  # names cnnspec's graph and backend use


_AUTO_NODE_NAME = re.compile(r"^(?:node_)?[A-Za-z]+_\d+$")


class NotAModel(Exception):
    """The file is not a readable ONNX model (exit 2, one line)."""


class Unsupported(Exception):
    """This node cannot be written in cnnspec; the message says why."""


@dataclass
class ImportedGraph:
    name: str
    input_shape: Shape
    layers: list[GraphLayer]
    outputs: tuple[str, ...]
    opset: int
    producer: str
    layout: str = "NCHW"  # NHWC: the model took HxWxC images; the spec takes them as CxHxW


@record
class Act:
    """An activation tensor: written by layer `layer` (or INPUT), of shape `shape`."""

    layer: str
    shape: Shape


@record
class Partial:
    """A value no layer writes but a later node completes: a step of GELU's exact form,
    0.5·x·(1 + erf(x/√2)), as exporters spell it below opset 20, or a map in Keras'
    HxWxC order. `stage` says which, `x` the layer output it stands for."""

    stage: str  # div | erf | plus | half; nhwc: a CxHxW map transposed to HxWxC; nhwc_input;
    # grouped, swapped: the first two steps of a channel shuffle (Reshape, Transpose, Reshape);
    # ln_mean, ln_centered, ln_square, ln_var, ln_var_eps, ln_std: a layer norm in plain ops
    x: Act
    groups: int = 0  # a shuffle's groups
    eps: float = 0.0  # a layer norm's epsilon
    nhwc: bool = False  # a GELU's or layer norm's steps on the channels-last view of x


@dataclass
class State:
    opset: int
    declared_batch: int | None
    values: dict[str, object] = field(default_factory=dict)  # tensor -> np.ndarray | Act
    layers: dict[str, GraphLayer] = field(default_factory=dict)
    readers: Counter = field(default_factory=Counter)  # tensor -> how many nodes read it
    unsupported: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    taken: set[str] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)
    layer_tensor: dict[str, str] = field(default_factory=dict)  # layer -> the ONNX tensor it writes
    # flatten layers whose model flattened in HxWxC order (Keras): layer -> the CxHxW shape,
    # until the dense layer reading it takes the order into its weights
    hwc_flatten: dict[str, Shape] = field(default_factory=dict)
    # constant tensors an Identity node copies: output -> input (PyTorch writes a tensor equal
    # to another one so, under the copied parameter's name)
    copied_from: dict[str, str] = field(default_factory=dict)


def _parameter_name(name: str | None) -> bool:
    """A parameter's name (`layer1.0.conv1.weight`), not a tensor the exporter computed
    (`/stages/stages.0/pwconv1/Transpose_output_0`) nor a number (`w12`)."""
    if not name:
        return False
    return "::" not in name and "/" not in name and not name.startswith("onnx") and "." in name


def _module_path(node, weight: str | None, copied_from: dict[str, str]) -> tuple[str, ...]:
    """Where a node came from: `layer1.0.conv1` from a PyTorch tensor name, or
    `/layer1/layer1.0/conv1/Conv` from a scoped node name; () when neither says. A copy of
    another constant speaks for the model's names only when what it copies is named too: a
    model whose parameters are numbered names none of its layers, not the few whose values
    happened to repeat another's (every layer named or none: blocks fold either way)."""
    source = weight
    while source in copied_from:
        source = copied_from[source]
    if weight and _parameter_name(weight) and _parameter_name(source):
        parts = [p for p in re.split(r"[./:]+", weight) if p]
        while parts and parts[-1] in ROLE_WORDS:
            parts.pop()
        if parts:
            return tuple(parts)
    name = node.name
    if not name or _AUTO_NODE_NAME.match(name) or name.startswith(node.op_type + "_"):
        return ()
    return _scoped_path(name) if "/" in name else (name,)


def _scoped_path(name: str) -> tuple[str, ...]:
    """PyTorch's scoped node names: /layer1/layer1.0/downsample/downsample.0/Conv ->
    layer1.0.downsample.0 (each scope repeats its parent's name as a prefix)."""
    scopes = [s for s in name.split("/") if s][:-1]  # the last is the op
    full, previous = "", ""
    for scope in scopes:
        if previous and scope.startswith(previous + "."):
            full += scope[len(previous) :]
        else:
            full = f"{full}.{scope}" if full else scope
        previous = scope
    return tuple(p for p in full.split(".") if p)


def _unique_name(state: State, module: tuple[str, ...], config: LayerConfig) -> str:
    prefix = type(config).name_prefix(config)
    name = spec_name(module)
    if name and config.kind == "pad":  # a conv's padding_mode: the conv keeps the module's name
        name = f"{name}_pad"
    if not name or name in RESERVED:
        state.counts[prefix] += 1
        name = f"{prefix}_{state.counts[prefix]}" if not name else f"{name}_{prefix}"
    candidate, n = name, 1
    while candidate in state.taken or candidate in RESERVED:
        n += 1
        candidate = f"{name}_{n}"
    state.taken.add(candidate)
    return candidate


def constant_of(state: State, name: str) -> np.ndarray:
    value = state.values.get(name)
    if not isinstance(value, np.ndarray):
        raise Unsupported(f"'{name}' must be a constant (an initializer), but is computed")
    return value


def activation_of(state: State, name: str) -> Act:
    value = state.values.get(name)
    if isinstance(value, Partial):
        raise Unsupported(f"'{name}' is part of an expression cnnspec has no layer for")
    if not isinstance(value, Act):
        raise Unsupported(f"'{name}' is a constant where cnnspec expects a layer's output")
    return value


def is_number(value, number: float) -> bool:
    """Whether `value` is a constant holding one number, `number` (to float32 precision)."""
    return (
        isinstance(value, np.ndarray)
        and value.size == 1
        and math.isclose(float(value.reshape(-1)[0]), number, rel_tol=1e-5)
    )


def as_map(value) -> tuple[Act, bool] | None:
    """(the layer output, whether it is seen channels-last) for an activation or its
    channels-last view (PyTorch's permute(0, 2, 3, 1), ConvNeXt's LayerNorm and Linear
    work so); None for anything else."""
    if isinstance(value, Act):
        return value, False
    if isinstance(value, Partial) and value.stage == "nhwc":
        return value.x, True
    return None


def as_viewed(x: Act, nhwc: bool) -> Act | Partial:
    """The inverse of `as_map`: a layer's output, seen channels-last again when it was."""
    return Partial("nhwc", x) if nhwc else x


def map_of(state: State, name: str) -> tuple[Act, bool]:
    """`as_map` of a tensor, or Unsupported as `activation_of` says it."""
    found = as_map(state.values.get(name))
    if found is None:
        activation_of(state, name)  # raises, saying what the value is
        raise Unsupported(f"'{name}' is not a layer's output")
    return found


def attributes_of(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def optional(node, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


def extra_outputs_read(state: State, node) -> bool:
    """Whether anything reads a second output (a pool's indices, a dropout's mask)."""
    return any(state.readers[name] for name in node.output[1:] if name)


def add_layer(
    state: State, node, config: LayerConfig, inputs: list[Act], tensors: dict, weight: str | None = None
) -> Act:
    shapes = [a.shape for a in inputs]
    if config.joins:
        inferred = config.infer_many(shapes, [a.layer for a in inputs])
    else:
        inferred = config.infer(shapes[0])
    errors = [p for p in inferred.problems if p.severity == "error"]
    if errors or inferred.output is None:
        raise Unsupported(errors[0].message if errors else "its output shape cannot be computed")
    for suffix, (shape, _) in inferred.tensors.items():
        have = tensors.get(suffix)
        if have is None or tuple(have.shape) != tuple(shape):
            got = "missing" if have is None else "x".join(map(str, have.shape))
            raise Unsupported(f"its {suffix} should be {'x'.join(map(str, shape))} here, but is {got}")
    module = _module_path(node, weight, state.copied_from)
    name = _unique_name(state, module, config)
    clean = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    for suffix, array in clean.items():  # as float32: a float64 beyond its range is infinite
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):
            raise NotAModel(
                f"node '{node_label(node)}' ({node.op_type}): its {suffix} holds {len(bad):,} NaN or "
                f"infinite values as float32 (the first at index {tuple(int(i) for i in bad[0])})"
            )
    state.layers[name] = GraphLayer(name, config, tuple(a.layer for a in inputs), module, clean)
    return Act(name, inferred.output)


def pads_of(attrs: dict, x: Shape, kernel: tuple[int, ...], stride, dilation) -> tuple[int, ...] | str:
    """cnnspec's pads (begin, end per spatial axis) or 'same' from ONNX pads / auto_pad."""
    rank = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto == "VALID":
        return (0,) * 2 * rank
    if auto == "SAME_UPPER":
        return "same"  # cnnspec's `same`: the odd pixel at the end, as Keras and TensorFlow pad
    if auto == "SAME_LOWER":
        pads: list[int] = []
        for n, k, s, d in zip(x[1:], kernel, stride, dilation):
            out = -(-n // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            small, large = total // 2, total - total // 2
            pads += [large, small]
        return tuple(pads)
    if auto != "NOTSET":
        raise Unsupported(f"auto_pad={auto}")
    return onnx_pads(attrs, rank)


def onnx_pads(attrs: dict, rank: int) -> tuple[int, ...]:
    """ONNX's pads (all begins, then all ends) as cnnspec's begin and end per axis."""
    p = [int(v) for v in attrs.get("pads", [0] * 2 * rank)]
    if len(p) != 2 * rank:
        raise Unsupported(f"pads={p}: {2 * rank} values for a {rank}-D window")
    return tuple(v for axis in range(rank) for v in (p[axis], p[rank + axis]))


def sizes(attrs: dict, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A per-axis attribute (kernel_shape, strides, dilations) with one entry per axis."""
    value = list(attrs.get(key, default))
    if len(value) != len(default) or not 1 <= len(value) <= MAX_RANK:
        raise Unsupported(f"{key}={value}: {len(default)} spatial axes expected")
    return tuple(int(v) for v in value)


def node_label(node) -> str:
    """How messages name a node: its name, else its first output, else its op; one line."""
    return one_line(node.name or (node.output[0] if node.output else node.op_type), 200)


def validated(cls: type[LayerConfig], values: dict) -> LayerConfig:
    from pydantic_core import ValidationError

    try:
        return cls.validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unsupported(f"{where}: {first['msg']}") from None


def as_float32(value: float) -> float:
    return float(str(np.float32(value)))  # 1e-05, not 9.999999747378752e-06
