"""ONNX model -> layer graph: the second front end, feeding the printer.

Each ONNX node becomes a cnnspec layer (or folds away: Identity, the Shape/Gather/Concat
arithmetic of a `view(n, -1)`, an x*sigmoid(x) pair that is one `silu`). Shapes are
inferred with the layer kinds' own rules as the graph is read, so an attribute cnnspec
cannot express, or a shape the import would get wrong, stops the import with the node's
name instead of writing a wrong spec. Anything that cannot be expressed is collected, and
reported together: every op type, with its node names and count.

A model is untrusted input: it is read as bytes (bounded by protobuf's own 2 GB limit),
external tensor data only from plain files beside it, and nothing in it is executed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..base.diagnostics import CnnspecError, Diagnostic
from ..base.graph import ancestors
from ..base.records import record
from ..kinds import (
    DEFAULT_ALPHA,
    Activation,
    ActivationLayer,
    Add,
    BatchNorm,
    Concat,
    Conv,
    Deconv,
    Dense,
    Dropout,
    Flatten,
    GlobalPool,
    LayerConfig,
    Multiply,
    Pool,
    Shape,
    Upsample,
)
from ..resolve import MAX_EXPANSION, RESERVED_NAMES, TORCH_MODULE_ATTRIBUTES
from .printer import INPUT, GraphLayer, spec_name

BATCH = 987_654_321  # stands for the batch size while shape arithmetic is folded
MAX_MODEL_BYTES = 2**31  # protobuf cannot hold more; larger models keep tensors in data files
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


class _Unsupported(Exception):
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
class _Act:
    """An activation tensor: written by layer `layer` (or INPUT), of shape `shape`."""

    layer: str
    shape: Shape


@record
class _Partial:
    """A value no layer writes but a later node completes: a step of GELU's exact form,
    0.5·x·(1 + erf(x/√2)), as exporters spell it below opset 20, or a map in Keras'
    HxWxC order. `stage` says which, `x` the layer output it stands for."""

    stage: str  # div | erf | plus | half; nhwc: a CxHxW map transposed to HxWxC; nhwc_input
    x: _Act


@dataclass
class _State:
    opset: int
    declared_batch: int | None
    values: dict[str, object] = field(default_factory=dict)  # tensor -> np.ndarray | _Act
    layers: dict[str, GraphLayer] = field(default_factory=dict)
    readers: Counter = field(default_factory=Counter)  # tensor -> how many nodes read it
    unsupported: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    taken: set[str] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)
    layer_tensor: dict[str, str] = field(default_factory=dict)  # layer -> the ONNX tensor it writes
    # flatten layers whose model flattened in HxWxC order (Keras): layer -> the CxHxW shape,
    # until the dense layer reading it takes the order into its weights
    hwc_flatten: dict[str, Shape] = field(default_factory=dict)


# ------------------------------------------------------------------ reading the file


def load_model(path: Path):
    """The ModelProto of `path`, with external tensor data read only from plain files
    in the model's folder. Raises NotAModel with a one-line reason."""
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    try:
        if not path.is_file():
            raise NotAModel("no such file" if not path.exists() else "not a regular file")
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise NotAModel("larger than 2 GB: not an ONNX model (large models keep tensors in a data file)")
        data = path.read_bytes()
    except OSError as exc:
        raise NotAModel(exc.strerror or str(exc)) from None
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError, OverflowError) as exc:
        raise NotAModel(f"not an ONNX model ({type(exc).__name__})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise NotAModel("not an ONNX model (no graph)")
    return model


def _external(tensor, folder: Path) -> np.ndarray:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location or Path(location).name != location or location in (".", ".."):
        raise NotAModel(f"tensor '{tensor.name}' points outside the model's folder ({location!r})")
    data_path = folder / location
    if data_path.is_symlink() or not data_path.is_file():
        raise NotAModel(f"tensor '{tensor.name}': data file {location} is missing or not a regular file")
    dtype = _DTYPES.get(tensor.data_type)
    if dtype is None:
        raise NotAModel(f"tensor '{tensor.name}' has a data type cnnspec does not read")
    count = math.prod(tensor.dims)
    offset = int(info.get("offset", 0))
    nbytes = count * np.dtype(dtype).itemsize
    if offset < 0 or offset + nbytes > data_path.stat().st_size:
        raise NotAModel(f"tensor '{tensor.name}' lies beyond the end of {location}")
    array: np.ndarray = np.fromfile(data_path, dtype=dtype, count=count, offset=offset)
    return array.reshape(tuple(tensor.dims))


_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64, 9: np.bool_}


def _array(tensor, folder: Path) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        return _external(tensor, folder)
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # a malformed tensor: protobuf and numpy raise many kinds
        raise NotAModel(f"tensor '{tensor.name}' cannot be read ({type(exc).__name__})") from None


# ------------------------------------------------------------------ names


def _module_path(node, weight: str | None) -> tuple[str, ...]:
    """Where a node came from: `layer1.0.conv1` from a PyTorch tensor name, or
    `/layer1/layer1.0/conv1/Conv` from a scoped node name; () when neither says."""
    if weight and "::" not in weight and not weight.startswith("onnx") and "." in weight:
        parts = [p for p in re.split(r"[./:]+", weight) if p]
        while parts and parts[-1] in ROLE_WORDS:
            parts.pop()
        if parts:
            return tuple(parts)
    name = node.name
    if not name or _AUTO_NODE_NAME.match(name) or name.startswith(node.op_type + "_"):
        return ()
    if "/" in name:
        scopes = [s for s in name.split("/") if s][:-1]  # the last is the op
        full, previous = "", ""
        for scope in scopes:  # PyTorch: /layer1/layer1.0/downsample/downsample.0 -> layer1.0.downsample.0
            if previous and scope.startswith(previous + "."):
                full += scope[len(previous) :]
            else:
                full = f"{full}.{scope}" if full else scope
            previous = scope
        return tuple(p for p in full.split(".") if p)
    return (name,)


def _unique_name(state: _State, module: tuple[str, ...], config: LayerConfig) -> str:
    prefix = type(config).name_prefix(config)
    name = spec_name(module)
    if not name or name in RESERVED:
        state.counts[prefix] += 1
        name = f"{prefix}_{state.counts[prefix]}" if not name else f"{name}_{prefix}"
    candidate, n = name, 1
    while candidate in state.taken or candidate in RESERVED:
        n += 1
        candidate = f"{name}_{n}"
    state.taken.add(candidate)
    return candidate


# ------------------------------------------------------------------ values


def _const(state: _State, name: str) -> np.ndarray:
    value = state.values.get(name)
    if not isinstance(value, np.ndarray):
        raise _Unsupported(f"'{name}' must be a constant (an initializer), but is computed")
    return value


def _act(state: _State, name: str) -> _Act:
    value = state.values.get(name)
    if isinstance(value, _Partial):
        raise _Unsupported(f"'{name}' is part of an expression cnnspec has no layer for")
    if not isinstance(value, _Act):
        raise _Unsupported(f"'{name}' is a constant where cnnspec expects a layer's output")
    return value


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _optional(node, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _extra_outputs_read(state: _State, node) -> bool:
    """Whether anything reads a second output (a pool's indices, a dropout's mask)."""
    return any(state.readers[name] for name in node.output[1:] if name)


def _add_layer(
    state: _State, node, config: LayerConfig, inputs: list[_Act], tensors: dict, weight: str | None = None
) -> _Act:
    shapes = [a.shape for a in inputs]
    if config.joins:
        inferred = config.infer_many(shapes, [a.layer for a in inputs])
    else:
        inferred = config.infer(shapes[0])
    errors = [p for p in inferred.problems if p.severity == "error"]
    if errors or inferred.output is None:
        raise _Unsupported(errors[0].message if errors else "its output shape cannot be computed")
    for suffix, (shape, _) in inferred.tensors.items():
        have = tensors.get(suffix)
        if have is None or tuple(have.shape) != tuple(shape):
            got = "missing" if have is None else "x".join(map(str, have.shape))
            raise _Unsupported(f"its {suffix} should be {'x'.join(map(str, shape))} here, but is {got}")
    module = _module_path(node, weight)
    name = _unique_name(state, module, config)
    clean = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    state.layers[name] = GraphLayer(name, config, tuple(a.layer for a in inputs), module, clean)
    return _Act(name, inferred.output)


def _pads(
    attrs: dict, x: Shape, kernel: tuple[int, int], stride, dilation
) -> tuple[int, int, int, int] | str:
    """cnnspec's (top, bottom, left, right) or 'same' from ONNX pads / auto_pad."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto == "SAME_UPPER":
        return "same"  # cnnspec's `same`: the odd pixel at the end, as Keras and TensorFlow pad
    if auto == "SAME_LOWER":
        pads = []
        for n, k, s, d in zip(x[1:], kernel, stride, dilation):
            out = -(-n // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            small, large = total // 2, total - total // 2
            pads.append((large, small))
        return (*pads[0], *pads[1])
    if auto != "NOTSET":
        raise _Unsupported(f"auto_pad={auto}")
    p = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(p) != 4:
        raise _Unsupported("only 2-D windows (4 pads)")
    return (p[0], p[2], p[1], p[3])


def _pair(attrs: dict, key: str, default: tuple[int, int]) -> tuple[int, int]:
    value = list(attrs.get(key, default))
    if len(value) != 2:
        raise _Unsupported(f"{key}={value}: only 2-D windows")
    return (int(value[0]), int(value[1]))


def _validated(cls: type[LayerConfig], values: dict) -> LayerConfig:
    from pydantic_core import ValidationError

    try:
        return cls.validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _Unsupported(f"{where}: {first['msg']}") from None


# ------------------------------------------------------------------ the ops


def _filter_inputs(state: _State, node, what: str) -> tuple[_Act, np.ndarray, dict]:
    """A conv's or deconv's input, 4-D weight, and its tensors (weight, and bias if given)."""
    x = _act(state, node.input[0])
    w = _const(state, node.input[1])
    if w.ndim != 4 or len(x.shape) != 3:
        raise _Unsupported(f"only 2-D {what} of CxHxW maps")
    tensors = {"weight": w}
    if bias_name := _optional(node, 2):
        tensors["bias"] = _const(state, bias_name)
    return x, w, tensors


def _conv(state: _State, node) -> _Act:
    x, w, tensors = _filter_inputs(state, node, "convolutions")
    attrs = _attrs(node)
    kernel = _pair(attrs, "kernel_shape", (w.shape[2], w.shape[3]))
    stride = _pair(attrs, "strides", (1, 1))
    dilation = _pair(attrs, "dilations", (1, 1))
    pads = _pads(attrs, (0, *x.shape[1:]), kernel, stride, dilation)
    config = _validated(
        Conv,
        {
            "filters": int(w.shape[0]),
            "kernel": kernel,
            "stride": stride,
            "pad": pads,
            "dilation": dilation,
            "groups": int(attrs.get("group", 1)),
            "bias": "bias" in tensors,
        },
    )
    return _add_layer(state, node, config, [x], tensors, node.input[1])


def _deconv(state: _State, node) -> _Act:
    x, w, tensors = _filter_inputs(state, node, "transposed convolutions")
    attrs = _attrs(node)
    if "output_shape" in attrs:
        raise _Unsupported("output_shape is not supported; export with pads and output_padding")
    auto = attrs.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID"):
        raise _Unsupported("auto_pad SAME on a transposed convolution")
    groups = int(attrs.get("group", 1))
    p = list(attrs.get("pads", [0, 0, 0, 0]))
    config = _validated(
        Deconv,
        {
            "filters": int(w.shape[1]) * groups,
            "kernel": _pair(attrs, "kernel_shape", (w.shape[2], w.shape[3])),
            "stride": _pair(attrs, "strides", (1, 1)),
            "pad": (p[0], p[2], p[1], p[3]) if len(p) == 4 else None,
            "output_pad": _pair(attrs, "output_padding", (0, 0)),
            "dilation": _pair(attrs, "dilations", (1, 1)),
            "groups": groups,
            "bias": "bias" in tensors,
        },
    )
    return _add_layer(state, node, config, [x], tensors, node.input[1])


def _batchnorm(state: _State, node) -> _Act:
    x = _act(state, node.input[0])
    attrs = _attrs(node)
    if attrs.get("training_mode", 0) or _extra_outputs_read(state, node):
        raise _Unsupported("training-mode batch norm (export the model in eval mode)")
    names = {
        "weight": node.input[1],
        "bias": node.input[2],
        "running_mean": node.input[3],
        "running_var": node.input[4],
    }
    tensors = {suffix: _const(state, n).reshape(-1) for suffix, n in names.items()}
    eps = _float32(attrs.get("epsilon", 1e-5))
    momentum = _float32(
        1.0 - _float32(attrs.get("momentum", 0.9))
    )  # ONNX keeps the old share, PyTorch the new
    config = _validated(BatchNorm, {"eps": eps, "momentum": momentum})
    return _add_layer(state, node, config, [x], tensors, node.input[1])


def _float32(value: float) -> float:
    return float(str(np.float32(value)))  # 1e-05, not 9.999999747378752e-06


def _gemm(state: _State, node) -> _Act:
    x = _act(state, node.input[0])
    if len(x.shape) != 1:
        raise _Unsupported("a matrix product of a CxHxW map (flatten it first)")
    attrs = _attrs(node)
    if attrs.get("transA", 0):
        raise _Unsupported("transA=1")
    b = _const(state, node.input[1])
    weight = _hwc_columns(state, x, (b if attrs.get("transB", 0) else b.T) * float(attrs.get("alpha", 1.0)))
    tensors = {"weight": weight}
    c_name = _optional(node, 2)
    if c_name:
        c = _const(state, c_name) * float(attrs.get("beta", 1.0))
        tensors["bias"] = np.broadcast_to(c.reshape(-1) if c.size > 1 else c.reshape(()), (weight.shape[0],))
    config = _validated(Dense, {"units": int(weight.shape[0]), "bias": c_name is not None})
    return _add_layer(state, node, config, [x], tensors, node.input[1])


def _matmul(state: _State, node) -> _Act:
    x = _act(state, node.input[0])
    b = _const(state, node.input[1])
    if len(x.shape) != 1 or b.ndim != 2:
        raise _Unsupported("only a flat vector times a constant matrix")
    config = _validated(Dense, {"units": int(b.shape[1]), "bias": False})
    return _add_layer(state, node, config, [x], {"weight": _hwc_columns(state, x, b.T)}, node.input[1])


def _hwc_columns(state: _State, x: _Act, weight: np.ndarray) -> np.ndarray:
    """A dense weight whose inputs came flattened in HxWxC order, reordered for cnnspec's
    CxHxW flatten: the same products, so the same outputs."""
    shape = state.hwc_flatten.pop(x.layer, None)
    if shape is None:
        return weight
    if state.readers[_tensor_of(state, x.layer)] != 1:
        raise _Unsupported("an HxWxC flatten read by more than this dense layer")
    c, h, w = shape
    order = np.arange(c * h * w).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
    return weight[:, order]


def _is(value, number: float) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.size == 1
        and math.isclose(float(value.reshape(-1)[0]), number, rel_tol=1e-5)
    )


def _partial_pair(state: _State, node, stage: str, number: float) -> _Partial | None:
    """(the _Partial at `stage`, the constant `number`) among the node's two inputs."""
    a, b = (state.values.get(n) for n in node.input[:2])
    for partial, const in ((a, b), (b, a)):
        if isinstance(partial, _Partial) and partial.stage == stage and _is(const, number):
            return partial
    return None


def _div(state: _State, node):
    x, c = (state.values.get(n) for n in node.input[:2])
    if isinstance(x, _Act) and _is(c, math.sqrt(2)):
        return _Partial("div", x)
    raise _Unsupported("a division cnnspec has no layer for")


def _erf(state: _State, node):
    value = state.values.get(node.input[0])
    if isinstance(value, _Partial) and value.stage == "div":
        return _Partial("erf", value.x)
    raise _Unsupported("erf outside GELU")


def _add(state: _State, node) -> _Act | _Partial:
    if (partial := _partial_pair(state, node, "erf", 1.0)) is not None:
        return _Partial("plus", partial.x)
    a, b = (state.values.get(n) for n in node.input[:2])
    if isinstance(a, _Act) and isinstance(b, _Act):
        return _add_layer(state, node, Add(), [a, b], {})
    act, const = (a, b) if isinstance(a, _Act) else (b, a)
    dense = state.layers.get(act.layer) if isinstance(act, _Act) else None
    if (
        isinstance(act, _Act)
        and isinstance(const, np.ndarray)
        and dense is not None
        and isinstance(dense.config, Dense)
        and not dense.config.bias
        and state.readers[_tensor_of(state, act.layer)] == 1
        and const.size in (1, dense.config.units)
    ):  # MatMul + Add: the bias of a dense layer
        dense.tensors["bias"] = np.broadcast_to(const.reshape(-1), (dense.config.units,)).astype(np.float32)
        dense.config = dataclasses.replace(dense.config, bias=True)
        return act
    raise _Unsupported("adds a constant tensor (only a bias after MatMul can be written)")


def _tensor_of(state: _State, layer: str) -> str:
    """The ONNX tensor a layer writes (for counting its readers)."""
    return state.layer_tensor.get(layer, "")


def _sum(state: _State, node) -> _Act:
    inputs = [_act(state, n) for n in node.input]
    return inputs[0] if len(inputs) == 1 else _add_layer(state, node, Add(), inputs, {})


def _mul(state: _State, node) -> _Act | _Partial:
    if (partial := _partial_pair(state, node, "half", 0.5)) is not None:
        return _add_layer(state, node, ActivationLayer(fn="gelu"), [partial.x], {})
    values = [state.values.get(n) for n in node.input[:2]]
    for x, plus in (values, values[::-1]):
        if isinstance(plus, _Partial) and plus.stage == "plus" and x == plus.x:
            return _Partial("half", plus.x)
    a, b = (_act(state, n) for n in node.input[:2])
    for x, gate in ((a, b), (b, a)):  # x * sigmoid(x) is silu, x * hardsigmoid(x) hardswish
        layer = state.layers.get(gate.layer)
        if (
            layer is not None
            and isinstance(layer.config, ActivationLayer)
            and layer.config.fn in ("sigmoid", "hardsigmoid")
            and layer.inputs == (x.layer,)
            and state.readers[_tensor_of(state, gate.layer)] == 1
        ):
            del state.layers[gate.layer]
            fn = "silu" if layer.config.fn == "sigmoid" else "hardswish"
            return _add_layer(state, node, ActivationLayer(fn=fn), [x], {})
    return _add_layer(state, node, Multiply(), [a, b], {})


def _concat(state: _State, node) -> _Act:
    inputs = [_act(state, n) for n in node.input]
    axis = int(_attrs(node).get("axis", 1))
    rank = len(inputs[0].shape) + 1
    if axis not in (1, 1 - rank):
        raise _Unsupported(f"concatenates along axis {axis}; cnnspec joins channels (axis 1)")
    return inputs[0] if len(inputs) == 1 else _add_layer(state, node, Concat(), inputs, {})


def _activation(fn: str):
    def handle(state: _State, node) -> _Act:
        x = _act(state, node.input[0])
        attrs = _attrs(node)
        alpha = None
        if fn in ("leakyrelu", "elu"):
            alpha = _float32(attrs.get("alpha", 0.01 if fn == "leakyrelu" else 1.0))
        if fn == "hardsigmoid":
            if not (
                math.isclose(attrs.get("alpha", 0.2), 1 / 6, rel_tol=1e-5)
                and math.isclose(attrs.get("beta", 0.5), 0.5)
            ):
                raise _Unsupported("HardSigmoid other than PyTorch's (alpha=1/6, beta=0.5)")
        if fn == "gelu" and attrs.get("approximate", b"none") not in (b"none", "none"):
            raise _Unsupported("the tanh approximation of GELU")
        if fn == "softmax":
            axis = int(attrs.get("axis", 1 if state.opset < 13 else -1))
            rank = len(x.shape) + 1
            flat_like = len(x.shape) == 1 or x.shape[1:] == (1, 1)
            if not (axis in (1, 1 - rank) and (state.opset >= 13 or flat_like)) and not (
                len(x.shape) == 1 and axis == -1
            ):
                raise _Unsupported(f"softmax over axis {axis}; cnnspec's softmax is over channels or classes")
        return _add_layer(state, node, ActivationLayer(fn=fn, alpha=alpha), [x], {})

    return handle


def _clip(state: _State, node) -> _Act:
    attrs = _attrs(node)
    low, high = attrs.get("min"), attrs.get("max")
    if state.opset >= 11:
        low = float(_const(state, n)) if (n := _optional(node, 1)) else None
        high = float(_const(state, n)) if (n := _optional(node, 2)) else None
    x = _act(state, node.input[0])
    if low == 0 and high == 6:
        return _add_layer(state, node, ActivationLayer(fn="relu6"), [x], {})
    if low == 0 and high is None:
        return _add_layer(state, node, ActivationLayer(fn="relu"), [x], {})
    raise _Unsupported(f"Clip({low}, {high}); cnnspec has relu (0, inf) and relu6 (0, 6)")


def _pool(mode: str):
    def handle(state: _State, node) -> _Act:
        x = _act(state, node.input[0])
        if len(x.shape) != 3:
            raise _Unsupported("pooling needs a CxHxW map")
        attrs = _attrs(node)
        if _extra_outputs_read(state, node):
            raise _Unsupported("the indices output of MaxPool")
        kernel = _pair(attrs, "kernel_shape", (1, 1))
        stride = _pair(attrs, "strides", (1, 1))
        if _pair(attrs, "dilations", (1, 1)) != (1, 1):
            raise _Unsupported("dilated pooling")
        pads = _pads(attrs, (0, *x.shape[1:]), kernel, stride, (1, 1))
        if mode == "avg" and attrs.get("count_include_pad", 0) and pads != (0, 0, 0, 0):
            raise _Unsupported("count_include_pad=1 with padding: cnnspec's average leaves padding out")
        config = _validated(
            Pool,
            {
                "mode": mode,
                "kernel": kernel,
                "stride": stride,
                "pad": pads,
                "ceil": bool(attrs.get("ceil_mode", 0)),
            },
        )
        return _add_layer(state, node, config, [x], {})

    return handle


def _global_pool(mode: str):
    def handle(state: _State, node) -> _Act:
        x = _act(state, node.input[0])
        return _add_layer(state, node, GlobalPool(mode=mode), [x], {})

    return handle


def _reduce(mode: str):
    def handle(state: _State, node) -> _Act:
        x = _act(state, node.input[0])
        attrs = _attrs(node)
        axes = attrs.get("axes")
        if axes is None and (n := _optional(node, 1)):
            axes = [int(a) for a in _const(state, n).reshape(-1)]
        rank = len(x.shape) + 1
        if rank != 4 or axes is None or sorted(a % rank for a in axes) != [2, 3]:
            raise _Unsupported(f"reduces over axes {axes}; cnnspec's global pooling is over H and W")
        pooled = _add_layer(state, node, GlobalPool(mode=mode), [x], {})
        if attrs.get("keepdims", 1):
            return pooled
        return _add_layer(state, node, Flatten(), [pooled], {})

    return handle


def _hwc_source(state: _State, name: str) -> _Act | None:
    value = state.values.get(name)
    return value.x if isinstance(value, _Partial) and value.stage == "nhwc" else None


def _flatten_layer(state: _State, node, x: _Act, hwc: bool) -> _Act:
    if len(x.shape) == 1:
        return x
    flat = _add_layer(state, node, Flatten(), [x], {})
    if hwc and x.shape[1:] != (1, 1):  # on 1x1 maps both orders are the same
        state.hwc_flatten[flat.layer] = x.shape
    return flat


def _flatten(state: _State, node) -> _Act:
    hwc = _hwc_source(state, node.input[0])
    x = hwc or _act(state, node.input[0])
    axis = int(_attrs(node).get("axis", 1))
    if axis != 1:
        raise _Unsupported(f"Flatten(axis={axis}); cnnspec flattens everything but the batch")
    return _flatten_layer(state, node, x, hwc is not None)


def _transpose(state: _State, node):
    value = state.values.get(node.input[0])
    perm = [int(p) for p in _attrs(node).get("perm", [])]
    if isinstance(value, _Partial) and value.stage == "nhwc_input" and perm == [0, 3, 1, 2]:
        return value.x  # NHWC input to NCHW: the spec takes CxHxW
    if isinstance(value, _Act) and len(value.shape) == 3 and perm == [0, 2, 3, 1]:
        return _Partial("nhwc", value)  # only a flatten may follow (Keras' HxWxC order)
    raise _Unsupported(f"perm={perm}; cnnspec keeps maps as CxHxW")


def _reshape(state: _State, node) -> _Act:
    hwc = _hwc_source(state, node.input[0])
    x = hwc or _act(state, node.input[0])
    target = [int(v) for v in _const(state, node.input[1]).reshape(-1)]
    size = math.prod(x.shape)
    batch_like = {BATCH, -1, 0} | ({state.declared_batch} if state.declared_batch else set())
    if (
        len(target) == 2
        and target[0] in batch_like
        and (target[1] == size or (target[1] == -1 and target[0] != -1))
    ):
        return _flatten_layer(state, node, x, hwc is not None)
    if hwc is not None:
        raise _Unsupported("reshapes an HxWxC map other than flattening it")
    full = [BATCH, *x.shape]
    if len(target) == len(full) and all(
        t in (f, 0) or (i == 0 and t in batch_like) for i, (t, f) in enumerate(zip(target, full))
    ):
        return x  # a reshape to the same shape
    shown = ["N" if t == BATCH else str(t) for t in target]
    raise _Unsupported(f"reshapes to [{', '.join(shown)}]; cnnspec can only flatten")


def _squeeze(state: _State, node) -> _Act:
    x = _act(state, node.input[0])
    axes = _attrs(node).get("axes")
    if axes is None and (n := _optional(node, 1)):
        axes = [int(a) for a in _const(state, n).reshape(-1)]
    if (
        len(x.shape) == 3
        and x.shape[1:] == (1, 1)
        and (axes is None or sorted(a % 4 for a in axes) == [2, 3])
    ):
        return _add_layer(state, node, Flatten(), [x], {})
    raise _Unsupported(f"squeezes axes {axes} of a {'x'.join(map(str, x.shape))} map")


def _resize(state: _State, node) -> _Act:
    x = _act(state, node.input[0])
    if len(x.shape) != 3:
        raise _Unsupported("resizing needs a CxHxW map")
    attrs = _attrs(node)
    text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    mode = text.get("mode", "nearest")
    ctm = text.get(
        "coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" else "asymmetric"
    )
    scales_name = node.input[1] if node.op_type == "Upsample" else _optional(node, 2)
    sizes_name = _optional(node, 3) if node.op_type == "Resize" else None
    if scales_name and _const(state, scales_name).size:
        scales = [float(s) for s in _const(state, scales_name).reshape(-1)]
    elif sizes_name:
        sizes = [int(s) for s in _const(state, sizes_name).reshape(-1)]
        scales = [1.0, 1.0] + [out / n for out, n in zip(sizes[-2:], x.shape[1:])]
    elif "scales" in attrs:
        scales = [float(s) for s in attrs["scales"]]
    else:
        raise _Unsupported("neither scales nor sizes are constant")
    if (
        len(scales) != 4
        or scales[:2] != [1.0, 1.0]
        or scales[2] != scales[3]
        or not scales[2].is_integer()
        or scales[2] < 1
    ):
        raise _Unsupported(f"scales {scales}; cnnspec upsamples H and W by one whole factor")
    scale = int(scales[2])
    if mode == "nearest":
        exact = (
            ctm == "asymmetric" and text.get("nearest_mode", "round_prefer_floor") == "floor"
        ) or ctm in (
            "half_pixel",
            "pytorch_half_pixel",
        )
        kind = "nearest"
    elif mode == "linear":
        exact = ctm in ("half_pixel", "pytorch_half_pixel")
        kind = "bilinear"
    else:
        exact, kind = False, mode
    if not exact:
        raise _Unsupported(f"{mode} resize with coordinate_transformation_mode={ctm}")
    if scale == 1:
        return x
    return _add_layer(state, node, Upsample(scale=scale, mode=kind), [x], {})


def _dropout(state: _State, node) -> _Act:
    x = _act(state, node.input[0])
    if _extra_outputs_read(state, node):
        raise _Unsupported("the mask output of Dropout")
    if (n := _optional(node, 2)) and bool(_const(state, n).reshape(-1)[0]):
        raise _Unsupported("training-mode dropout")
    ratio = _attrs(node).get("ratio", 0.5)
    if (n := _optional(node, 1)) is not None:
        ratio = float(_const(state, n).reshape(-1)[0])
    if ratio == 0:
        return x
    return _add_layer(state, node, Dropout(rate=_float32(ratio)), [x], {})


def _identity(state: _State, node) -> _Act:
    return _act(state, node.input[0])


class Handler(NamedTuple):
    """How one ONNX op type becomes layers: the function, and the layer kinds it may add
    (none: it is folded into a neighbour, such as Div and Erf into a GELU, or a no-op)."""

    handle: Callable
    produces: tuple[str, ...]


HANDLERS = {
    "Conv": Handler(_conv, ("conv",)),
    "ConvTranspose": Handler(_deconv, ("deconv",)),
    "BatchNormalization": Handler(_batchnorm, ("batchnorm",)),
    "Gemm": Handler(_gemm, ("dense",)),
    "MatMul": Handler(_matmul, ("dense",)),
    "Add": Handler(_add, ("add",)),
    "Div": Handler(_div, ()),
    "Erf": Handler(_erf, ()),
    "Sum": Handler(_sum, ("add",)),
    "Mul": Handler(
        _mul,
        (
            "multiply",
            "activation",
        ),
    ),
    "Concat": Handler(_concat, ("concat",)),
    "Relu": Handler(_activation("relu"), ("activation",)),
    "Sigmoid": Handler(_activation("sigmoid"), ("activation",)),
    "Tanh": Handler(_activation("tanh"), ("activation",)),
    "LeakyRelu": Handler(_activation("leakyrelu"), ("activation",)),
    "Elu": Handler(_activation("elu"), ("activation",)),
    "HardSigmoid": Handler(_activation("hardsigmoid"), ("activation",)),
    "HardSwish": Handler(_activation("hardswish"), ("activation",)),
    "Gelu": Handler(_activation("gelu"), ("activation",)),
    "Softmax": Handler(_activation("softmax"), ("activation",)),
    "Clip": Handler(_clip, ("activation",)),
    "MaxPool": Handler(_pool("max"), ("pool",)),
    "AveragePool": Handler(_pool("avg"), ("pool",)),
    "GlobalAveragePool": Handler(_global_pool("avg"), ("globalpool",)),
    "GlobalMaxPool": Handler(_global_pool("max"), ("globalpool",)),
    "ReduceMean": Handler(
        _reduce("avg"),
        (
            "globalpool",
            "flatten",
        ),
    ),
    "ReduceMax": Handler(
        _reduce("max"),
        (
            "globalpool",
            "flatten",
        ),
    ),
    "Flatten": Handler(_flatten, ("flatten",)),
    "Reshape": Handler(_reshape, ("flatten",)),
    "Squeeze": Handler(_squeeze, ("flatten",)),
    "Resize": Handler(_resize, ("upsample",)),
    "Upsample": Handler(_resize, ("upsample",)),
    "Dropout": Handler(_dropout, ("dropout",)),
    "Identity": Handler(_identity, ()),
    "Transpose": Handler(_transpose, ()),
}


# ------------------------------------------------------------------ constant folding

# Shape arithmetic (`x.view(x.size(0), -1)`) is computed here, on constants and the
# shapes of activation tensors, with BATCH standing for the batch size.


def _fold(state: _State, node) -> np.ndarray | None:
    """The value of a node whose inputs are all known constants (or a Shape), else None."""
    op = node.op_type
    attrs = _attrs(node)
    if op == "Constant":
        from onnx import numpy_helper

        if "value" in attrs:
            return numpy_helper.to_array(attrs["value"])
        for key in ("value_float", "value_int"):
            if key in attrs:
                return np.array(attrs[key])
        for key in ("value_floats", "value_ints"):
            if key in attrs:
                return np.array(attrs[key])
        raise _Unsupported("a Constant of a kind cnnspec does not read")
    if op == "Shape":
        value = state.values.get(node.input[0])
        if isinstance(value, _Act):
            shape = np.array([BATCH, *value.shape], dtype=np.int64)
            start, end = attrs.get("start", 0), attrs.get("end", None)
            return shape[start:end]
    inputs = [state.values.get(n) if n else None for n in node.input]
    if (
        not inputs
        or not all(isinstance(v, np.ndarray) or v is None for v in inputs)
        or all(v is None for v in inputs)
    ):
        return None
    if op not in _FOLDABLE:
        return None
    try:
        return _FOLDABLE[op](inputs, attrs)
    except (ValueError, IndexError, TypeError, ZeroDivisionError) as exc:
        raise _Unsupported(f"its constant inputs cannot be folded ({exc})") from None


def _axes(inputs, attrs, i=1):
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    return [int(a) for a in inputs[i].reshape(-1)] if len(inputs) > i and inputs[i] is not None else None


def _unsqueeze(inputs, attrs):
    x = inputs[0]
    for axis in sorted(a % (x.ndim + len(_axes(inputs, attrs))) for a in _axes(inputs, attrs)):
        x = np.expand_dims(x, axis)
    return x


def _slice(inputs, attrs):
    x = inputs[0]
    starts = attrs.get("starts", inputs[1] if len(inputs) > 1 else None)
    ends = attrs.get("ends", inputs[2] if len(inputs) > 2 else None)
    axes = attrs.get("axes", inputs[3] if len(inputs) > 3 and inputs[3] is not None else range(len(starts)))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


_FOLDABLE = {
    "Identity": lambda i, a: i[0],
    "Gather": lambda i, a: np.take(i[0], i[1], axis=int(a.get("axis", 0))),
    "Unsqueeze": _unsqueeze,
    "Squeeze": lambda i, a: np.squeeze(i[0], axis=tuple(_axes(i, a))) if _axes(i, a) else np.squeeze(i[0]),
    "Concat": lambda i, a: np.concatenate([np.atleast_1d(x) for x in i], axis=int(a.get("axis", 0))),
    "Slice": _slice,
    "Cast": lambda i, a: i[0].astype(
        np.int64 if a.get("to") == 7 else np.float32 if a.get("to") == 1 else i[0].dtype
    ),
    "Add": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] // i[1] if i[0].dtype.kind in "iu" else i[0] / i[1],
    "ReduceProd": lambda i, a: np.prod(i[0], keepdims=bool(a.get("keepdims", 1))),
    "Reshape": lambda i, a: i[0].reshape([int(v) for v in i[1]]),
    "Transpose": lambda i, a: np.transpose(i[0], a.get("perm")),
}


# ------------------------------------------------------------------ the graph


def import_graph(
    model, path: Path, input_shape: Shape | None = None, name: str = "imported"
) -> ImportedGraph:
    """The layer graph of a loaded model. Raises CnnspecError listing what cannot be
    imported, NotAModel when the file is not a usable model."""
    graph = model.graph
    if len(graph.node) > MAX_EXPANSION:
        raise CnnspecError(
            [
                _error(
                    path,
                    "too-large",
                    f"{len(graph.node):,} nodes; a cnnspec network has at most {MAX_EXPANSION:,} layers",
                )
            ]
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset == 0:
        raise NotAModel("the model imports no standard ONNX opset")
    folder = path.parent
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    readers = [n for n in graph.node if inputs and inputs[0].name in n.input]
    # Keras models converted as they are take NxHxWxC and transpose it first
    nhwc = bool(readers) and all(
        n.op_type == "Transpose" and [int(p) for p in _attrs(n).get("perm", [])] == [0, 3, 1, 2]
        for n in readers
    )
    shape = _input_shape(inputs, path, input_shape, nhwc)
    dims = inputs[0].type.tensor_type.shape.dim
    declared = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    state = _State(opset, declared)
    for tensor in graph.initializer:
        state.values[tensor.name] = _array(tensor, folder)
    state.values[inputs[0].name] = _Partial("nhwc_input", _Act(INPUT, shape)) if nhwc else _Act(INPUT, shape)
    for node in graph.node:
        state.readers.update(n for n in node.input if n)
    state.readers.update(o.name for o in graph.output)
    broken: set[str] = set()
    for node in graph.node:
        label = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in ("", "ai.onnx"):
            state.unsupported[f"{node.domain}.{node.op_type}"].append(
                (label, "an op outside the standard ONNX domain")
            )
            broken.update(node.output)
            continue
        missing = [n for n in node.input if n and n not in state.values and n not in broken]
        if missing:
            raise NotAModel(
                f"node '{label}' reads '{missing[0]}', which no earlier node writes (not a valid graph)"
            )
        if any(n in broken for n in node.input if n):
            broken.update(node.output)
            if (
                node.op_type not in HANDLERS
                and node.op_type not in _FOLDABLE
                and node.op_type not in ("Shape", "Constant")
            ):
                state.unsupported[node.op_type].append((label, ""))
            continue
        try:
            folded = _fold(state, node)
            if folded is not None:
                state.values[node.output[0]] = np.asarray(folded)
                continue
            handler = HANDLERS.get(node.op_type)
            if handler is None:
                raise _Unsupported("")
            result = handler.handle(state, node)
            state.values[node.output[0]] = result
            if isinstance(result, _Act) and result.layer != INPUT:
                state.layer_tensor.setdefault(result.layer, node.output[0])
        except _Unsupported as exc:
            state.unsupported[node.op_type].append((label, str(exc)))
            broken.update(node.output)
        except (IndexError, KeyError, TypeError, ValueError, OverflowError, ArithmeticError) as exc:
            # a node missing inputs or outputs, an attribute of the wrong type or size
            raise NotAModel(f"node '{label}' ({node.op_type}) is malformed ({type(exc).__name__})") from None
    for flat in state.hwc_flatten:
        state.unsupported["Transpose"].append(
            (flat, "it flattens in HxWxC order, and no dense layer follows to take that order over")
        )
    if state.unsupported:
        raise CnnspecError(_unsupported_report(state, path))
    outputs = []
    for out in graph.output:
        value = state.values.get(out.name)
        if not isinstance(value, _Act) or value.layer == INPUT:
            raise CnnspecError(
                [_error(path, "import-unsupported", f"output '{out.name}' is not computed by a layer")]
            )
        outputs.append(value.layer)
    layers, kept_outputs = _fuse_activations(list(state.layers.values()), tuple(outputs))
    needed = ancestors(layers, kept_outputs)  # what the outputs read; the rest is dead code
    return ImportedGraph(
        name,
        shape,
        [layer for layer in layers if layer.name in needed],
        kept_outputs,
        opset,
        model.producer_name,
        "NHWC" if nhwc else "NCHW",
    )


def _input_shape(inputs, path: Path, given: Shape | None, nhwc: bool = False) -> Shape:
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise CnnspecError(
            [
                _error(
                    path,
                    "import-unsupported",
                    f"the model has {len(inputs)} inputs ({names}); cnnspec networks have one",
                )
            ]
        )
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != 1:
        raise CnnspecError([_error(path, "import-unsupported", "the model's input is not float32")])
    dims = tensor_type.shape.dim
    if len(dims) not in (2, 4):
        raise CnnspecError(
            [
                _error(
                    path,
                    "import-unsupported",
                    f"the input has {len(dims)} dimensions; cnnspec takes NxCxHxW or NxF",
                )
            ]
        )
    fixed = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims[1:]]
    open_names = [d.dim_param or "?" for d in dims[1:]]
    if nhwc:  # HxWxC, written CxHxW like every cnnspec input
        fixed, open_names = fixed[2:] + fixed[:2], open_names[2:] + open_names[:2]
    if given is not None:
        if len(given) != len(fixed) or any(f is not None and f != g for f, g in zip(fixed, given)):
            shown = "x".join(str(f) if f else "?" for f in fixed)
            raise CnnspecError(
                [
                    _error(
                        path,
                        "import-unsupported",
                        f"--input-shape {'x'.join(map(str, given))} does not fit the model's input {shown}",
                    )
                ]
            )
        return tuple(given)
    if any(f is None for f in fixed):
        shown = "x".join(str(f) if f else name for f, name in zip(fixed, open_names))
        raise CnnspecError(
            [
                Diagnostic(
                    "error",
                    "import-unsupported",
                    f"{path}: the input size {shown} is not fixed",
                    None,
                    "give it with --input-shape CxHxW (e.g. --input-shape 3x224x224)",
                )
            ]
        )
    return tuple(f for f in fixed if f is not None)


def _fuse_activations(
    layers: list[GraphLayer], outputs: tuple[str, ...]
) -> tuple[list[GraphLayer], tuple[str, ...]]:
    """`conv ...; relu` -> `conv ... relu` where nothing else reads the conv."""
    readers: Counter = Counter(n for layer in layers for n in layer.inputs)
    readers.update(outputs)
    by_name = {layer.name: layer for layer in layers}
    replaced: dict[str, str] = {}
    kept: list[GraphLayer] = []
    for layer in layers:
        layer.inputs = tuple(replaced.get(n, n) for n in layer.inputs)
        if isinstance(layer.config, ActivationLayer) and len(layer.inputs) == 1:
            before = by_name.get(layer.inputs[0])
            if (
                before is not None
                and isinstance(before.config, (Conv, Dense, Deconv))
                and before.config.activation is None
                and readers[before.name] == 1
                and layer.config.alpha
                in (None, DEFAULT_ALPHA.get(layer.config.fn))  # a conv line takes no alpha
            ):
                before.config = dataclasses.replace(
                    before.config, activation=Activation(name=layer.config.fn, alpha=layer.config.alpha)
                )
                replaced[layer.name] = before.name
                continue
        kept.append(layer)
    return kept, tuple(replaced.get(name, name) for name in outputs)


def _error(path: Path, code: str, message: str, help: str | None = None) -> Diagnostic:
    return Diagnostic("error", code, f"{path}: {message}", None, help)


def _unsupported_report(state: _State, path: Path) -> list[Diagnostic]:
    diagnostics = []
    for op, nodes in sorted(state.unsupported.items()):
        shown = ", ".join(label for label, _ in nodes[:5]) + (
            f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
        )
        reasons = sorted({reason for _, reason in nodes if reason})
        why = f": {reasons[0]}" if reasons else ": no cnnspec layer does this"
        diagnostics.append(
            _error(
                path, "import-unsupported", f"{op} x{len(nodes)} ({shown}) cannot be written in cnnspec{why}"
            )
        )
    return diagnostics


# ------------------------------------------------------------------ spec and weights


@dataclass
class Imported:
    spec: str  # the .cnn text
    weights: dict[str, np.ndarray]  # keyed by the spec's tensor names (`layer1_0_conv1.weight`)
    graph: ImportedGraph
    total_params: int


def import_model(
    path: str | Path,
    name: str = "imported",
    input_shape: Shape | None = None,
    flat: bool = False,
    weights_file: str = "",
) -> Imported:
    """Read an ONNX model and write it as a spec and its weights. The spec is checked
    with cnnspec's own checker, and each weight tensor is keyed by the name that check
    gives its layer."""
    from .. import check_source
    from .printer import print_network

    path = Path(path)
    model = load_model(path)
    graph = import_graph(model, path, input_shape, name)
    layout = (
        "\n# The model took NxHxWxC input; this spec takes NxCxHxW (transpose images to channels first)."
        if graph.layout == "NHWC"
        else ""
    )
    header = (
        f"# Imported by cnnspec from {path.name} ({graph.producer or 'unknown producer'}, opset {graph.opset})."
        + (
            f"\n# Weights: {weights_file} (cnnspec export {name}.cnn --weights {weights_file} -o model.onnx)"
            if weights_file
            else ""
        )
        + layout
    )
    printed = print_network(name, graph.input_shape, graph.layers, graph.outputs, flat, header)
    result = check_source(printed.text, f"{name}.cnn")
    errors = [d for d in result.diagnostics if d.severity == "error"]
    network = result.networks[0] if result.networks else None
    if errors or network is None:  # the printer wrote something the checker refuses: a cnnspec bug
        raise RuntimeError(
            f"the imported spec does not check: {errors[0].message if errors else 'no network'}"
        )
    checked = [entry for entry in network.layers if entry.tensors]
    imported = [layer for layer in printed.order if layer.tensors]
    if len(checked) != len(imported):
        raise RuntimeError(f"{len(checked)} layers with tensors in the spec, {len(imported)} in the model")
    weights: dict[str, np.ndarray] = {}
    for entry, layer in zip(checked, imported):
        for suffix, shape in entry.tensors.items():
            array = layer.tensors.get(suffix)
            if array is None or tuple(array.shape) != tuple(shape):
                raise RuntimeError(f"{entry.name}.{suffix} does not match the model's {layer.name}.{suffix}")
            weights[f"{entry.name}.{suffix}"] = array
    return Imported(printed.text, weights, graph, network.total_params)
