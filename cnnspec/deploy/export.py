"""Checked network + weights -> ONNX model, built with onnx.helper.

Every layer's output tensor carries the layer's name (`conv1`, `pool1`, ...), so any
intermediate result can be exposed by name; initializers follow PyTorch's state-dict
names (`conv1.weight`); each node's doc string is its spec line. The graph input is
`input` with a symbolic batch `N`, the graph output `output`.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from ..base.diagnostics import CnnspecError, Diagnostic
from ..base.files import target, temporary
from ..infer import CheckedLayer, CheckedNetwork
from ..kinds import (
    DEFAULT_ALPHA,
    DROPPATH_NOTE,
    ActivationLayer,
    BatchNorm,
    Conv,
    Deconv,
    Dropout,
    DropPath,
    GlobalPool,
    LayerNorm,
    Pad,
    Pool,
    Shuffle,
    Slice,
    Upsample,
    rule_for,
)
from .weights import WeightSet

DEFAULT_OPSET = 17  # onnxruntime >= 1.14 runs it; Gelu (opset 20) is decomposed below it
MIN_OPSET = 13  # Softmax over one axis and per-axis semantics used here need 13
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26  # protobuf's 2 GB limit, less room for the graph
SMALL_TENSOR_BYTES = 1024  # tensors this small stay inside the model even with external data


class _ExternalData:
    """Tensors streamed into a data file beside the model, for models above protobuf's
    2 GB limit: no single message ever holds them, and they are written as they come."""

    def __init__(self, path: Path, location: str):
        self.stream = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.location = location  # the data file's name as the model records it
        self.offset = 0

    def tensor(self, name: str, array: np.ndarray) -> TensorProto:
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
        array.tofile(self.stream)
        for key, value in (("location", self.location), ("offset", self.offset), ("length", array.nbytes)):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
        tensor.data_location = TensorProto.EXTERNAL
        self.offset += array.nbytes
        return tensor

    def close(self) -> None:
        self.stream.close()


@dataclass
class _Graph:
    opset: int
    weights: WeightSet
    external: _ExternalData | None = None
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    folded: dict[str, np.ndarray] = field(default_factory=dict)  # tensors replaced by folding
    folded_bn: set[str] = field(default_factory=set)  # batch norms folded into the layer before

    def tensor(self, name: str) -> str:
        array = np.ascontiguousarray(self.folded.get(name, self.weights.arrays[name]), np.float32)
        if self.external is not None and array.nbytes > SMALL_TENSOR_BYTES:
            self.initializers.append(self.external.tensor(name, array))
        else:
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, doc: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, doc_string=doc, **attrs))


def _doc(entry: CheckedLayer) -> str:
    span = entry.layer.span
    return f"{span.path}:{span.line}: {entry.layer.spec_text()}"


# One lowering per activation function: (graph, alpha, x, out, node name, doc) -> nodes.
def _op(op: str, **attrs):
    return lambda g, alpha, x, out, name, doc: g.node(op, [x], out, name, doc, **attrs)


def _op_with_alpha(op: str, fn: str):
    default = DEFAULT_ALPHA[fn]
    return lambda g, alpha, x, out, name, doc: g.node(
        op, [x], out, name, doc, alpha=float(alpha if alpha is not None else default)
    )


def _gated(op: str, **attrs):
    """x * op(x): SiLU (Sigmoid) and hard swish (HardSigmoid; HardSwish itself needs opset 14)."""

    def lower(g: _Graph, alpha, x: str, out: str, name: str, doc: str) -> None:
        g.node(op, [x], f"{name}.gate", f"{name}.{op.lower()}", doc, **attrs)
        g.node("Mul", [x, f"{name}.gate"], out, name, doc)

    return lower


def _constants(g: _Graph, values: dict[str, float]) -> None:
    for cname, value in values.items():
        g.initializers.append(numpy_helper.from_array(np.array(value, np.float32), cname))


def _relu6(g: _Graph, alpha, x: str, out: str, name: str, doc: str) -> None:
    limits = {f"{name}.c_zero": 0.0, f"{name}.c_six": 6.0}
    _constants(g, limits)
    g.nodes.append(helper.make_node("Clip", [x, *limits], [out], name=name, doc_string=doc))


def _mish(g: _Graph, alpha, x: str, out: str, name: str, doc: str) -> None:
    if g.opset >= 18:
        g.node("Mish", [x], out, name, doc)
        return
    # x * tanh(softplus(x)), as PyTorch exports it below opset 18
    g.node("Softplus", [x], f"{name}.softplus", f"{name}.softplus", doc)
    g.node("Tanh", [f"{name}.softplus"], f"{name}.gate", f"{name}.tanh", doc)
    g.node("Mul", [x, f"{name}.gate"], out, name, doc)


def _gelu(g: _Graph, alpha, x: str, out: str, name: str, doc: str) -> None:
    if g.opset >= 20:
        g.node("Gelu", [x], out, name, doc)
        return
    # 0.5 * x * (1 + erf(x / sqrt(2))), the exact form
    _constants(g, {f"{name}.c_sqrt2": math.sqrt(2.0), f"{name}.c_one": 1.0, f"{name}.c_half": 0.5})
    g.node("Div", [x, f"{name}.c_sqrt2"], f"{name}.scaled", f"{name}.div", doc)
    g.node("Erf", [f"{name}.scaled"], f"{name}.erf", f"{name}.erf", doc)
    g.node("Add", [f"{name}.erf", f"{name}.c_one"], f"{name}.plus1", f"{name}.add", doc)
    g.node("Mul", [x, f"{name}.plus1"], f"{name}.xplus", f"{name}.mul", doc)
    g.node("Mul", [f"{name}.xplus", f"{name}.c_half"], out, f"{name}.half", doc)


HARD_SIGMOID = {"alpha": 1.0 / 6.0, "beta": 0.5}  # PyTorch's: relu6(x + 3) / 6

ACTIVATION_LOWERINGS = {
    "relu": _op("Relu"),
    "leakyrelu": _op_with_alpha("LeakyRelu", "leakyrelu"),
    "elu": _op_with_alpha("Elu", "elu"),
    "sigmoid": _op("Sigmoid"),
    "tanh": _op("Tanh"),
    "softmax": _op("Softmax", axis=1),  # over classes (or channels)
    "relu6": _relu6,
    "silu": _gated("Sigmoid"),
    "swish": _gated("Sigmoid"),
    "hardsigmoid": _op("HardSigmoid", **HARD_SIGMOID),
    "hardswish": _gated("HardSigmoid", **HARD_SIGMOID),
    "gelu": _gelu,
    "mish": _mish,
    "softplus": _op("Softplus"),
}


def _activation(g: _Graph, fn: str, alpha: float | None, x: str, out: str, name: str, doc: str) -> None:
    rule_for(ACTIVATION_LOWERINGS, fn, "ONNX export")(g, alpha, x, out, name, doc)


def _with_activation(entry: CheckedLayer, out: str) -> str:
    """Where the main op writes: straight to `out`, or to a tensor the activation reads."""
    activation = getattr(entry.layer.config, "activation", None)
    return f"{out}.preact" if activation else out


def _finish_activation(g: _Graph, entry: CheckedLayer, out: str) -> None:
    activation = getattr(entry.layer.config, "activation", None)
    if activation:
        _activation(
            g,
            activation.name,
            activation.alpha,
            f"{out}.preact",
            out,
            f"{entry.name}.{activation.name}",
            _doc(entry),
        )


def _onnx_pads(pads: tuple[int, ...]) -> list[int]:
    """(begin, end) per axis -> ONNX's order: all begins, then all ends."""
    return [*pads[::2], *pads[1::2]]


def _pads(entry: CheckedLayer, floor_mode: bool = False) -> list[int]:
    pads = entry.floor_mode_pads if floor_mode else entry.pads
    assert pads is not None  # windowed layers always have them
    return _onnx_pads(pads)


def lower_conv(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    config = entry.config_as(Conv)
    inputs = [x, g.tensor(f"{entry.name}.weight")]
    if "bias" in entry.tensors or f"{entry.name}.bias" in g.folded:
        inputs.append(g.tensor(f"{entry.name}.bias"))
    target = _with_activation(entry, out)
    g.node(
        "Conv",
        inputs,
        target,
        entry.name,
        _doc(entry),
        kernel_shape=list(config.kernel),
        strides=list(config.stride),
        pads=_pads(entry),
        dilations=list(config.dilation),
        group=config.groups,
    )
    _finish_activation(g, entry, out)


def lower_pool(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    config = entry.config_as(Pool)
    attrs = dict(
        kernel_shape=list(config.kernel),
        strides=list(config.window_stride),
        pads=_pads(entry, floor_mode=True),
    )
    if config.mode == "max":
        g.node("MaxPool", [x], out, entry.name, _doc(entry), **attrs)
    else:  # padding is counted in the average only where the spec says count_pad
        count = int(config.count_pad)
        g.node("AveragePool", [x], out, entry.name, _doc(entry), count_include_pad=count, **attrs)


def lower_globalpool(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    op = "GlobalMaxPool" if entry.config_as(GlobalPool).mode == "max" else "GlobalAveragePool"
    g.node(op, [x], out, entry.name, _doc(entry))


def lower_batchnorm(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    if entry.name in g.folded_bn:
        g.node("Identity", [x], out, entry.name, _doc(entry) + " (folded into the previous layer)")
        return
    names = [
        g.tensor(f"{entry.name}.{suffix}") for suffix in ("weight", "bias", "running_mean", "running_var")
    ]
    g.node(
        "BatchNormalization",
        [x, *names],
        out,
        entry.name,
        _doc(entry),
        epsilon=float(entry.config_as(BatchNorm).eps),
    )


def lower_layernorm(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """From opset 17, LayerNormalization over the last axis of the channels-last map (as
    PyTorch exports LayerNorm2d); below it, the same computed over axis 1 in plain ops."""
    name, doc = entry.name, _doc(entry)
    eps = float(entry.config_as(LayerNorm).eps)
    if g.opset >= 17:
        weight, bias = g.tensor(f"{name}.weight"), g.tensor(f"{name}.bias")
        axes = len(entry.input_shape) - 1  # spatial axes: channels go last, then back
        last, first = [0, *range(2, axes + 2), 1], [0, axes + 1, *range(1, axes + 1)]
        g.node("Transpose", [x], f"{name}.nhwc", f"{name}.to_nhwc", doc, perm=last)
        g.node(
            "LayerNormalization",
            [f"{name}.nhwc", weight, bias],
            f"{name}.normed",
            name,
            doc,
            axis=-1,
            epsilon=eps,
        )
        g.node("Transpose", [f"{name}.normed"], out, f"{name}.to_nchw", doc, perm=first)
        return
    _constants(g, {f"{name}.c_eps": eps, f"{name}.c_two": 2.0})
    g.node("ReduceMean", [x], f"{name}.mean", f"{name}.mean", doc, axes=[1])
    g.node("Sub", [x, f"{name}.mean"], f"{name}.centered", f"{name}.sub", doc)
    g.node("Pow", [f"{name}.centered", f"{name}.c_two"], f"{name}.squared", f"{name}.pow", doc)
    g.node("ReduceMean", [f"{name}.squared"], f"{name}.var", f"{name}.var", doc, axes=[1])
    g.node("Add", [f"{name}.var", f"{name}.c_eps"], f"{name}.var_eps", f"{name}.add_eps", doc)
    g.node("Sqrt", [f"{name}.var_eps"], f"{name}.std", f"{name}.sqrt", doc)
    g.node("Div", [f"{name}.centered", f"{name}.std"], f"{name}.normed", f"{name}.div", doc)
    g.node("Mul", [f"{name}.normed", _per_channel(g, entry)], f"{name}.scaled", f"{name}.mul", doc)
    g.node("Add", [f"{name}.scaled", _per_channel(g, entry, "bias")], out, name, doc)


def _per_channel(g: _Graph, entry: CheckedLayer, suffix: str = "weight") -> str:
    """The layer's (C,) tensor as ONNX broadcasts it over a map: unsqueezed to Cx1x1 (one 1
    per spatial axis)."""
    factor = g.tensor(f"{entry.name}.{suffix}")
    spatial = len(entry.input_shape) - 1
    if spatial == 0:
        return factor
    axes = f"{entry.name}.c_{suffix}_axes"  # c_: a constant, not a tensor of the layer
    g.initializers.append(numpy_helper.from_array(np.arange(1, spatial + 1, dtype=np.int64), axes))
    # No `.` in the name: an import names the layer after its node, not this computed tensor.
    unsqueezed = f"{entry.name}_{suffix}_per_channel"
    g.node("Unsqueeze", [factor, axes], unsqueezed, f"{entry.name}.unsqueeze_{suffix}", _doc(entry))
    return unsqueezed


def lower_scale(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """x times one factor per channel."""
    g.node("Mul", [x, _per_channel(g, entry)], out, entry.name, _doc(entry))


def lower_prelu(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """PRelu with a slope per channel (Cx1x1 on a map) or one slope, (1,), for all."""
    g.node("PRelu", [x, _per_channel(g, entry)], out, entry.name, _doc(entry))


def lower_dense(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    inputs = [x, g.tensor(f"{entry.name}.weight")]
    if "bias" in entry.tensors or f"{entry.name}.bias" in g.folded:
        inputs.append(g.tensor(f"{entry.name}.bias"))
    target = _with_activation(entry, out)
    g.node("Gemm", inputs, target, entry.name, _doc(entry), transB=1)
    _finish_activation(g, entry, out)


def lower_deconv(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    config = entry.config_as(Deconv)
    pads, output_pad = config.resolved()
    inputs = [x, g.tensor(f"{entry.name}.weight")]
    if "bias" in entry.tensors:
        inputs.append(g.tensor(f"{entry.name}.bias"))
    g.node(
        "ConvTranspose",
        inputs,
        _with_activation(entry, out),
        entry.name,
        _doc(entry),
        kernel_shape=list(config.kernel),
        strides=list(config.stride),
        pads=_onnx_pads(pads),
        dilations=list(config.dilation),
        group=config.groups,
        output_padding=list(output_pad),
    )
    _finish_activation(g, entry, out)


def lower_upsample(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    config = entry.config_as(Upsample)
    scales = f"{entry.name}.scales"
    g.initializers.append(numpy_helper.from_array(np.array([1, 1, *config.scale], np.float32), scales))
    if config.mode == "nearest":  # PyTorch's nearest: floor of the asymmetric source index
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:  # PyTorch's bilinear with align_corners=False
        attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    g.node("Resize", [x, "", scales], out, entry.name, _doc(entry), **attrs)


def lower_join(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """add, concat, multiply over the layers it names (a single input passes through)."""
    inputs = list(entry.inputs)
    if len(inputs) == 1:
        g.node("Identity", inputs, out, entry.name, _doc(entry))
    elif entry.kind == "concat":
        g.node("Concat", inputs, out, entry.name, _doc(entry), axis=1)
    elif entry.kind == "add" and len(inputs) > 2:
        g.node("Sum", inputs, out, entry.name, _doc(entry))
    else:  # Add or Mul, pairwise; a Cx1x1 gate broadcasts as N x C x 1 x 1
        op = "Add" if entry.kind == "add" else "Mul"
        current = inputs[0]
        for i, other in enumerate(inputs[1:], 1):
            target = out if i == len(inputs) - 1 else f"{out}.{i}"
            g.node(
                op,
                [current, other],
                target,
                entry.name if target == out else f"{entry.name}.{i}",
                _doc(entry),
            )
            current = target


def lower_dropout(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """ONNX Dropout outside training passes values through; kept as Dropout (not Identity)
    so that the rate survives an import of the model."""
    ratio = f"{entry.name}.ratio"
    g.nodes.append(
        helper.make_node(
            "Constant",
            [],
            [ratio],
            name=ratio,
            value=numpy_helper.from_array(np.array(entry.config_as(Dropout).rate, np.float32)),
        )
    )
    g.node("Dropout", [x, ratio], out, entry.name, _doc(entry) + " (inference: passes values through)")


def lower_droppath(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """Identity: stochastic depth drops nothing at inference. The doc string carries the
    rate, so that an import of the model writes the layer back."""
    note = DROPPATH_NOTE.format(rate=entry.config_as(DropPath).rate)
    g.node("Identity", [x], out, entry.name, f"{_doc(entry)} ({note})")


def _int64s(g: _Graph, name: str, values: list[int]) -> str:
    g.initializers.append(numpy_helper.from_array(np.array(values, np.int64), name))
    return name


def lower_slice(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """Channels [start, end) along axis 1 (a split's part is one such slice)."""
    bounds = entry.config_as(Slice).bounds(entry.input_shape[0])
    assert bounds is not None  # checked by infer
    start, end = bounds
    inputs = [
        x,
        _int64s(g, f"{entry.name}.c_starts", [start]),
        _int64s(g, f"{entry.name}.c_ends", [end]),
        _int64s(g, f"{entry.name}.c_axes", [1]),
    ]
    g.node("Slice", inputs, out, entry.name, _doc(entry))


def lower_shuffle(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """Channel shuffle as ShuffleNet exports it: N x G x C/G x rest, swap the two channel
    axes, back to the input's shape (0 copies the batch size)."""
    groups, shape = entry.config_as(Shuffle).groups, list(entry.input_shape)
    grouped = _int64s(g, f"{entry.name}.c_grouped", [0, groups, shape[0] // groups, -1])
    back = _int64s(g, f"{entry.name}.c_shape", [0, *shape])
    g.node("Reshape", [x, grouped], f"{entry.name}.grouped_x", f"{entry.name}.group", _doc(entry))
    g.node(
        "Transpose",
        [f"{entry.name}.grouped_x"],
        f"{entry.name}.swapped",
        f"{entry.name}.swap",
        _doc(entry),
        perm=[0, 2, 1, 3],
    )
    g.node("Reshape", [f"{entry.name}.swapped", back], out, entry.name, _doc(entry))


PAD_MODES = {"zero": "constant", "reflect": "reflect", "edge": "edge"}  # cnnspec's word -> ONNX's


def lower_pad(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    """ONNX Pad: all begins (N, C, spatial axes), then all ends; zeros, a mirror, or the border."""
    config = entry.config_as(Pad)
    sizes = config.sizes
    pads = _int64s(g, f"{entry.name}.c_pads", [0, 0, *sizes[::2], 0, 0, *sizes[1::2]])
    g.node("Pad", [x, pads], out, entry.name, _doc(entry), mode=PAD_MODES[config.mode])


def lower_flatten(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    g.node("Flatten", [x], out, entry.name, _doc(entry), axis=1)


def lower_activation(g: _Graph, entry: CheckedLayer, x: str, out: str) -> None:
    config = entry.config_as(ActivationLayer)
    _activation(g, config.fn, config.alpha, x, out, entry.name, _doc(entry))


LOWERINGS = {
    "conv": lower_conv,
    "pool": lower_pool,
    "globalpool": lower_globalpool,
    "batchnorm": lower_batchnorm,
    "scale": lower_scale,
    "layernorm": lower_layernorm,
    "prelu": lower_prelu,
    "dropout": lower_dropout,
    "droppath": lower_droppath,
    "slice": lower_slice,
    "pad": lower_pad,
    "shuffle": lower_shuffle,
    "flatten": lower_flatten,
    "dense": lower_dense,
    "deconv": lower_deconv,
    "upsample": lower_upsample,
    "add": lower_join,
    "concat": lower_join,
    "multiply": lower_join,
    "activation": lower_activation,
}


def _fold_batchnorm(network: CheckedNetwork, weights: WeightSet) -> tuple[dict[str, np.ndarray], set[str]]:
    """conv/dense -> batchnorm pairs (no activation between) become one layer:
    W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta."""
    folded: dict[str, np.ndarray] = {}
    folded_bn: set[str] = set()
    layers = network.layers
    readers: dict[str, int] = {}
    for layer in layers:
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1
    for before, bn in zip(layers, layers[1:]):
        if bn.kind != "batchnorm" or before.kind not in ("conv", "dense"):
            continue
        # Only a batch norm that is its layer's only reader: another reader needs the
        # unnormalised values (and an output is read from outside).
        if bn.inputs != (before.name,) or readers.get(before.name) != 1 or before.name in network.outputs:
            continue
        if before.layer.config.activation_name is not None:
            continue
        a = weights.arrays
        scale = a[f"{bn.name}.weight"] / np.sqrt(a[f"{bn.name}.running_var"] + bn.config_as(BatchNorm).eps)
        weight = a[f"{before.name}.weight"]
        bias = a.get(f"{before.name}.bias", np.zeros(weight.shape[0], np.float32))
        shape = (-1,) + (1,) * (weight.ndim - 1)
        folded[f"{before.name}.weight"] = (weight * scale.reshape(shape)).astype(np.float32)
        folded[f"{before.name}.bias"] = (
            (bias - a[f"{bn.name}.running_mean"]) * scale + a[f"{bn.name}.bias"]
        ).astype(np.float32)
        folded_bn.add(bn.name)
    return folded, folded_bn


def to_onnx(
    network: CheckedNetwork,
    weights: WeightSet,
    opset: int = DEFAULT_OPSET,
    fold_bn: bool = False,
    spec_text: str | None = None,
    external: _ExternalData | None = None,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """Build the ONNX model of a checked, error-free network (with its weights streamed
    to `external` when given; see `write_model`)."""
    if not network.complete:
        raise CnnspecError(
            [Diagnostic("error", "shape-mismatch", f"network '{network.name}' has shape errors")]
        )
    supported = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= supported:
        raise ValueError(f"opset {opset} is outside {MIN_OPSET}..{supported}")
    g = _Graph(opset, weights, external)
    if fold_bn:
        g.folded, g.folded_bn = _fold_batchnorm(network, weights)
    for entry in network.layers:  # each reads its inputs by name: the graph as written
        lower = rule_for(LOWERINGS, entry.kind, "ONNX export")
        lower(g, entry, entry.inputs[0], entry.name)
    if len(network.outputs) > 1:  # several outputs: graph outputs named after their layers
        outputs = [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])
            for name, shape in zip(network.outputs, network.output_shapes)
        ]
    else:
        last = network.outputs[0] if network.outputs else "input"
        g.nodes.append(helper.make_node("Identity", [last], ["output"], name="output"))
        outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *network.output_shape])]
    graph = helper.make_graph(
        g.nodes,
        network.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *network.input_shape])],
        outputs,
        initializer=g.initializers,
        doc_string=f"{network.name} from {network.path}:{network.line}",
    )
    model = helper.make_model_gen_version(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="cnnspec",
        producer_version=__version__,
    )
    properties = {
        "cnnspec_version": __version__,
        "network": network.name,
        "frozen_tensors": ",".join(weights.frozen_names),
        "trainable_params": str(network.trainable_params),
        "total_params": str(network.total_params),
    }
    if spec_text is not None:
        properties["spec"] = spec_text
    properties.update(metadata or {})
    helper.set_model_props(model, properties)
    return model


def build_model(
    network: CheckedNetwork,
    seed: int = 0,
    weights_file: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    fold_bn: bool = False,
    spec_text: str | None = None,
) -> tuple[onnx.ModelProto, WeightSet]:
    """Weights (fresh from `seed`, or carried over from `weights_file`) and the checked model."""
    from .weights import build_weights, load_file

    provided = load_file(weights_file) if weights_file else None
    weights = build_weights(network, seed, provided)
    if needs_external_data(weights):
        raise CnnspecError(
            [
                Diagnostic(
                    "error",
                    "weights-file",
                    f"'{network.name}' has {weight_bytes(weights) / 2**30:.1f} GiB of weights, above protobuf's 2 GB "
                    "limit for a model in memory",
                    None,
                    "write it to a file with `cnnspec export` (weights go beside it)",
                )
            ]
        )
    model = to_onnx(network, weights, opset, fold_bn, spec_text)
    onnx.checker.check_model(model, full_check=True)
    return model, weights


def weight_bytes(weights: WeightSet) -> int:
    return sum(math.prod(p.shape) * 4 for p in weights.plan)  # from the plan: fresh tensors are not made


def needs_external_data(weights: WeightSet) -> bool:
    return weight_bytes(weights) > EXTERNAL_DATA_THRESHOLD


def intermediate_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns the named layer outputs (for tests and
    debugging); their shapes are left for the runtime to report."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {output.name for output in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(helper.make_empty_tensor_value_info(name))
    return copy


def save(model: onnx.ModelProto, out: str | Path, protect: tuple[Path, ...] = ()) -> list[Path]:
    """Write a model atomically: into a temporary file beside OUT, then rename."""
    final = target(out, protect)
    temp = temporary(final)
    try:
        onnx.save_model(model, str(temp))
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    return [final]


_DATA_NAME = re.compile(r"\.[0-9a-f]{16}\.data$")


def data_file_name(model: Path) -> Path:
    """A fresh name for the weights beside a model above 2 GB: `net.onnx.<random>.data`.

    A new export never writes into the data file an existing model reads, so a model and
    its data always belong together: an export stopped at any point leaves the old pair
    or the new pair, never the old model with new weights."""
    return model.with_name(f"{model.name}.{secrets.token_hex(8)}.data")


def _own_data_files(model: Path) -> list[Path]:
    """The data files an earlier cnnspec export of `model` reads (its own naming only)."""
    try:
        old = onnx.load(str(model), load_external_data=False)
    except Exception:  # not a model of ours, or unreadable: leave whatever is beside it
        return []
    found = set()
    for tensor in old.graph.initializer:
        for entry in tensor.external_data:
            if (
                entry.key == "location"
                and entry.value.startswith(model.name + ".")
                and _DATA_NAME.search(entry.value)
            ):
                found.add(model.with_name(entry.value))
    return sorted(found)


def write_model(
    network: CheckedNetwork,
    weights: WeightSet,
    out: str | Path,
    opset: int = DEFAULT_OPSET,
    fold_bn: bool = False,
    spec_text: str | None = None,
    protect: tuple[Path, ...] = (),
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Build, check and write the model. Above protobuf's 2 GB limit the weights stream
    into a data file beside it (see `data_file_name`). Either way the files appear only
    when complete, and a stopped export (an exception, Ctrl-C, SIGTERM) leaves nothing."""
    final = target(out, protect)
    if not needs_external_data(weights):
        model = to_onnx(network, weights, opset, fold_bn, spec_text, metadata=metadata)
        onnx.checker.check_model(model, full_check=True)
        return save(model, final)
    stale = _own_data_files(final) if final.exists() else []
    data = data_file_name(final)
    temp_data = temporary(data)
    temp = temporary(final)
    external = _ExternalData(temp_data, data.name)
    try:
        try:
            model = to_onnx(network, weights, opset, fold_bn, spec_text, external, metadata)
        finally:
            external.close()
        onnx.save_model(model, str(temp))
        os.replace(temp_data, data)
        onnx.checker.check_model(str(temp), full_check=True)  # reads the data beside it
        os.replace(temp, final)
    except BaseException:
        data.unlink(missing_ok=True)  # a fresh name: no model but the unfinished one reads it
        raise
    finally:
        temp.unlink(missing_ok=True)
        temp_data.unlink(missing_ok=True)
    for old in stale:  # the replaced model's weights: nothing reads them any more
        if old != data:
            old.unlink(missing_ok=True)
    return [final, data]


FP16_MAX = 65504.0
# Inputs that stay float32 in an fp16 model: their types are fixed apart from the data's.
_FLOAT32_INPUTS = {"Resize": (1, 2)}  # roi, scales


def _initializers_to_fp16(graph) -> None:
    """Every float32 weight as float16, except the inputs ops need in float32."""
    keep32 = {
        node.input[i]
        for node in graph.node
        for i in _FLOAT32_INPUTS.get(node.op_type, ())
        if len(node.input) > i
    }
    too_large = []
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type != TensorProto.FLOAT or tensor.name in keep32:
            continue
        array = numpy_helper.to_array(tensor)
        if array.size and float(np.max(np.abs(array))) > FP16_MAX:
            too_large.append(tensor.name)
        graph.initializer[i].CopyFrom(numpy_helper.from_array(array.astype(np.float16), tensor.name))
    if too_large:
        raise CnnspecError(
            [
                Diagnostic(
                    "error",
                    "weights-file",
                    f"values above float16's range (65,504) in {', '.join(too_large[:5])}",
                    None,
                    "export in fp32 (drop --fp16)",
                )
            ]
        )


def _cast_at_the_ends(graph) -> None:
    """A Cast to float16 after the input and one to float32 before each output."""
    name = graph.input[0].name
    for node in graph.node:
        node.input[:] = [f"{name}.fp16" if x == name else x for x in node.input]
    casts = [
        helper.make_node("Cast", [name], [f"{name}.fp16"], name=f"{name}.to_fp16", to=TensorProto.FLOAT16)
    ]
    for output in graph.output:
        for node in graph.node:
            node.output[:] = [f"{output.name}.fp16" if x == output.name else x for x in node.output]
            node.input[:] = [f"{output.name}.fp16" if x == output.name else x for x in node.input]
        casts.append(
            helper.make_node(
                "Cast",
                [f"{output.name}.fp16"],
                [output.name],
                name=f"{output.name}.to_fp32",
                to=TensorProto.FLOAT,
            )
        )
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([casts[0], *nodes, *casts[1:]])


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same network computing in float16 (for GPUs: half the memory and bandwidth,
    tensor cores), taking and giving float32 so that callers feed it as before: a Cast
    after the input and before each output. Raises CnnspecError naming the tensors whose
    values do not fit in float16."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    _initializers_to_fp16(graph)
    for node in graph.node:
        if node.op_type == "Constant":  # e.g. a dropout's ratio
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.t.data_type == TensorProto.FLOAT:
                    attribute.t.CopyFrom(
                        numpy_helper.from_array(
                            numpy_helper.to_array(attribute.t).astype(np.float16), attribute.t.name
                        )
                    )
    _cast_at_the_ends(graph)
    metadata = {p.key: p.value for p in model.metadata_props}
    metadata["precision"] = "fp16"
    helper.set_model_props(model, metadata)
    return model
