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


class _Upsample(nn.Module):
    def __init__(self, scale: int, mode: str):
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


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

    def __init__(self, sizes: tuple[int, int, int, int], mode: str):
        super().__init__()
        top, bottom, left, right = sizes
        self.sizes, self.mode = (left, right, top, bottom), self.MODES[mode]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.sizes, mode=self.mode)


def _slice(entry: CheckedLayer) -> nn.Module:
    bounds = entry.config_as(Slice).bounds(entry.input_shape[0])
    assert bounds is not None  # checked by infer
    return _Slice(*bounds)


class _LayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the channels at each position (ConvNeXt's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _Scale(nn.Module):
    """One learned factor per channel (`scale.weight`), starting at 1."""

    def __init__(self, channels: int, spatial: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.spatial = spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.weight.view(-1, 1, 1) if self.spatial else self.weight)


class _Deconv(nn.ConvTranspose2d):
    """ConvTranspose2d with (top, bottom, left, right) pads: symmetric ones are PyTorch's
    `padding`; uneven ones crop the full output (what ONNX's pads mean)."""

    def __init__(self, entry: CheckedLayer, config: Deconv):
        pads, output_pad = config.resolved()
        super().__init__(
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
        self.crop = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = super().forward(x)
        top, bottom, left, right = self.crop
        return y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]


class _Padded(nn.Module):
    """Explicit (top, bottom, left, right) padding, then the wrapped op."""

    def __init__(self, op: nn.Module, pads: tuple[int, int, int, int], value: float = 0.0):
        super().__init__()
        self.op = op
        top, bottom, left, right = pads
        self.pads = (left, right, top, bottom)  # F.pad order: last dimension first
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, value=self.value)
        return self.op(x)


class _AveragePool(nn.Module):
    """Average over the real pixels of each window only (ONNX count_include_pad=0), or
    over the whole window, padding's zeros included (count_include_pad=1)."""

    def __init__(self, kernel, stride, pads: tuple[int, int, int, int], count_pad: bool = False):
        super().__init__()
        top, bottom, left, right = pads
        self.pads = (left, right, top, bottom)
        self.kernel, self.stride, self.count_pad = kernel, stride, count_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self.pads):
            return F.avg_pool2d(x, self.kernel, self.stride)
        total = F.avg_pool2d(F.pad(x, self.pads), self.kernel, self.stride)
        if self.count_pad:
            return total
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pads)
        return total / F.avg_pool2d(ones, self.kernel, self.stride)


def _pool(entry: CheckedLayer) -> nn.Module:
    config = entry.config_as(Pool)
    pads = entry.floor_mode_pads
    assert pads is not None
    stride = config.window_stride
    if config.mode == "max":
        return _Padded(nn.MaxPool2d(config.kernel, stride), pads, float("-inf"))
    return _AveragePool(config.kernel, stride, pads, config.count_pad)


def _globalpool(entry: CheckedLayer) -> nn.Module:
    return nn.AdaptiveMaxPool2d(1) if entry.config_as(GlobalPool).mode == "max" else nn.AdaptiveAvgPool2d(1)


def _batchnorm(entry: CheckedLayer) -> nn.Module:
    config = entry.config_as(BatchNorm)
    norm = nn.BatchNorm2d if len(entry.input_shape) == 3 else nn.BatchNorm1d
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
    "conv": lambda entry: _Conv(entry, entry.config_as(Conv)),
    "pool": _pool,
    "globalpool": _globalpool,
    "batchnorm": _batchnorm,
    "scale": lambda entry: _Scale(entry.input_shape[0], len(entry.input_shape) == 3),
    "layernorm": lambda entry: _LayerNorm(entry.input_shape[0], eps=entry.config_as(LayerNorm).eps),
    "prelu": lambda entry: nn.PReLU(entry.tensors["weight"][0]),
    "dropout": lambda entry: nn.Dropout(entry.config_as(Dropout).rate),
    "droppath": lambda entry: _DropPath(entry.config_as(DropPath).rate),
    "slice": _slice,
    "pad": lambda entry: _Pad(entry.config_as(Pad).sizes, entry.config_as(Pad).mode),
    "shuffle": lambda entry: _Shuffle(entry.config_as(Shuffle).groups),
    "flatten": lambda entry: nn.Flatten(),
    "dense": _dense,
    "deconv": lambda entry: _Deconv(entry, entry.config_as(Deconv)),
    "upsample": _upsample,
    "add": lambda entry: _Join("add"),
    "concat": lambda entry: _Join("concat"),
    "multiply": lambda entry: _Join("multiply"),
    "activation": _activation,
}


def _core(entry: CheckedLayer) -> nn.Module:
    """The parameterised (or shaping) op of one layer; its activation comes after."""
    return rule_for(FACTORIES, entry.kind, "the PyTorch backend")(entry)


class _Conv(nn.Conv2d):
    """Conv2d with explicit (top, bottom, left, right) zero padding; the parameters stay
    at `conv1.weight` and `conv1.bias`."""

    def __init__(self, entry: CheckedLayer, config: Conv):
        assert entry.pads is not None
        top, bottom, left, right = entry.pads
        symmetric = top == bottom and left == right  # the convolution pads itself: no extra copy
        super().__init__(
            entry.input_shape[0],
            config.filters,
            config.kernel,
            config.stride,
            (top, left) if symmetric else 0,
            config.dilation,
            config.groups,
            config.bias,
        )
        self.explicit_pads = (0, 0, 0, 0) if symmetric else (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.explicit_pads):
            x = F.pad(x, self.explicit_pads)
        return super().forward(x)


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
