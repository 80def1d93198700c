"""One handler per ONNX op type: how its node becomes layers (or folds into its neighbours)."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..kinds import (
    DROPPATH_NOTE,
    MAX_RANK,
    ActivationLayer,
    Add,
    BatchNorm,
    Concat,
    Conv,
    Deconv,
    Dense,
    Dropout,
    DropPath,
    Flatten,
    GlobalPool,
    Multiply,
    Pad,
    Pool,
    PReLU,
    Scale,
    Shape,
    Shuffle,
    Slice,
    Upsample,
)
from . import hard_gates, layernorm
from .state import (
    BATCH,
    Act,
    NotAModel,
    Partial,
    State,
    Unsupported,
    activation_of,
    add_layer,
    as_float32,
    as_map,
    as_viewed,
    attributes_of,
    constant_of,
    extra_outputs_read,
    is_number,
    map_of,
    node_label,
    onnx_pads,
    optional,
    pads_of,
    sizes,
    validated,
)


def _filter_inputs(state: State, node, what: str) -> tuple[Act, np.ndarray, dict]:
    """A conv's or deconv's input, 4-D weight, and its tensors (weight, and bias if given)."""
    x = activation_of(state, node.input[0])
    w = constant_of(state, node.input[1])
    if not 3 <= w.ndim <= MAX_RANK + 2 or len(x.shape) != w.ndim - 1:
        raise Unsupported(f"only 1-D, 2-D and 3-D {what} of maps (CxL, CxHxW, CxDxHxW)")
    tensors = {"weight": w}
    if bias_name := optional(node, 2):
        tensors["bias"] = constant_of(state, bias_name)
    return x, w, tensors


def _conv(state: State, node) -> Act:
    x, w, tensors = _filter_inputs(state, node, "convolutions")
    attrs = attributes_of(node)
    ones = (1,) * (w.ndim - 2)
    kernel = sizes(attrs, "kernel_shape", tuple(int(k) for k in w.shape[2:]))
    stride = sizes(attrs, "strides", ones)
    dilation = sizes(attrs, "dilations", ones)
    pads = pads_of(attrs, (0, *x.shape[1:]), kernel, stride, dilation)
    x, pads = _absorbed_zero_pad(state, x, pads)
    config = validated(
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
    return add_layer(state, node, config, [x], tensors, node.input[1])


def _absorbed_zero_pad(
    state: State, x: Act, pads: tuple[int, ...] | str
) -> tuple[Act, tuple[int, ...] | str]:
    """A zero `pad` read only by this conv becomes the conv's own padding (Keras' and
    TensorFlow's ZeroPadding2D before a conv, as converters write it)."""
    layer = state.layers.get(x.layer)
    if (
        layer is None
        or not isinstance(layer.config, Pad)
        or layer.config.mode != "zero"
        or not isinstance(pads, tuple)
        or state.readers[_tensor_of(state, x.layer)] != 1
    ):
        return x, pads
    added = layer.config.sizes
    del state.layers[x.layer]
    unpadded = tuple(n - b - e for n, b, e in zip(x.shape[1:], added[::2], added[1::2]))
    source = Act(layer.inputs[0], (x.shape[0], *unpadded))
    return source, tuple(p + a for p, a in zip(pads, added))


def _deconv(state: State, node) -> Act:
    x, w, tensors = _filter_inputs(state, node, "transposed convolutions")
    attrs = attributes_of(node)
    if "output_shape" in attrs:
        raise Unsupported("output_shape is not supported; export with pads and output_padding")
    auto = attrs.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID"):
        raise Unsupported("auto_pad SAME on a transposed convolution")
    groups = int(attrs.get("group", 1))
    ones = (1,) * (w.ndim - 2)
    config = validated(
        Deconv,
        {
            "filters": int(w.shape[1]) * groups,
            "kernel": sizes(attrs, "kernel_shape", tuple(int(k) for k in w.shape[2:])),
            "stride": sizes(attrs, "strides", ones),
            "pad": onnx_pads(attrs, len(ones)),
            "output_pad": sizes(attrs, "output_padding", (0,) * len(ones)),
            "dilation": sizes(attrs, "dilations", ones),
            "groups": groups,
            "bias": "bias" in tensors,
        },
    )
    return add_layer(state, node, config, [x], tensors, node.input[1])


def _batchnorm(state: State, node) -> Act:
    x = activation_of(state, node.input[0])
    attrs = attributes_of(node)
    if attrs.get("training_mode", 0) or extra_outputs_read(state, node):
        raise Unsupported("training-mode batch norm (export the model in eval mode)")
    names = {
        "weight": node.input[1],
        "bias": node.input[2],
        "running_mean": node.input[3],
        "running_var": node.input[4],
    }
    tensors = {suffix: constant_of(state, n).reshape(-1) for suffix, n in names.items()}
    if np.any(tensors["running_var"] < 0):
        raise NotAModel(
            f"node '{node_label(node)}' (BatchNormalization): its running variance has negative values"
        )
    eps = as_float32(attrs.get("epsilon", 1e-5))
    momentum = as_float32(
        1.0 - as_float32(attrs.get("momentum", 0.9))
    )  # ONNX keeps the old share, PyTorch the new
    config = validated(BatchNorm, {"eps": eps, "momentum": momentum})
    return add_layer(state, node, config, [x], tensors, node.input[1])


def _gemm(state: State, node) -> Act:
    x = activation_of(state, node.input[0])
    if len(x.shape) != 1:
        raise Unsupported("a matrix product of a CxHxW map (flatten it first)")
    attrs = attributes_of(node)
    if attrs.get("transA", 0):
        raise Unsupported("transA=1")
    b = constant_of(state, node.input[1])
    weight = _hwc_columns(state, x, (b if attrs.get("transB", 0) else b.T) * float(attrs.get("alpha", 1.0)))
    tensors = {"weight": weight}
    c_name = optional(node, 2)
    if c_name:
        c = constant_of(state, c_name) * float(attrs.get("beta", 1.0))
        tensors["bias"] = np.broadcast_to(c.reshape(-1) if c.size > 1 else c.reshape(()), (weight.shape[0],))
    config = validated(Dense, {"units": int(weight.shape[0]), "bias": c_name is not None})
    return add_layer(state, node, config, [x], tensors, node.input[1])


def _matmul(state: State, node) -> Act | Partial:
    found = as_map(state.values.get(node.input[0]))
    if found is not None and found[1]:  # a Linear on the channels-last view: a 1x1 conv
        return _channels_last_linear(state, node, found[0])
    x = activation_of(state, node.input[0])
    b = constant_of(state, node.input[1])
    if len(x.shape) != 1 or b.ndim != 2:
        raise Unsupported("only a flat vector times a constant matrix")
    config = validated(Dense, {"units": int(b.shape[1]), "bias": False})
    return add_layer(state, node, config, [x], {"weight": _hwc_columns(state, x, b.T)}, node.input[1])


def _channels_last_linear(state: State, node, x: Act) -> Partial:
    b = constant_of(state, node.input[1])
    if len(x.shape) != 3 or b.ndim != 2 or b.shape[0] != x.shape[0]:
        raise Unsupported("a matrix product of a channels-last map other than over its channels")
    config = validated(Conv, {"filters": int(b.shape[1]), "kernel": (1, 1), "bias": False})
    weight = np.ascontiguousarray(b.T).reshape(b.shape[1], b.shape[0], 1, 1)
    return Partial("nhwc", add_layer(state, node, config, [x], {"weight": weight}, node.input[1]))


def _hwc_columns(state: State, x: Act, weight: np.ndarray) -> np.ndarray:
    """A dense weight whose inputs came flattened in HxWxC order, reordered for cnnspec's
    CxHxW flatten: the same products, so the same outputs."""
    shape = state.hwc_flatten.pop(x.layer, None)
    if shape is None:
        return weight
    if state.readers[_tensor_of(state, x.layer)] != 1:
        raise Unsupported("an HxWxC flatten read by more than this dense layer")
    c, h, w = shape
    order = np.arange(c * h * w).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
    return weight[:, order]


def _partial_pair(state: State, node, stage: str, number: float) -> Partial | None:
    """(the Partial at `stage`, the constant `number`) among the node's two inputs."""
    a, b = (state.values.get(n) for n in node.input[:2])
    for partial, const in ((a, b), (b, a)):
        if isinstance(partial, Partial) and partial.stage == stage and is_number(const, number):
            return partial
    return None


def _first_match(state: State, node, *patterns: Callable) -> Act | Partial | None:
    """What the first pattern that recognises the node makes of it. Tried in turn, never
    all at once: a pattern that matches changes the state (folds a factor, adds a layer)."""
    for pattern in patterns:
        found = pattern(state, node)
        if found is not None:
            return found
    return None


def _div(state: State, node):
    x, c = (state.values.get(n) for n in node.input[:2])
    seen = as_map(x)
    if seen is not None and is_number(c, math.sqrt(2)):
        return Partial("div", seen[0], nhwc=seen[1])
    found = _first_match(state, node, layernorm.normalised, lambda s, n: hard_gates.sixth(s, n, divides=True))
    if found is not None:
        return found
    raise Unsupported("a division cnnspec has no layer for")


def _erf(state: State, node):
    value = state.values.get(node.input[0])
    if isinstance(value, Partial) and value.stage == "div":
        return Partial("erf", value.x, nhwc=value.nhwc)
    raise Unsupported("erf outside GELU")


def _add(state: State, node) -> Act | Partial:
    if (partial := _partial_pair(state, node, "erf", 1.0)) is not None:
        return Partial("plus", partial.x, nhwc=partial.nhwc)
    found = _first_match(state, node, layernorm.plus_eps, layernorm.fold_affine, hard_gates.plus_three)
    if found is not None:
        return found
    a, b = (state.values.get(n) for n in node.input[:2])
    nhwc_bias = _channels_last_bias(state, node)
    if nhwc_bias is not None:
        return nhwc_bias
    if isinstance(a, Act) and isinstance(b, Act):
        return add_layer(state, node, Add(), [a, b], {})
    act, const = (a, b) if isinstance(a, Act) else (b, a)
    dense = state.layers.get(act.layer) if isinstance(act, Act) else None
    if (
        isinstance(act, Act)
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
    raise Unsupported("adds a constant tensor (only a bias after MatMul can be written)")


def _channels_last_bias(state: State, node) -> Partial | None:
    """A bias added after a MatMul on the channels-last view (a Linear on NHWC: a 1x1 conv)."""
    names = list(node.input[:2])
    for name, other in (names, names[::-1]):
        value, const = state.values.get(name), state.values.get(other)
        found = as_map(value)
        if found is None or not found[1] or not isinstance(const, np.ndarray) or state.readers[name] != 1:
            continue
        conv = state.layers.get(found[0].layer)
        if conv is None or not isinstance(conv.config, Conv) or conv.config.bias:
            continue
        if const.size in (1, conv.config.filters) and const.ndim <= 1:
            conv.tensors["bias"] = np.broadcast_to(const.reshape(-1), (conv.config.filters,)).astype(
                np.float32
            )
            conv.config = dataclasses.replace(conv.config, bias=True)
            return Partial("nhwc", found[0])
    return None


def _tensor_of(state: State, layer: str) -> str:
    """The ONNX tensor a layer writes (for counting its readers)."""
    return state.layer_tensor.get(layer, "")


def _sum(state: State, node) -> Act:
    inputs = [activation_of(state, n) for n in node.input]
    return inputs[0] if len(inputs) == 1 else add_layer(state, node, Add(), inputs, {})


def _per_channel(state: State, node) -> Act | Partial | None:
    """A layer's output times a constant with one factor per channel: Cx1x1 or 1xCx1x1 on a
    map (a (C,) constant would scale the last axis, by ONNX's broadcasting), C or 1xC on a
    vector. That is a `scale` (layer scale); None for any other product."""
    values = [state.values.get(n) for n in node.input[:2]]
    for (value, factors), name in ((values, node.input[1]), (values[::-1], node.input[0])):
        found = as_map(value)
        if found is None or not isinstance(factors, np.ndarray):
            continue
        x, nhwc = found
        shape = factors.shape
        if (nhwc and shape in ((x.shape[0],), (1, 1, 1, x.shape[0]))) or (
            not nhwc and _one_per_channel(shape, x.shape)
        ):
            scaled = add_layer(state, node, Scale(), [x], {"weight": factors.reshape(-1)}, name)
            return as_viewed(scaled, nhwc)
    return None


def _one_per_channel(factors: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    channels = shape[0]
    if len(shape) >= 2:
        ones = (1,) * (len(shape) - 1)
        return factors in ((channels, *ones), (1, channels, *ones))
    return factors in ((channels,), (1, channels))


def _mul(state: State, node) -> Act | Partial:
    if (partial := _partial_pair(state, node, "half", 0.5)) is not None:
        gelu = add_layer(state, node, ActivationLayer(fn="gelu"), [partial.x], {})
        return as_viewed(gelu, partial.nhwc)
    values = [state.values.get(n) for n in node.input[:2]]
    for x, plus in (values, values[::-1]):
        if isinstance(plus, Partial) and plus.stage == "plus" and as_map(x) == (plus.x, plus.nhwc):
            return Partial("half", plus.x, nhwc=plus.nhwc)
    found = _first_match(
        state,
        node,
        layernorm.square,
        layernorm.fold_affine,
        lambda s, n: hard_gates.sixth(s, n, divides=False),
        hard_gates.times_gate,
        _per_channel,
    )
    if found is not None:
        return found
    (a, a_nhwc), (b, b_nhwc) = (map_of(state, n) for n in node.input[:2])
    if a_nhwc != b_nhwc:
        raise Unsupported("multiplies a channels-last view by a channels-first map")
    for x, gate in ((a, b), (b, a)):
        fn = _gated_activation(state, x, gate)
        if fn is not None:
            return as_viewed(add_layer(state, node, ActivationLayer(fn=fn), [x], {}), a_nhwc)
    return as_viewed(add_layer(state, node, Multiply(), [a, b], {}), a_nhwc)


# x · f(x) that is one activation: the chain of functions from x to the gate
GATES = {("sigmoid",): "silu", ("hardsigmoid",): "hardswish", ("softplus", "tanh"): "mish"}


def _gated_activation(state: State, x: Act, gate: Act) -> str | None:
    """The activation x · gate is, when the gate is a chain of GATES from x that nothing
    else reads (the chain's layers are removed then); None otherwise."""
    chain: list[str] = []
    name = gate.layer
    while len(chain) < 2:
        layer = state.layers.get(name)
        if (
            layer is None
            or not isinstance(layer.config, ActivationLayer)
            or state.readers[_tensor_of(state, name)] != 1
            or len(layer.inputs) != 1
        ):
            return None
        chain.insert(0, name)
        fns = tuple(state.layers[n].config.fn for n in chain)  # type: ignore[attr-defined]
        if layer.inputs == (x.layer,) and fns in GATES:
            for done in chain:
                del state.layers[done]
            return GATES[fns]
        name = layer.inputs[0]
    return None


def _prelu(state: State, node) -> Act:
    """PRelu with a constant slope per channel (as `_per_channel` reads it) or one slope."""
    x = activation_of(state, node.input[0])
    slope = constant_of(state, node.input[1])
    if slope.size == 1:
        return add_layer(state, node, PReLU(shared=True), [x], {"weight": slope.reshape(1)}, node.input[1])
    if not _one_per_channel(slope.shape, x.shape):
        shown = "x".join(map(str, slope.shape))
        raise Unsupported(f"a {shown} slope; cnnspec's prelu has one slope per channel, or one for all")
    return add_layer(state, node, PReLU(), [x], {"weight": slope.reshape(-1)}, node.input[1])


def _concat(state: State, node) -> Act:
    inputs = [activation_of(state, n) for n in node.input]
    axis = int(attributes_of(node).get("axis", 1))
    rank = len(inputs[0].shape) + 1
    if axis not in (1, 1 - rank):
        raise Unsupported(f"concatenates along axis {axis}; cnnspec joins channels (axis 1)")
    return inputs[0] if len(inputs) == 1 else add_layer(state, node, Concat(), inputs, {})


def _activation(fn: str):
    def handle(state: State, node) -> Act | Partial:
        x, nhwc = map_of(state, node.input[0])
        attrs = attributes_of(node)
        alpha = None
        if fn in ("leakyrelu", "elu"):
            alpha = as_float32(attrs.get("alpha", 0.01 if fn == "leakyrelu" else 1.0))
        if fn == "hardsigmoid":
            if not (
                math.isclose(attrs.get("alpha", 0.2), 1 / 6, rel_tol=1e-5)
                and math.isclose(attrs.get("beta", 0.5), 0.5)
            ):
                raise Unsupported("HardSigmoid other than PyTorch's (alpha=1/6, beta=0.5)")
        if fn == "gelu" and attrs.get("approximate", b"none") not in (b"none", "none"):
            raise Unsupported("the tanh approximation of GELU")
        if fn == "softmax":
            axis = int(attrs.get("axis", 1 if state.opset < 13 else -1))
            rank = len(x.shape) + 1
            flat_like = len(x.shape) == 1 or x.shape[1:] == (1, 1)
            over_channels = axis in (1, 1 - rank) and (state.opset >= 13 or flat_like)
            if nhwc:  # the channels are the last axis of the view
                over_channels = axis in (-1, rank - 1) and (state.opset >= 13 or flat_like)
            if not over_channels and not (len(x.shape) == 1 and axis == -1):
                raise Unsupported(f"softmax over axis {axis}; cnnspec's softmax is over channels or classes")
        return as_viewed(add_layer(state, node, ActivationLayer(fn=fn, alpha=alpha), [x], {}), nhwc)

    return handle


def _clip(state: State, node) -> Act | Partial:
    attrs = attributes_of(node)
    low, high = attrs.get("min"), attrs.get("max")
    if state.opset >= 11:
        low = float(constant_of(state, n)) if (n := optional(node, 1)) else None
        high = float(constant_of(state, n)) if (n := optional(node, 2)) else None
    step = hard_gates.clipped(state, node, low, high)
    if step is not None:
        return step
    x, nhwc = map_of(state, node.input[0])
    if low == 0 and high == 6:
        return as_viewed(add_layer(state, node, ActivationLayer(fn="relu6"), [x], {}), nhwc)
    if low == 0 and high is None:
        return as_viewed(add_layer(state, node, ActivationLayer(fn="relu"), [x], {}), nhwc)
    raise Unsupported(f"Clip({low}, {high}); cnnspec has relu (0, inf) and relu6 (0, 6)")


def _pool(mode: str):
    def handle(state: State, node) -> Act:
        x = activation_of(state, node.input[0])
        if not 2 <= len(x.shape) <= MAX_RANK + 1:
            raise Unsupported("pooling needs a map (CxL, CxHxW or CxDxHxW)")
        attrs = attributes_of(node)
        if extra_outputs_read(state, node):
            raise Unsupported("the indices output of MaxPool")
        if "kernel_shape" not in attrs:
            raise NotAModel(
                f"node '{node_label(node)}' ({node.op_type}) has no kernel_shape, which ONNX requires"
            )
        ones = (1,) * (len(x.shape) - 1)
        kernel = sizes(attrs, "kernel_shape", ones)
        stride = sizes(attrs, "strides", ones)
        if sizes(attrs, "dilations", ones) != ones:
            raise Unsupported("dilated pooling")
        pads = pads_of(attrs, (0, *x.shape[1:]), kernel, stride, ones)
        count_pad = mode == "avg" and bool(attrs.get("count_include_pad", 0)) and pads != (0,) * 2 * len(ones)
        values = {"mode": mode, "kernel": kernel, "stride": stride, "pad": pads, "count_pad": count_pad}
        ceil = bool(attrs.get("ceil_mode", 0))
        config = validated(Pool, {**values, "ceil": ceil})
        if count_pad and ceil:
            floor = validated(Pool, values)
            if config.infer(x.shape).output != floor.infer(x.shape).output:
                raise Unsupported(
                    "count_include_pad=1 with a ceil-mode window past the padding "
                    "(PyTorch and ONNX Runtime count that window differently)"
                )
            config = floor  # ceil mode that changes nothing
        return add_layer(state, node, config, [x], {})

    return handle


def _global_pool(mode: str):
    def handle(state: State, node) -> Act:
        x = activation_of(state, node.input[0])
        return add_layer(state, node, GlobalPool(mode=mode), [x], {})

    return handle


def _reduce(mode: str):
    def handle(state: State, node) -> Act | Partial:
        attrs = attributes_of(node)
        axes = attrs.get("axes")
        if axes is None and (n := optional(node, 1)):
            axes = [int(a) for a in constant_of(state, n).reshape(-1)]
        step = layernorm.channel_mean(state, node, axes, bool(attrs.get("keepdims", 1)))
        if mode == "avg" and step is not None:
            return step  # a layer norm's mean or variance
        x = activation_of(state, node.input[0])
        rank = len(x.shape) + 1
        if rank < 3 or axes is None or sorted(a % rank for a in axes) != list(range(2, rank)):
            raise Unsupported(
                f"reduces over axes {axes}; cnnspec's global pooling is over every spatial axis"
            )
        pooled = add_layer(state, node, GlobalPool(mode=mode), [x], {})
        if attrs.get("keepdims", 1):
            return pooled
        return add_layer(state, node, Flatten(), [pooled], {})

    return handle


def _hwc_source(state: State, name: str) -> Act | None:
    value = state.values.get(name)
    return value.x if isinstance(value, Partial) and value.stage == "nhwc" else None


def _flatten_layer(state: State, node, x: Act, hwc: bool) -> Act:
    if len(x.shape) == 1:
        return x
    flat = add_layer(state, node, Flatten(), [x], {})
    if hwc and set(x.shape[1:]) != {1}:  # on 1x1 maps both orders are the same
        state.hwc_flatten[flat.layer] = x.shape
    return flat


def _flatten(state: State, node) -> Act:
    hwc = _hwc_source(state, node.input[0])
    x = hwc or activation_of(state, node.input[0])
    axis = int(attributes_of(node).get("axis", 1))
    if axis != 1:
        raise Unsupported(f"Flatten(axis={axis}); cnnspec flattens everything but the batch")
    return _flatten_layer(state, node, x, hwc is not None)


def _transpose(state: State, node):
    value = state.values.get(node.input[0])
    perm = [int(p) for p in attributes_of(node).get("perm", [])]
    if (
        isinstance(value, Partial)
        and value.stage == "grouped"
        and perm[:3] == [0, 2, 1]
        and perm[3:] == list(range(3, len(perm)))
    ):
        return Partial("swapped", value.x, value.groups)  # the groups' channels interleaved
    if isinstance(value, Partial) and value.stage == "nhwc_input" and perm == [0, 3, 1, 2]:
        return value.x  # NHWC input to NCHW: the spec takes CxHxW
    if isinstance(value, Act) and len(value.shape) >= 2 and perm == [0, *range(2, len(value.shape) + 1), 1]:
        return Partial("nhwc", value)  # the channels-last view: per-position ops, or a flatten
    if (
        isinstance(value, Partial)
        and value.stage == "nhwc"
        and perm == [0, len(perm) - 1, *range(1, len(perm) - 1)]
    ):
        return value.x  # back to channels first
    raise Unsupported(f"perm={perm}; cnnspec keeps maps as CxHxW")


def _target_dims(state: State, target: list[int], x: Shape) -> list[int] | None:
    """The sizes after the batch that Reshape gives `x` (0 copies, -1 fills in); None when
    the first entry is not the batch or the target does not fit."""
    batch_like = {BATCH, -1, 0} | ({state.declared_batch} if state.declared_batch else set())
    if not target or target[0] not in batch_like:
        return None
    full = [BATCH, *x]
    dims = [full[i] if t == 0 and i < len(full) else t for i, t in enumerate(target)][1:]
    if dims.count(-1) > 1 or any(d == 0 or d < -1 for d in dims):
        return None
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims:
        if known == 0 or math.prod(x) % known:
            return None
        dims[dims.index(-1)] = math.prod(x) // known
    return dims if math.prod(dims) == math.prod(x) else None


def _shuffle_step(state: State, node, value, dims: list[int] | None):
    """Reshape's part in a channel shuffle: CxHxW to G x C/G x H x W (or x HW), or back
    after the Transpose; None when this Reshape is not one."""
    if dims is None:
        return None
    if isinstance(value, Partial) and value.stage == "swapped" and tuple(dims) == value.x.shape:
        return add_layer(state, node, Shuffle(groups=value.groups), [value.x], {})
    if isinstance(value, Act) and len(value.shape) >= 2 and len(dims) >= 3 and dims[0] > 1:
        c, spatial = value.shape[0], list(value.shape[1:])
        if dims[0] * dims[1] == c and dims[2:] in (spatial, [math.prod(spatial)]):
            return Partial("grouped", value, dims[0])
    return None


def _shuffle_reshape(state: State, node, target: list[int]) -> Act | Partial | None:
    value = state.values.get(node.input[0])
    if isinstance(value, Act) or (isinstance(value, Partial) and value.stage == "swapped"):
        shape = value.shape if isinstance(value, Act) else value.x.shape
        return _shuffle_step(state, node, value, _target_dims(state, target, shape))
    return None


def _reshape(state: State, node) -> Act | Partial:
    target = [int(v) for v in constant_of(state, node.input[1]).reshape(-1)]
    shuffled = _shuffle_reshape(state, node, target)
    if shuffled is not None:
        return shuffled
    hwc = _hwc_source(state, node.input[0])
    x = hwc or activation_of(state, node.input[0])
    size = math.prod(x.shape)
    batch_like = {BATCH, -1, 0} | ({state.declared_batch} if state.declared_batch else set())
    if (
        len(target) == 2
        and target[0] in batch_like
        and (target[1] == size or (target[1] == -1 and target[0] != -1))
    ):
        return _flatten_layer(state, node, x, hwc is not None)
    if hwc is not None:
        raise Unsupported("reshapes an HxWxC map other than flattening it")
    full = [BATCH, *x.shape]
    if len(target) == len(full) and all(
        t in (f, 0) or (i == 0 and t in batch_like) for i, (t, f) in enumerate(zip(target, full))
    ):
        return x  # a reshape to the same shape
    shown = ["N" if t == BATCH else str(t) for t in target]
    raise Unsupported(f"reshapes to [{', '.join(shown)}]; cnnspec can only flatten")


INT64_MAX = 2**63 - 1


def _slice_arguments(state: State, node) -> tuple[list[int], list[int], list[int], list[int]]:
    """starts, ends, axes, steps: attributes below opset 10, constant inputs from it."""
    attrs = attributes_of(node)
    if state.opset < 10:
        starts, ends = list(attrs.get("starts", [])), list(attrs.get("ends", []))
        axes = list(attrs.get("axes", range(len(starts))))
        return starts, ends, axes, [1] * len(starts)

    def ints(i: int, default: list[int]) -> list[int]:
        name = optional(node, i)
        return default if name is None else [int(v) for v in constant_of(state, name).reshape(-1)]

    starts, ends = ints(1, []), ints(2, [])
    return starts, ends, ints(3, list(range(len(starts)))), ints(4, [1] * len(starts))


def _clamped(start: int, end: int, size: int) -> tuple[int, int]:
    """ONNX's (and Python's) reading of a slice's bounds on an axis of `size`."""
    start, end = (start + size if start < 0 else start), (end + size if end < 0 else end)
    return min(max(start, 0), size), min(max(end, 0), size)


def _slice(state: State, node) -> Act:
    """Channels [start, end) of a map or vector; every other axis kept whole."""
    x = activation_of(state, node.input[0])
    starts, ends, axes, steps = _slice_arguments(state, node)
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        raise NotAModel(
            f"node '{node_label(node)}' (Slice) has starts, ends, axes and steps of different lengths"
        )
    rank = len(x.shape) + 1
    bounds = (0, x.shape[0])
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis + rank if axis < 0 else axis
        if not 0 < axis < rank:
            raise Unsupported(f"slices axis {axis} (the batch, or beyond the {rank} axes)")
        size = x.shape[axis - 1]
        kept = _clamped(start, end, size)
        if step != 1 and kept != (0, size):
            raise Unsupported(f"a slice with step {step}; cnnspec's slice keeps a range of channels")
        if axis == 1:
            bounds = kept
        elif kept != (0, size):
            raise Unsupported("crops height or width; cnnspec's slice keeps a range of channels")
    if bounds == (0, x.shape[0]):
        return x  # keeps everything
    if bounds[0] >= bounds[1]:
        raise Unsupported(f"an empty slice ({bounds[0]}:{bounds[1]} of {x.shape[0]} channels)")
    start, end = bounds
    config = Slice(channels=(start, None if end == x.shape[0] else end))
    return add_layer(state, node, config, [x], {})


def _split_sizes(state: State, node, channels: int) -> list[int]:
    """The parts' sizes: given (an input from opset 13, an attribute below), or equal parts
    over the outputs (opset 18's num_outputs: the last part is smaller when they do not divide)."""
    attrs = attributes_of(node)
    given = optional(node, 1) if state.opset >= 13 else None
    if given is not None:
        return [int(v) for v in constant_of(state, given).reshape(-1)]
    if "split" in attrs:
        return [int(v) for v in attrs["split"]]
    count = len(node.output)
    size = -(-channels // count)
    return [size] * (count - 1) + [channels - size * (count - 1)]


def _split(state: State, node) -> list[Act]:
    """One `slice` per output, each reading the input (the printer writes them as slices)."""
    x = activation_of(state, node.input[0])
    rank = len(x.shape) + 1
    axis = int(attributes_of(node).get("axis", 0))
    if (axis + rank if axis < 0 else axis) != 1:
        raise Unsupported(f"splits axis {axis}; cnnspec splits channels (axis 1)")
    sizes = _split_sizes(state, node, x.shape[0])
    if len(sizes) != len(node.output) or sum(sizes) != x.shape[0] or min(sizes) <= 0:
        raise NotAModel(
            f"node '{node_label(node)}' (Split): parts {sizes} do not split {x.shape[0]} channels "
            f"into {len(node.output)} outputs"
        )
    parts, start = [], 0
    for size in sizes:
        end = start + size
        config = Slice(channels=(start, None if end == x.shape[0] else end))
        parts.append(add_layer(state, node, config, [x], {}))
        start = end
    return parts


PAD_MODES = {"constant": "zero", "reflect": "reflect", "edge": "edge"}  # ONNX's word -> cnnspec's


def _pad_arguments(state: State, node, rank: int) -> tuple[list[int], str, float]:
    """pads (all begins, then all ends, over every axis), mode, constant value."""
    attrs = attributes_of(node)
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if state.opset < 11:
        return [int(p) for p in attrs.get("pads", [])], mode, float(attrs.get("value", 0.0))
    pads = [int(p) for p in constant_of(state, node.input[1]).reshape(-1)]
    value_name = optional(node, 2)
    value = float(constant_of(state, value_name).reshape(-1)[0]) if value_name else 0.0
    if (axes_name := optional(node, 3)) is not None:  # opset 18: pads for the listed axes only
        axes = [int(a) % rank for a in constant_of(state, axes_name).reshape(-1)]
        full = [0] * (2 * rank)
        for i, axis in enumerate(axes):
            full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
        pads = full
    return pads, mode, value


def _pad(state: State, node) -> Act:
    """Rows and columns around a map: zeros, a mirror or the border (never the batch or the channels)."""
    x = activation_of(state, node.input[0])
    if not 2 <= len(x.shape) <= MAX_RANK + 1:
        raise Unsupported("pads a flat vector; cnnspec's pad works on maps (CxL, CxHxW, CxDxHxW)")
    rank = len(x.shape) + 1  # the tensor's, batch included
    pads, mode, value = _pad_arguments(state, node, rank)
    if len(pads) != 2 * rank:
        raise NotAModel(f"node '{node_label(node)}' (Pad) has {len(pads)} pads for a {rank}-D tensor")
    if mode not in PAD_MODES:
        raise Unsupported(f"mode={mode}; cnnspec pads with zeros, a mirror (reflect) or the border (edge)")
    if mode == "constant" and value != 0:
        raise Unsupported(f"pads with the value {value:g}; cnnspec's pad adds zeros")
    if pads[0] or pads[1] or pads[rank] or pads[rank + 1]:
        raise Unsupported("pads the batch or the channels; cnnspec's pad adds rows and columns")
    if min(pads) < 0:
        raise Unsupported("negative pads (a crop); cnnspec's pad only adds")
    sizes = tuple(v for axis in range(2, rank) for v in (pads[axis], pads[rank + axis]))
    if not any(sizes):
        return x
    return add_layer(state, node, validated(Pad, {"sizes": sizes, "mode": PAD_MODES[mode]}), [x], {})


def _squeeze(state: State, node) -> Act:
    x = activation_of(state, node.input[0])
    axes = attributes_of(node).get("axes")
    if axes is None and (n := optional(node, 1)):
        axes = [int(a) for a in constant_of(state, n).reshape(-1)]
    rank = len(x.shape) + 1
    if (
        len(x.shape) >= 2
        and set(x.shape[1:]) == {1}
        and (axes is None or sorted(a % rank for a in axes) == list(range(2, rank)))
    ):
        return add_layer(state, node, Flatten(), [x], {})
    raise Unsupported(f"squeezes axes {axes} of a {'x'.join(map(str, x.shape))} map")


def _resize(state: State, node) -> Act:
    x = activation_of(state, node.input[0])
    if not 2 <= len(x.shape) <= MAX_RANK + 1:
        raise Unsupported("resizing needs a map (CxL, CxHxW or CxDxHxW)")
    attrs = attributes_of(node)
    text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    scale = _resize_scale(state, node, x, attrs)
    kind = _resize_mode(node, text)
    if set(scale) == {1}:
        return x
    return add_layer(state, node, Upsample(scale=scale, mode=kind), [x], {})


def _resize_scale(state: State, node, x: Act, attrs: dict) -> tuple[int, ...]:
    """The whole factor of each spatial axis (from scales, sizes or the attribute)."""
    scales_name = node.input[1] if node.op_type == "Upsample" else optional(node, 2)
    sizes_name = optional(node, 3) if node.op_type == "Resize" else None
    if scales_name and constant_of(state, scales_name).size:
        scales = [float(s) for s in constant_of(state, scales_name).reshape(-1)]
    elif sizes_name:
        sizes = [int(s) for s in constant_of(state, sizes_name).reshape(-1)]
        spatial = len(x.shape) - 1
        scales = [1.0, 1.0] + [out / n for out, n in zip(sizes[-spatial:], x.shape[1:])]
    elif "scales" in attrs:
        scales = [float(s) for s in attrs["scales"]]
    else:
        raise Unsupported("neither scales nor sizes are constant")
    whole = len(scales) == len(x.shape) + 1 and scales[:2] == [1.0, 1.0]
    if not whole or not all(s.is_integer() and s >= 1 for s in scales[2:]):
        raise Unsupported(f"scales {scales}; cnnspec upsamples each spatial axis by a whole factor")
    return tuple(int(s) for s in scales[2:])


def _resize_mode(node, text: dict) -> str:
    """nearest or bilinear, when the coordinate mapping is the one cnnspec's upsample uses."""
    mode = text.get("mode", "nearest")
    ctm = text.get(
        "coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" else "asymmetric"
    )
    if mode == "nearest":
        floor = ctm == "asymmetric" and text.get("nearest_mode", "round_prefer_floor") == "floor"
        exact = floor or ctm in ("half_pixel", "pytorch_half_pixel")
        kind = "nearest"
    elif mode == "linear":
        exact = ctm in ("half_pixel", "pytorch_half_pixel")
        kind = "bilinear"
    else:
        exact, kind = False, mode
    if not exact:
        raise Unsupported(f"{mode} resize with coordinate_transformation_mode={ctm}")
    return kind


def _dropout(state: State, node) -> Act | Partial:
    x, nhwc = map_of(state, node.input[0])
    if extra_outputs_read(state, node):
        raise Unsupported("the mask output of Dropout")
    if (n := optional(node, 2)) and bool(constant_of(state, n).reshape(-1)[0]):
        raise Unsupported("training-mode dropout")
    ratio = attributes_of(node).get("ratio", 0.5)
    if (n := optional(node, 1)) is not None:
        ratio = float(constant_of(state, n).reshape(-1)[0])
    if not 0 <= ratio < 1:  # NaN fails this too
        raise NotAModel(f"node '{node_label(node)}' (Dropout): ratio {ratio} is outside [0, 1)")
    if ratio == 0:
        return as_viewed(x, nhwc)
    return as_viewed(add_layer(state, node, Dropout(rate=as_float32(ratio)), [x], {}), nhwc)


def _identity(state: State, node) -> Act | Partial:
    """A no-op; cnnspec's own export writes a droppath so, with its rate in the doc string."""
    value = state.values.get(node.input[0])
    if isinstance(value, Partial) and value.stage == "nhwc":
        return value
    x = activation_of(state, node.input[0])
    found = _DROPPATH.search(node.doc_string)
    if found is None:
        return x
    return add_layer(state, node, validated(DropPath, {"rate": float(found.group(1))}), [x], {})


_DROPPATH = re.compile(re.escape(DROPPATH_NOTE).replace(re.escape("{rate!r}"), r"([0-9.e-]+)") + r"\)$")


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
    "Div": Handler(_div, ("layernorm",)),
    "Erf": Handler(_erf, ()),
    "Sum": Handler(_sum, ("add",)),
    "Mul": Handler(_mul, ("multiply", "activation", "scale")),
    "Concat": Handler(_concat, ("concat",)),
    "Relu": Handler(_activation("relu"), ("activation",)),
    "Sigmoid": Handler(_activation("sigmoid"), ("activation",)),
    "Tanh": Handler(_activation("tanh"), ("activation",)),
    "LeakyRelu": Handler(_activation("leakyrelu"), ("activation",)),
    "Elu": Handler(_activation("elu"), ("activation",)),
    "HardSigmoid": Handler(_activation("hardsigmoid"), ("activation",)),
    "HardSwish": Handler(_activation("hardswish"), ("activation",)),
    "Mish": Handler(_activation("mish"), ("activation",)),
    "Softplus": Handler(_activation("softplus"), ("activation",)),
    "PRelu": Handler(_prelu, ("prelu",)),
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
    "Reshape": Handler(_reshape, ("flatten", "shuffle")),
    "Squeeze": Handler(_squeeze, ("flatten",)),
    "Resize": Handler(_resize, ("upsample",)),
    "Upsample": Handler(_resize, ("upsample",)),
    "Dropout": Handler(_dropout, ("dropout",)),
    "Identity": Handler(_identity, ("droppath",)),
    "Transpose": Handler(_transpose, ()),
    "Slice": Handler(_slice, ("slice",)),
    "Pad": Handler(_pad, ("pad",)),
    "LayerNormalization": Handler(layernorm.layernormalization, ("layernorm",)),
    "Sub": Handler(layernorm.sub, ()),
    "Pow": Handler(layernorm.power, ()),
    "Sqrt": Handler(layernorm.sqrt, ()),
    "Split": Handler(_split, ("slice",)),
}
