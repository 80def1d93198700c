"""Layer norm over the channels, in the forms exporters write it: LayerNormalization on the
channels-last view (PyTorch's LayerNorm2d from opset 17), or its steps in plain ops
(mean, subtract, square, mean, add eps, square root, divide; below opset 17, and ConvNeXt's
channels-first LayerNorm), then a factor and an offset per channel, folded into the layer."""

from __future__ import annotations

import math

import numpy as np

from ..kinds import LayerNorm
from .state import (
    Act,
    Partial,
    State,
    Unsupported,
    add_layer,
    as_float32,
    as_map,
    as_viewed,
    attributes_of,
    constant_of,
    is_number,
    map_of,
    optional,
    validated,
)


def _channel_axis(axes: list[int], nhwc: bool, rank: int = 4) -> bool:
    """Whether `axes` is the channel axis: 1 on a CxHxW map, the last one when channels-last."""
    wanted = rank - 1 if nhwc else 1
    return len(axes) == 1 and axes[0] % rank == wanted


def layernormalization(state: State, node) -> Act | Partial:
    """ONNX LayerNormalization over the channels: the last axis of the channels-last view,
    or axis 1 of a Cx1x1 map (where C, H and W together are the channels)."""
    x, nhwc = map_of(state, node.input[0])
    attrs = attributes_of(node)
    axis = int(attrs.get("axis", -1))
    if len(x.shape) < 2:
        raise Unsupported("a layer norm of a flat vector; cnnspec's layernorm works on maps")
    rank = len(x.shape) + 1
    over_channels = _channel_axis([axis], nhwc, rank) or (
        not nhwc and axis % rank == 1 and set(x.shape[1:]) == {1}
    )
    if not over_channels:
        what = "H and W" if nhwc else "C, H and W together"
        raise Unsupported(f"a layer norm over {what} (axis {axis}); cnnspec's layernorm is over the channels")
    c = x.shape[0]
    weight = constant_of(state, node.input[1]).reshape(-1)
    bias_name = optional(node, 2)
    bias = constant_of(state, bias_name).reshape(-1) if bias_name else np.zeros(c, np.float32)
    if weight.size not in (1, c) or bias.size not in (1, c):
        raise Unsupported(f"scale and bias of {weight.size} and {bias.size} values for {c} channels")
    tensors = {"weight": np.broadcast_to(weight, (c,)), "bias": np.broadcast_to(bias, (c,))}
    config = validated(LayerNorm, {"eps": as_float32(attrs.get("epsilon", 1e-5))})
    return as_viewed(add_layer(state, node, config, [x], tensors, node.input[1]), nhwc)


def channel_mean(state: State, node, axes: list[int] | None, keepdims: bool) -> Partial | None:
    """ReduceMean over the channels: the first step of a layer norm (or, on its square,
    the variance); None when it is no such step."""
    if axes is None or not keepdims:
        return None
    value = state.values.get(node.input[0])
    if isinstance(value, Partial) and value.stage == "ln_square" and _channel_axis(axes, value.nhwc):
        return Partial("ln_var", value.x, nhwc=value.nhwc)
    found = as_map(value)
    if found is not None and len(found[0].shape) == 3 and _channel_axis(axes, found[1]):
        return Partial("ln_mean", found[0], nhwc=found[1])
    return None


def sub(state: State, node) -> Partial:
    """x - mean(x): the second step."""
    a, b = (state.values.get(n) for n in node.input[:2])
    if isinstance(b, Partial) and b.stage == "ln_mean" and as_map(a) == (b.x, b.nhwc):
        return Partial("ln_centered", b.x, nhwc=b.nhwc)
    raise Unsupported("a subtraction cnnspec has no layer for (only a layer norm's x - mean)")


def square(state: State, node) -> Partial | None:
    """(x - mean)², as Pow(d, 2) or Mul(d, d); None when the node is neither."""
    a, b = (state.values.get(n) for n in node.input[:2])
    if not (isinstance(a, Partial) and a.stage == "ln_centered"):
        return None
    if node.op_type == "Pow" and is_number(b, 2.0):
        return Partial("ln_square", a.x, nhwc=a.nhwc)
    if node.op_type == "Mul" and node.input[0] == node.input[1]:
        return Partial("ln_square", a.x, nhwc=a.nhwc)
    return None


def power(state: State, node) -> Partial:
    found = square(state, node)
    if found is None:
        raise Unsupported("a power cnnspec has no layer for (only a layer norm's square)")
    return found


def plus_eps(state: State, node) -> Partial | None:
    """variance + eps; None when the node is not that."""
    a, b = (state.values.get(n) for n in node.input[:2])
    for var, eps in ((a, b), (b, a)):
        if (
            isinstance(var, Partial)
            and var.stage == "ln_var"
            and isinstance(eps, np.ndarray)
            and eps.size == 1
        ):
            value = float(eps.reshape(-1)[0])
            if value > 0 and math.isfinite(value):
                return Partial("ln_var_eps", var.x, eps=as_float32(value), nhwc=var.nhwc)
    return None


def sqrt(state: State, node) -> Partial:
    value = state.values.get(node.input[0])
    if isinstance(value, Partial) and value.stage == "ln_var_eps":
        return Partial("ln_std", value.x, eps=value.eps, nhwc=value.nhwc)
    raise Unsupported("a square root cnnspec has no layer for (only a layer norm's)")


def normalised(state: State, node) -> Act | Partial | None:
    """(x - mean) / std: the layer norm, with factor 1 and offset 0 until a Mul and an
    Add by per-channel constants fold into it; None when the node is not that division."""
    a, b = (state.values.get(n) for n in node.input[:2])
    if not (isinstance(a, Partial) and a.stage == "ln_centered" and isinstance(b, Partial)):
        return None
    if b.stage != "ln_std" or (b.x, b.nhwc) != (a.x, a.nhwc):
        return None
    c = a.x.shape[0]
    tensors = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}
    layer = add_layer(state, node, validated(LayerNorm, {"eps": b.eps}), [a.x], tensors)
    return as_viewed(layer, a.nhwc)


def fold_affine(state: State, node) -> Act | Partial | None:
    """A layer norm's output times (Mul) or plus (Add) one constant per channel, read by
    nothing else: folded into its weight and bias. None when the node is not that."""
    names = list(node.input[:2])
    for name, other in (names, names[::-1]):
        value, const = state.values.get(name), state.values.get(other)
        found = as_map(value)
        if found is None or not isinstance(const, np.ndarray) or state.readers[name] != 1:
            continue
        x, nhwc = found
        layer = state.layers.get(x.layer)
        if layer is None or not isinstance(layer.config, LayerNorm):
            continue
        c = x.shape[0]
        per_channel = (c,) if nhwc else (c, 1, 1)
        if const.shape not in (per_channel, (1, *per_channel)):
            continue
        factor = const.reshape(-1).astype(np.float32)
        if node.op_type == "Mul":
            layer.tensors["weight"] = (layer.tensors["weight"] * factor).astype(np.float32)
            layer.tensors["bias"] = (layer.tensors["bias"] * factor).astype(np.float32)
        else:
            layer.tensors["bias"] = (layer.tensors["bias"] + factor).astype(np.float32)
        return as_viewed(x, nhwc)
    return None
