"""Checked network -> PyTorch module (the `cnnspec[train]` extra).

Built from the same checked network as the ONNX export, with the same layer and tensor
names (`conv1.weight`, `bn1.running_mean`), so weights pass between the two without a
mapping. Padding follows the checker exactly: asymmetric and `same` pads are explicit,
pooling's ceil mode becomes extra end padding (see `CheckedLayer.floor_mode_pads`),
average pooling leaves padding out of the count. Frozen layers get no gradient and
their batch norms stay in inference mode, also under `model.train()`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..base.diagnostics import CnnspecError, Diagnostic
from ..infer import CheckedLayer, CheckedNetwork
from ..kinds import (
    ActivationLayer,
    BatchNorm,
    Conv,
    Deconv,
    Dense,
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

ACTIVATION_MODULES: dict = {
    "relu": lambda alpha: nn.ReLU(),
    "leakyrelu": lambda alpha: nn.LeakyReLU(alpha if alpha is not None else 0.01),
    "sigmoid": lambda alpha: nn.Sigmoid(),
    "tanh": lambda alpha: nn.Tanh(),
    "softmax": lambda alpha: nn.Softmax(dim=1),
    "elu": lambda alpha: nn.ELU(alpha if alpha is not None else 1.0),
    "gelu": lambda alpha: nn.GELU(),
    "relu6": lambda alpha: nn.ReLU6(),
    "silu": lambda alpha: nn.SiLU(),
    "swish": lambda alpha: nn.SiLU(),
    "hardswish": lambda alpha: nn.Hardswish(),
    "hardsigmoid": lambda alpha: nn.Hardsigmoid(),
    "mish": lambda alpha: nn.Mish(),
    "softplus": lambda alpha: nn.Softplus(),
}


class _Join(nn.Module):
    """add, concat (channels), multiply (a Cx1x1 gate broadcasts) over several tensors."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.kind == "concat":
            return torch.cat(xs, dim=1)
        out = xs[0]
        for other in xs[1:]:
            out = out + other if self.kind == "add" else out * other
        return out


def torch_pads(pads: tuple[int, ...]) -> tuple[int, ...]:
    """(begin, end) per axis, first axis first -> F.pad's order: the last axis first."""
    pairs = [pads[i : i + 2] for i in range(0, len(pads), 2)]
    return tuple(p for pair in reversed(pairs) for p in pair)


LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}  # `bilinear` along each spatial axis


class _Upsample(nn.Module):
    def __init__(self, scale: tuple[int, ...], mode: str):
        super().__init__()
        self.scale, self.mode = tuple(float(s) for s in scale), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.scale, mode="nearest")
        mode = LINEAR_MODES[x.dim() - 2]
        return F.interpolate(x, scale_factor=self.scale, mode=mode, align_corners=False)


class _DropPath(nn.Module):
    """Stochastic depth: while training, each sample's tensor is zeroed with probability
    `rate` and the rest scaled by 1/(1-rate) (timm's DropPath); the identity otherwise."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class _Slice(nn.Module):
    """Channels [start, end) (a `slice`, or one part of a `split`)."""

    def __init__(self, start: int, end: int):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start : self.end]


class _Shuffle(nn.Module):
    """Channel shuffle, as ShuffleNet V2 writes it."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        grouped = x.reshape(n, self.groups, c // self.groups, -1)
        return grouped.transpose(1, 2).reshape(x.shape)


class _Pad(nn.Module):
    """Rows and columns around the map: zeros, the mirror (reflect), or the border (edge)."""

    MODES = {"zero": "constant", "reflect": "reflect", "edge": "replicate"}

    def __init__(self, sizes: tuple[int, ...], mode: str):
        super().__init__()
        self.sizes, self.mode = torch_pads(sizes), self.MODES[mode]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.sizes, mode=self.mode)


def _slice(entry: CheckedLayer) -> nn.Module:
    bounds = entry.config_as(Slice).bounds(entry.input_shape[0])
    assert bounds is not None  # checked by infer
    return _Slice(*bounds)


class _LayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the channels at each position (ConvNeXt's LayerNorm2d), any rank."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class _Scale(nn.Module):
    """One learned factor per channel (`scale.weight`), starting at 1."""

    def __init__(self, channels: int, spatial_axes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.spatial_axes = spatial_axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(-1, *(1,) * self.spatial_axes)


class _Cropped:
    """Mixin for ConvTranspose{1,2,3}d: (begin, end) cropped off every spatial axis of the
    full output, which is what ONNX's pads mean for a transposed convolution."""

    crops: tuple[int, ...] = ()

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        y = super().forward(input)  # type: ignore[misc]
        index = [slice(None), slice(None)]
        for axis, (begin, end) in enumerate(zip(self.crops[::2], self.crops[1::2])):
            index.append(slice(begin, y.shape[axis + 2] - end))
        return y[tuple(index)]


class _Deconv1d(_Cropped, nn.ConvTranspose1d):
    pass


class _Deconv2d(_Cropped, nn.ConvTranspose2d):
    pass


class _Deconv3d(_Cropped, nn.ConvTranspose3d):
    pass


# Any: each class takes sizes of its own rank, which a dict keyed by the rank cannot say.
DECONVS: dict[int, Any] = {1: _Deconv1d, 2: _Deconv2d, 3: _Deconv3d}


def _deconv(entry: CheckedLayer) -> nn.Module:
    """The transposed convolution of the rank of its kernel; `deconv1.weight` as named."""
    config = entry.config_as(Deconv)
    pads, output_pad = config.resolved()
    module = DECONVS[len(config.kernel)](
        entry.input_shape[0],
        config.filters,
        config.kernel,
        config.stride,
        0,
        output_pad,
        config.groups,
        config.bias,
        config.dilation,
    )
    module.crops = pads
    return module


class _Padded(nn.Module):
    """Explicit (begin, end per axis) padding, then the wrapped op."""

    def __init__(self, op: nn.Module, pads: tuple[int, ...], value: float = 0.0):
        super().__init__()
        self.op = op
        self.pads = torch_pads(pads)  # F.pad order: last dimension first
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, value=self.value)
        return self.op(x)


AVG_POOLS = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
MAX_POOLS = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


class _AveragePool(nn.Module):
    """Average over the real pixels of each window only (ONNX count_include_pad=0), or
    over the whole window, padding's zeros included (count_include_pad=1)."""

    def __init__(self, kernel, stride, pads: tuple[int, ...], count_pad: bool = False):
        super().__init__()
        self.pads = torch_pads(pads)
        self.kernel, self.stride, self.count_pad = kernel, stride, count_pad
        self.pool = AVG_POOLS[len(kernel)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self.pads):
            return self.pool(x, self.kernel, self.stride)
        total = self.pool(F.pad(x, self.pads), self.kernel, self.stride)
        if self.count_pad:
            return total
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pads)
        return total / self.pool(ones, self.kernel, self.stride)


def _pool(entry: CheckedLayer) -> nn.Module:
    config = entry.config_as(Pool)
    pads = entry.floor_mode_pads
    assert pads is not None
    stride = config.window_stride
    if config.mode == "max":
        return _Padded(MAX_POOLS[len(config.kernel)](config.kernel, stride), pads, float("-inf"))
    return _AveragePool(config.kernel, stride, pads, config.count_pad)


GLOBAL_POOLS: dict[str, dict[int, type[nn.Module]]] = {
    "max": {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d},
    "avg": {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d},
}


def _globalpool(entry: CheckedLayer) -> nn.Module:
    return GLOBAL_POOLS[entry.config_as(GlobalPool).mode][len(entry.input_shape) - 1](1)


# BatchNorm1d takes (N, C) and (N, C, L): a flat vector and a 1-D map alike.
BATCH_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}


def _batchnorm(entry: CheckedLayer) -> nn.Module:
    config = entry.config_as(BatchNorm)
    norm = BATCH_NORMS[len(entry.input_shape)]
    return norm(entry.input_shape[0], eps=config.eps, momentum=config.momentum)


def _dense(entry: CheckedLayer) -> nn.Module:
    config = entry.config_as(Dense)
    return nn.Linear(math.prod(entry.input_shape), config.units, config.bias)


def _upsample(entry: CheckedLayer) -> nn.Module:
    config = entry.config_as(Upsample)
    return _Upsample(config.scale, config.mode)


def _activation(entry: CheckedLayer) -> nn.Module:
    config = entry.config_as(ActivationLayer)
    return rule_for(ACTIVATION_MODULES, config.fn, "the PyTorch backend")(config.alpha)


# The module of each layer kind (its fused activation, if any, comes after it).
FACTORIES = {
    "conv": lambda entry: _conv(entry, entry.config_as(Conv)),
    "pool": _pool,
    "globalpool": _globalpool,
    "batchnorm": _batchnorm,
    "scale": lambda entry: _Scale(entry.input_shape[0], len(entry.input_shape) - 1),
    "layernorm": lambda entry: _LayerNorm(entry.input_shape[0], eps=entry.config_as(LayerNorm).eps),
    "prelu": lambda entry: nn.PReLU(entry.tensors["weight"][0]),
    "dropout": lambda entry: nn.Dropout(entry.config_as(Dropout).rate),
    "droppath": lambda entry: _DropPath(entry.config_as(DropPath).rate),
    "slice": _slice,
    "pad": lambda entry: _Pad(entry.config_as(Pad).sizes, entry.config_as(Pad).mode),
    "shuffle": lambda entry: _Shuffle(entry.config_as(Shuffle).groups),
    "flatten": lambda entry: nn.Flatten(),
    "dense": _dense,
    "deconv": _deconv,
    "upsample": _upsample,
    "add": lambda entry: _Join("add"),
    "concat": lambda entry: _Join("concat"),
    "multiply": lambda entry: _Join("multiply"),
    "activation": _activation,
}


def _core(entry: CheckedLayer) -> nn.Module:
    """The parameterised (or shaping) op of one layer; its activation comes after."""
    return rule_for(FACTORIES, entry.kind, "the PyTorch backend")(entry)


class _ExplicitPads:
    """Mixin for Conv{1,2,3}d: uneven zero padding (F.pad's order) before the convolution."""

    explicit_pads: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.explicit_pads):
            x = F.pad(x, self.explicit_pads)
        return super().forward(x)  # type: ignore[misc]


class _Conv1d(_ExplicitPads, nn.Conv1d):
    pass


class _Conv2d(_ExplicitPads, nn.Conv2d):
    pass


class _Conv3d(_ExplicitPads, nn.Conv3d):
    pass


CONVS: dict[int, Any] = {1: _Conv1d, 2: _Conv2d, 3: _Conv3d}  # Any: as DECONVS


def _conv(entry: CheckedLayer, config: Conv) -> nn.Module:
    """The convolution of the rank of its kernel; symmetric pads are its own `padding`,
    uneven ones an explicit zero pad before it. Tensors stay `conv1.weight`, `conv1.bias`."""
    assert entry.pads is not None
    begins, ends = entry.pads[::2], entry.pads[1::2]
    symmetric = begins == ends  # the convolution pads itself: no extra copy
    module = CONVS[len(config.kernel)](
        entry.input_shape[0],
        config.filters,
        config.kernel,
        config.stride,
        begins if symmetric else 0,
        config.dilation,
        config.groups,
        config.bias,
    )
    if not symmetric:
        module.explicit_pads = torch_pads(entry.pads)
    return module


class CnnspecModule(nn.Module):
    """A sequential PyTorch model whose submodules carry the spec's layer names."""

    def __init__(self, network: CheckedNetwork):
        super().__init__()
        self.network_name = network.name
        self.order: list[str] = []
        self.inputs: dict[str, tuple[str, ...]] = {c.name: c.inputs for c in network.layers}
        self.outputs: tuple[str, ...] = network.outputs
        self.activations = nn.ModuleDict()
        self.frozen_names = [c.name for c in network.layers if c.layer.frozen]
        for entry in network.layers:
            if hasattr(nn.Module, entry.name) or entry.name in ("activations", "order"):
                raise CnnspecError(
                    [
                        Diagnostic(
                            "error",
                            "invalid-argument",
                            f"layer name '{entry.name}' clashes with PyTorch; rename it with `as`",
                        )
                    ]
                )
            self.add_module(entry.name, _core(entry))
            activation = getattr(entry.layer.config, "activation", None)
            if activation is not None:
                self.activations[entry.name] = rule_for(
                    ACTIVATION_MODULES, activation.name, "the PyTorch backend"
                )(activation.alpha)
            self.order.append(entry.name)
        for name in self.frozen_names:
            for parameter in getattr(self, name).parameters():
                parameter.requires_grad_(False)

    def forward_all(self, x: torch.Tensor, logits: bool = False) -> tuple[torch.Tensor, ...]:
        """Every output, walking the graph in definition order; with `logits`, a softmax
        that produces an output is left out (for a numerically stable cross-entropy)."""
        values = {"input": x}
        for name in self.order:
            module = getattr(self, name)
            args = [values[source] for source in self.inputs[name]]
            if logits and name in self.outputs and isinstance(module, nn.Softmax):
                values[name] = args[0]
                continue
            y = module(*args)
            activation = self.activations[name] if name in self.activations else None
            if activation is not None and not (
                logits and name in self.outputs and isinstance(activation, nn.Softmax)
            ):
                y = activation(y)
            values[name] = y
        return tuple(values[name] for name in self.outputs) if self.outputs else (x,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The (first) output before a final softmax, for a numerically stable cross-entropy."""
        return self.forward_all(x, logits=True)[0]

    def train(self, mode: bool = True) -> CnnspecModule:
        super().train(mode)
        for name in self.frozen_names:  # frozen batch norm keeps its statistics fixed
            getattr(self, name).eval()
        return self

    def cnnspec_tensors(self) -> dict[str, np.ndarray]:
        """Every tensor under its cnnspec / ONNX name, as float32 numpy arrays."""
        return {
            key: value.detach().cpu().numpy().astype(np.float32)
            for key, value in self.state_dict().items()
            if not key.endswith("num_batches_tracked")
        }

    def load_cnnspec_tensors(self, arrays: Mapping[str, np.ndarray]) -> None:
        state = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if missing or unexpected:  # build_weights checked names already: a bug if reached
            raise RuntimeError(f"tensor names differ: missing {missing}, unexpected {unexpected}")


def build_module(network: CheckedNetwork, arrays: Mapping[str, np.ndarray] | None = None) -> CnnspecModule:
    """The PyTorch model of a checked network, with `arrays` (e.g. `WeightSet.arrays`)."""
    module = CnnspecModule(network)
    if arrays is not None:
        module.load_cnnspec_tensors(arrays)
    return module.eval()
